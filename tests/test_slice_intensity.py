import json

import nibabel as nib
import numpy as np
import pytest

from arssr.cli import main
from arssr.errors import InputError
from arssr.inference import upsample
from arssr.models import load_model
from arssr.slice_intensity import equalize_slices, slice_alternation
from arssr.volume import Volume


@pytest.fixture(scope="module")
def mni_slices(mni_t1) -> Volume:
    """The MNI152 T1 in 4 mm boxcar slices along its third axis (1 x 1 x 4 mm), no alternation."""
    hr = mni_t1.data[10:190, 10:220, 20:180]
    return Volume(hr.reshape(180, 210, 40, 4).mean(axis=3), mni_t1.affine @ np.diag([1.0, 1.0, 4.0, 1.0]))


def interleaved(volume: Volume, gain: float, axis: int = 2) -> Volume:
    data = volume.data.copy()
    index = [slice(None)] * 3
    index[axis] = slice(0, None, 2)
    data[tuple(index)] *= gain
    return Volume(data, volume.affine)


def test_alternation_of_real_anatomy_is_found_and_removed(mni_slices):
    assert slice_alternation(mni_slices, 2).ratio == pytest.approx(1.0, abs=0.003)
    assert not slice_alternation(mni_slices, 2).alternates
    for gain in (1.05, 0.93):
        bright = interleaved(mni_slices, gain)
        kept = bright.data.copy()
        found = slice_alternation(bright, 2)
        assert found.ratio == pytest.approx(gain, abs=0.005) and found.alternates and found.spread < 0.01
        equalized, removed = equalize_slices(bright, 2)
        assert removed == found and np.array_equal(bright.data, kept)
        expected = bright.data * np.where(np.arange(40) % 2 == 0, found.ratio ** -0.5, found.ratio ** 0.5)
        np.testing.assert_allclose(equalized.data, expected, rtol=1e-6)
        assert slice_alternation(equalized, 2).ratio == pytest.approx(1.0, abs=0.002)


def test_alternation_along_another_axis_and_too_few_slices(mni_slices):
    moved = Volume(np.ascontiguousarray(np.moveaxis(interleaved(mni_slices, 1.1).data, 2, 0)), np.eye(4))
    assert slice_alternation(moved, 0).ratio == pytest.approx(1.1, abs=0.005)
    assert slice_alternation(moved, 1).ratio == pytest.approx(1.0, abs=0.01)
    with pytest.raises(InputError, match="at least 5 slices along axis 2, got 4"):
        slice_alternation(Volume(mni_slices.data[..., :4], mni_slices.affine), 2)


def test_upsample_equalizes_slices_when_asked(tmp_path, capsys, mni_slices, tiny_weights):
    crop = interleaved(Volume(mni_slices.data[60:100, 60:110, :20], mni_slices.affine), 1.06)
    nib.save(nib.Nifti1Image(crop.data, crop.affine), tmp_path / "thick.nii.gz")
    code = main(["upsample", str(tmp_path / "thick.nii.gz"), "--scale", "1,1,4", "--equalize-slices", "-o",
                 str(tmp_path / "sr.nii.gz"), "--weights", str(tiny_weights), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    found = slice_alternation(crop, 2)
    assert f"thick.nii.gz: even slices x{found.ratio:.3f} the odd ones along axis 2" in err and "; equalized" in err
    record = json.loads((tmp_path / "sr.json").read_text())["slice_intensity"]
    assert record == {"axis": 2, "even_over_odd": round(found.ratio, 5), "spread": round(found.spread, 5),
                      "equalized": True}
    expected = upsample(equalize_slices(crop, 2)[0], load_model(tiny_weights), scale=(1, 1, 4), device="cpu",
                        slice_thickness="spacing")
    np.testing.assert_allclose(nib.load(tmp_path / "sr.nii.gz").get_fdata(), expected.data, rtol=1e-5, atol=1e-4)
    code = main(["upsample", str(tmp_path / "thick.nii.gz"), "--scale", "2", "--equalize-slices", "-o",
                 str(tmp_path / "iso.nii.gz"), "--weights", str(tiny_weights), "--threads", "1", "-q"])
    assert code == 1 and "works on 2D multi-slice inputs; this one is taken as 3D" in capsys.readouterr().err
    assert not (tmp_path / "iso.nii.gz").exists()


def test_info_reports_the_slice_axis_and_its_alternation(tmp_path, capsys, mni_slices, mni_t1):
    bright = interleaved(mni_slices, 1.05)
    nib.save(nib.Nifti1Image(bright.data, bright.affine), tmp_path / "thick.nii.gz")
    nib.save(nib.Nifti1Image(mni_t1.data, mni_t1.affine), tmp_path / "iso.nii.gz")
    assert main(["info", str(tmp_path / "thick.nii.gz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [
        "slices: along axis 2, 4 mm apart (2D multi-slice when upsampled along that axis alone)",
        f"slice_intensity: {slice_alternation(bright, 2)}"]
    assert lines[-1].startswith("slice_intensity: even slices x1.05") and lines[-1].endswith(
        "alternating, as interleaved 2D acquisitions give)")
    assert main(["info", str(tmp_path / "iso.nii.gz")]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("slice")]


def test_alternation_verdicts():
    from arssr.slice_intensity import Alternation

    assert str(Alternation(2, 1.017, 0.004)).endswith("(+/- 0.4 %; below the 2% that counts as alternating)")
    assert str(Alternation(1, 1.03, 0.02)).endswith("(+/- 2.0 %; no alternation beyond noise)")
    assert Alternation(2, 0.97, 0.004).alternates and not Alternation(2, 1.03, 0.02).alternates


def test_spread_is_calibrated_on_slices_that_only_vary_at_random():
    """No alternation, 1 % independent brightness per slice: the spread matches the log ratio's spread over
    many volumes, and about 5 % of them land beyond twice it (measured 4 % over 300)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    y, x = np.mgrid[:32, :32]
    disc = ((y - 15.5) ** 2 + (x - 15.5) ** 2 < 13 ** 2)[..., None]
    base = 5 + 100 * disc * (1 + 0.3 * gaussian_filter(rng.random((32, 32, 30)), 2))
    found = [slice_alternation(Volume((base * np.exp(rng.normal(0, 0.01, 30))).astype(np.float32),
                                      np.diag([1.0, 1.0, 4.0, 1.0])), 2) for _ in range(150)]
    logs, spreads = np.log([a.ratio for a in found]), np.array([a.spread for a in found])
    assert 0.7 < spreads.mean() / logs.std() < 1.4
    assert np.mean(np.abs(logs) > 2 * spreads) < 0.12 and not any(a.alternates for a in found)
