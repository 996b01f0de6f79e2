import numpy as np
import pytest
import torch

from arssr.degrade import SliceModel, degrade
from arssr.errors import InputError
from arssr.evaluation.methods import ants_bspline, baseline, method, model_method
from arssr.evaluation.scoring import Scorer, Subject, evaluate
from arssr.geometry import resampled_affine
from arssr.metrics import brain_mask, psnr
from arssr.models import load_model
from arssr.simulate import ThickSlices, simulate_lr, simulate_thick_slices
from arssr.volume import Volume
from conftest import band_limited, needs_ants


def test_zero_filled_kspace_inverts_kspace_truncation_of_a_band_limited_volume():
    hr = band_limited((32, 30, 28))
    lr = simulate_lr(hr, 2, "kspace")
    # Exact up to the clip to the LR's intensity range that every method gets.
    expected = np.clip(hr.data, lr.data.min(), lr.data.max())
    np.testing.assert_allclose(baseline("kspace")(lr, hr.shape).data, expected, atol=1e-3)
    assert np.abs(baseline("cubic")(lr, hr.shape).data - hr.data).max() > 0.01


@needs_ants
def test_ants_bspline_is_on_the_aligned_grid():
    hr = band_limited((80, 72, 60))
    lr = simulate_lr(hr, 2.5, "kspace")
    out = ants_bspline(lr, hr.shape).data
    cubic = baseline("cubic")(lr, hr.shape).data
    inner = (slice(15, -15),) * 3
    # Both are cubic B-spline interpolation: away from the borders (where their boundary rules differ) they agree.
    assert np.abs(out - cubic)[inner].max() < 2e-3 * np.ptp(hr.data)
    # Placed with the plain origin (first voxels coinciding) it would be a voxel off and far worse.
    assert np.abs(out - hr.data)[inner].max() < 0.01 * np.ptp(hr.data)


def test_methods_by_name_and_weights_file(tiny_weights):
    """A name gives that baseline, a weights file that model (as ``arssr upsample`` runs it), on the HR grid."""
    hr = band_limited((20, 18, 16))
    lr = simulate_lr(hr, 2, "kspace")
    name, run = method("trilinear")
    assert name == "trilinear" and np.array_equal(run(lr, hr.shape).data, baseline("trilinear")(lr, hr.shape).data)
    name, run = method(f"small={tiny_weights}", device="cpu")
    expected = model_method(load_model(tiny_weights), device="cpu")(lr, hr.shape)
    out = run(lr, hr.shape)
    assert name == "small" and np.array_equal(out.data, expected.data)
    np.testing.assert_allclose(out.affine, hr.affine, atol=1e-9)
    assert method(str(tiny_weights))[0] == "tiny"
    with pytest.raises(InputError, match="unknown method 'bicubic'"):
        method("bicubic")


def test_evaluate_records_scores_on_real_anatomy(mni_t1):
    gt = Volume(mni_t1.data[60:108, 70:118, 60:100], mni_t1.affine)
    subject = Subject.from_volumes("mni", gt)
    calls = []

    def perfect(lr, shape):
        calls.append((lr.shape, shape))
        return Volume(gt.data.copy(), gt.affine)

    methods = {"cubic": baseline("cubic"), "kspace": baseline("kspace"), "perfect": perfect}
    cases = []
    records = evaluate([subject], methods, [2, 3.2], ["kspace", "cubic"],
                       scorer=Scorer(lpips=lambda est, ref: float(np.abs(est - ref).mean())),
                       on_case=lambda s, lr, d, k, outputs: cases.append((d, k, sorted(outputs))))
    assert len(records) == 2 * 2 * 3 and len(cases) == 4
    assert cases[0] == ("kspace", 2.0, ["cubic", "kspace", "perfect"])
    assert calls[0] == ((24, 24, 20), gt.shape) and calls[1] == ((15, 15, 13), gt.shape)
    mask = brain_mask(gt.data)
    for record in records:
        if record.method == "perfect":
            assert record.psnr == float("inf") and record.lpips == 0.0
            assert record.as_dict()["dice"] == {}
            continue
        lr = simulate_lr(gt, record.scale, record.degradation)
        estimate = methods[record.method](lr, gt.shape).data.astype(np.float64)
        mse = np.mean((estimate - gt.data) ** 2)
        assert record.psnr == pytest.approx(10 * np.log10(np.ptp(gt.data) ** 2 / mse), abs=1e-6)
        mse_mask = np.mean((estimate - gt.data)[mask] ** 2)
        assert record.psnr_mask == pytest.approx(10 * np.log10(np.ptp(gt.data) ** 2 / mse_mask), abs=1e-6)
        assert record.lpips == pytest.approx(np.abs(estimate - gt.data).mean(), rel=1e-5)
        assert 15 < record.psnr < 45 and 0.3 < record.ssim < 1
    by_scale = {(r.method, r.scale): r.psnr for r in records if r.degradation == "kspace"}
    assert by_scale[("cubic", 2)] > by_scale[("cubic", 3.2)]


def test_given_lr_inputs_are_scored_at_their_own_ratio(mni_crop):
    gt = mni_crop
    lr = simulate_lr(gt, (1, 1, 2), "kspace")
    records = evaluate([Subject.from_volumes("crop", gt, lr=lr)], {"cubic": baseline("cubic")}, [3], ["cubic"])
    assert [(r.degradation, r.scale) for r in records] == [("given", [1.0, 1.0, 2.0])]
    with pytest.raises(InputError, match="larger than the ground truth"):
        Subject.from_volumes("crop", lr, lr=gt)
    with pytest.raises(InputError, match="atlas shape"):
        Subject.from_volumes("crop", gt, atlas=lr)


def test_a_given_lr_off_the_fov_preserving_grid_is_an_error(mni_crop):
    """Same shape, but the first voxels coinciding (another resampler's grid): refused, in one line."""
    lr = simulate_lr(mni_crop, 2, "kspace")
    corner_aligned = mni_crop.affine @ np.diag([*(n / m for n, m in zip(mni_crop.shape, lr.shape)), 1.0])
    with pytest.raises(InputError, match="not on the ground truth's FOV-preserving grid") as error:
        Subject.from_volumes("crop", mni_crop, lr=Volume(lr.data, corner_aligned))
    assert "\n" not in str(error.value)


def test_a_method_returning_the_wrong_shape_is_an_error(mni_crop):
    with pytest.raises(InputError, match="returned shape"):
        evaluate([Subject.from_volumes("crop", mni_crop)], {"bad": lambda lr, shape: lr}, [2], ["cubic"])


def test_model_method_returns_the_ground_truth_grid(tiny_model):
    hr = band_limited((20, 18, 16))
    lr = simulate_lr(hr, 2.5, "lanczos")
    result = model_method(tiny_model, device="cpu")(lr, hr.shape)
    out = result.data
    assert out.shape == hr.shape and out.dtype == np.float32
    np.testing.assert_allclose(result.affine, hr.affine, atol=1e-9)
    assert lr.data.min() <= out.min() and out.max() <= lr.data.max()


def test_thick_slice_protocol_on_real_anatomy(mni_t1, tiny_model):
    """5 mm boxcar slices of the 1 mm MNI152 T1 along each axis: the LR grid, the records, the slice-model DC."""
    gt = Volume(mni_t1.data[60:100, 70:106, 60:92], mni_t1.affine)
    lr = simulate_thick_slices(gt, ThickSlices(5.0, 1))
    assert lr.shape == (40, 7, 32)  # round(36 / 5)
    expected = degrade(torch.from_numpy(gt.data.astype(np.float64)), lr.shape,
                       ("cubic", SliceModel(5.0), "cubic")).numpy()
    np.testing.assert_allclose(lr.data, expected, atol=1e-4)
    np.testing.assert_allclose(lr.affine, resampled_affine(gt.affine, gt.shape, lr.shape))
    gapped = simulate_thick_slices(gt, ThickSlices(4.0, 1, gap=2.0))  # 4 mm slices every 6 mm
    assert gapped.shape == (40, 6, 32)
    expected = degrade(torch.from_numpy(gt.data.astype(np.float64)), gapped.shape,
                       ("cubic", SliceModel(4.0), "cubic")).numpy()
    np.testing.assert_allclose(gapped.data, expected, atol=1e-4)

    slices = [ThickSlices(5.0, axis) for axis in range(3)]
    methods = {"cubic": baseline("cubic"), "tiny+dc:slice": model_method(tiny_model, "cpu", consistency="slice")}
    records = evaluate([Subject.from_volumes("mni", gt)], methods, slices=slices)
    assert [(r.slice_axis, r.slice_thickness, r.degradation) for r in records[::2]] == [
        (axis, 5.0, "slices-boxcar") for axis in range(3)]
    assert records[0].scale == [5.0, 1.0, 1.0] and records[2].scale == [1.0, round(36 / 7, 4), 1.0]
    for record in records:
        assert 15 < record.psnr < 45
    # The model's output degrades back to the thick slices through the slice model.
    out = methods["tiny+dc:slice"](lr, gt.shape, slices[1]).data
    back = degrade(torch.from_numpy(out.astype(np.float64)), lr.shape, ("cubic", SliceModel(5.0), "cubic")).numpy()
    assert np.abs(back - lr.data).max() < 1e-3 * np.ptp(lr.data)
    with pytest.raises(InputError, match=r"\+dc:slice needs thick-slice inputs"):
        methods["tiny+dc:slice"](lr, gt.shape)
    # A baseline projected the same way: consistent with the slices, and closer to the truth (non-expansive).
    name, projected = method("cubic+dc:slice")
    out = projected(lr, gt.shape, slices[1]).data
    back = degrade(torch.from_numpy(out.astype(np.float64)), lr.shape, ("cubic", SliceModel(5.0), "cubic")).numpy()
    assert name == "cubic+dc:slice" and np.abs(back - lr.data).max() < 1e-3 * np.ptp(lr.data)
    assert psnr(out, gt.data) > psnr(baseline("cubic")(lr, gt.shape).data, gt.data)
