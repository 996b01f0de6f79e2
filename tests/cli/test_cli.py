import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from arssr.cli import main
from arssr.degrade import degrade
from arssr.inference import example_volume_path
from arssr.models import load_model
from arssr.volume import load_volume


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_upsample_one_file_writes_volume_and_sidecar(tmp_path, capsys, oblique_nifti, tiny_weights):
    out = tmp_path / "sr.nii.gz"
    code, _, err = run(capsys, "upsample", oblique_nifti, "--scale", "2,2,1", "-o", out, "--weights", tiny_weights)
    assert code == 0, err
    image = nib.load(out)
    assert image.shape == (28, 24, 10) and image.get_data_dtype() == np.float32
    assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 4
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["output_shape"] == [28, 24, 10] and len(sidecar["weights_sha256"]) == 64
    assert sidecar["device"] == "cpu" or sidecar["device"].startswith(("cuda", "mps"))


def test_existing_output_needs_overwrite(tmp_path, capsys, oblique_nifti, tiny_weights):
    out = tmp_path / "sr.nii"
    out.write_bytes(b"old")
    code, _, err = run(capsys, "upsample", oblique_nifti, "--scale", "2", "-o", out, "--weights", tiny_weights)
    assert code == 1 and "exists (use --overwrite" in err and out.read_bytes() == b"old"
    code, _, _ = run(capsys, "upsample", oblique_nifti, "--scale", "2", "-o", out, "--weights", tiny_weights, "--force")
    assert code == 0 and nib.load(out).shape == (28, 24, 20)


def test_folder_batch_goes_on_past_a_bad_file(tmp_path, capsys, oblique_nifti, tiny_weights):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.nii.gz").write_bytes(oblique_nifti.read_bytes())
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 2), np.float32), np.eye(4)), folder / "b.nii.gz")
    (folder / "c.nii").write_bytes(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.eye(4)).to_bytes())
    code, _, err = run(capsys, "upsample", folder, "--voxel-size", "0.5", "--output-dir", tmp_path / "out",
                       "--weights", tiny_weights, "-q")
    assert code == 1
    assert "b.nii.gz: 4D volume with 2 frames" in err and "2 written, 0 skipped, 1 failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_sr.json", "a_sr.nii.gz", "c_sr.json", "c_sr.nii.gz"]
    assert nib.load(tmp_path / "out" / "c_sr.nii.gz").shape == (8, 10, 12)
    code, _, err = run(capsys, "upsample", folder, "--voxel-size", "0.5", "--output-dir", tmp_path / "out",
                       "--weights", tiny_weights, "--skip-existing", "-q")
    assert code == 1 and "0 written, 2 skipped, 1 failed" in err


def test_list_file_and_mixed_inputs(tmp_path, capsys, oblique_nifti, tiny_weights):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# subjects\n{oblique_nifti.name}\n")
    code, _, err = run(capsys, "upsample", listing, "--scale", "1,1,2", "--weights", tiny_weights, "-q")
    assert code == 0, err
    assert load_volume(tmp_path / "oblique_sr.nii.gz").shape == (14, 12, 20)
    with pytest.raises(SystemExit) as exit_info:
        main(["upsample", str(tmp_path), str(oblique_nifti), "--scale", "2"])
    assert exit_info.value.code == 2
    assert "not a mix" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["missing.nii.gz", "--scale", "2"], "missing.nii.gz: file not found"),
        (["notes.txt.bak", "--scale", "2"], "not a NIfTI file"),
        (["nan.nii.gz", "--scale", "2"], "NaN or infinite voxels"),
        (["flat.nii.gz", "--scale", "2"], "2D image"),
        (["good.nii.gz", "--scale", "6000"], "NIfTI limit"),
        (["good.nii.gz", "--scale", "3000"], "of memory is free"),
        (["good.nii.gz", "--scale", "2", "--weights", "junk.safetensors"], "not a readable safetensors file"),
        (["good.nii.gz", "--scale", "2", "--weights", "nothere.safetensors"], "weights file not found"),
        (["good.nii.gz", "--scale", "2", "--device", "quantum"], "unknown device"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, tiny_weights, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt.bak").write_text("hello")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    nan = np.ones((6, 6, 6), np.float32)
    nan[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((6, 6), np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4)), tmp_path / "good.nii.gz")
    before = set(tmp_path.iterdir())
    weights = [] if "--weights" in argv else ["--weights", str(tiny_weights)]
    code, out, err = run(capsys, "upsample", *argv, *weights, "-o", tmp_path / "out.nii.gz")
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert set(tmp_path.iterdir()) == before


def test_missing_default_model_says_so(tmp_path, capsys, monkeypatch, oblique_nifti):
    monkeypatch.setattr("arssr.models.checkpoint.default_model_path", lambda: tmp_path / "none.safetensors")
    code, _, err = run(capsys, "upsample", oblique_nifti, "--scale", "2", "-o", tmp_path / "o.nii.gz")
    assert code == 1 and "no default model is installed" in err and "--weights" in err


def test_info_on_volume_and_model(capsys, oblique_nifti, tiny_weights):
    code, out, _ = run(capsys, "info", oblique_nifti)
    assert code == 0
    assert "shape: 14 x 12 x 10" in out and "spacing_mm: 1.2 x 0.9 x 2.5" in out and "dtype: int16" in out
    assert "qform_code: 1, sform_code: 4" in out
    code, out, _ = run(capsys, "info", tiny_weights)
    params = sum(p.numel() for p in load_model(tiny_weights).parameters())
    assert code == 0 and f"parameters: {params:,}" in out and "receptive_radius_voxels: 8" in out
    assert "card." not in out


def test_info_prints_the_model_card(tmp_path, capsys, tiny_model):
    from arssr.models import save_model

    path = save_model(tiny_model, tmp_path / "carded.safetensors", scale_range="2,4", contrast="T1w")
    code, out, _ = run(capsys, "info", path)
    lines = out.splitlines()
    assert code == 0 and lines[-2:] == ["card.contrast: T1w", "card.scale_range: 2,4"]


def test_example_on_real_anatomy(tmp_path, capsys, monkeypatch, tiny_weights):
    """The shipped MNI152 sample, upsampled through the CLI with an explicit per-axis scale."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "upsample", "--example", "--scale", "1.5,1,1", "--weights", tiny_weights, "-q")
    assert code == 0, err
    source, result = load_volume(example_volume_path()), load_volume(tmp_path / "mni152_t1_3mm_sr.nii.gz")
    assert result.shape == (99, 78, 63)
    # The default k-space consistency: non-negative like the input, and it degrades back to the input
    # (up to what the floor at zero allows at the brain's edge: measured 1.4 % at most, 0.02 % on average).
    assert result.data.min() >= 0 == source.data.min()
    error = np.abs(degrade(torch.from_numpy(result.data.astype(np.float64)), source.shape, "kspace").numpy()
                   - source.data)
    assert error.max() < 2e-2 * source.data.max() and error.mean() < 1e-3 * source.data.max()
    corner = np.array([-0.5, -0.5, -0.5, 1.0])
    far = np.array([s - 0.5 for s in source.shape] + [1.0])
    far_out = np.array([s - 0.5 for s in result.shape] + [1.0])
    np.testing.assert_allclose(result.affine @ corner, source.affine @ corner, atol=1e-6)
    np.testing.assert_allclose(result.affine @ far_out, source.affine @ far, atol=1e-6)


def test_help_does_not_import_torch():
    code = "import sys; from arssr.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    result = subprocess.run([sys.executable, "-m", "arssr", "upsample", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--voxel-size" in result.stdout


def test_model_card_warning_is_one_line(tmp_path, capsys, oblique_nifti, tiny_model):
    from arssr.models import save_model

    weights = save_model(tiny_model, tmp_path / "carded.safetensors", input_spacing_mm="2,4")
    code, _, err = run(capsys, "upsample", oblique_nifti, "--scale", "2", "-o", tmp_path / "o.nii.gz",
                       "--weights", weights, "-q")
    assert code == 0
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        "warning: input voxel size 1.2x0.9x2.5 mm is outside the 2-4 mm the model was trained on; results may be poor"
    ]


def test_detail_gain_option(tmp_path, capsys, mni_crop, tiny_weights):
    from arssr.inference import fitted_gain, upsample
    from arssr.volume import save_volume

    save_volume(mni_crop, tmp_path / "in.nii.gz")
    outputs = {}
    for gain in ("0", "auto"):
        out = tmp_path / f"out_{gain}.nii.gz"
        code, _, err = run(capsys, "upsample", tmp_path / "in.nii.gz", "--scale", "2", "-o", out,
                           "--weights", tiny_weights, "--detail-gain", gain, "-q")
        assert code == 0, err
        outputs[gain] = load_volume(out).data
        sidecar = json.loads(out.with_suffix("").with_suffix(".json").read_text())
        fitted = fitted_gain(mni_crop, tiny_weights, scale=2)
        assert (sidecar["detail_gain"], sidecar["detail_gain_fitted"]) == ((0.0, False) if gain == "0" else (fitted, True))
    assert not np.array_equal(outputs["0"], outputs["auto"])
    np.testing.assert_array_equal(outputs["auto"], upsample(mni_crop, tiny_weights, scale=2, gain=fitted).data)
    out = tmp_path / "out_cubic.nii.gz"  # cubic consistency: auto is the fixed CUBIC_GAIN, not a fit
    code, _, err = run(capsys, "upsample", tmp_path / "in.nii.gz", "--scale", "2", "-o", out,
                       "--weights", tiny_weights, "--consistency", "cubic", "-q")
    assert code == 0, err
    sidecar = json.loads(out.with_suffix("").with_suffix(".json").read_text())
    assert (sidecar["detail_gain"], sidecar["detail_gain_fitted"]) == (0.25, False)
    with pytest.raises(SystemExit) as usage:
        main(["upsample", str(tmp_path / "in.nii.gz"), "--scale", "2", "--detail-gain", "-1"])
    assert usage.value.code == 2 and "expected auto or a number >= 0" in capsys.readouterr().err


def test_slice_thickness_on_real_anatomy(tmp_path, capsys, mni_t1, tiny_weights):
    """The MNI152 T1 in 4 mm slices every 6 mm along its third axis (2 mm gaps), upsampled x6 with that slice model."""
    from arssr.consistency import degrade_volume
    from arssr.degrade import SliceModel

    hr = mni_t1.data[60:90, 70:96, 60:120]
    lr = degrade(torch.from_numpy(hr.astype(np.float64)), (30, 26, 10), ("kspace", "kspace", SliceModel(4.0)))
    affine = mni_t1.affine @ np.diag([1.0, 1.0, 6.0, 1.0])
    nib.save(nib.Nifti1Image(lr.numpy().astype(np.float32), affine), tmp_path / "thick.nii.gz")
    out = tmp_path / "sr.nii.gz"
    code, _, err = run(capsys, "upsample", tmp_path / "thick.nii.gz", "--scale", "1,1,6", "--slice-thickness", "4",
                       "-o", out, "--weights", tiny_weights)
    assert code == 0, err
    sr = load_volume(out)
    assert sr.shape == (30, 26, 60) and np.allclose(sr.spacing, (1, 1, 1))
    back = degrade_volume(sr.data, (30, 26, 10), ("kspace", "kspace", SliceModel(4.0)))
    assert np.abs(back - lr.numpy()).max() < 1e-3 * np.ptp(hr)
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["slice_thickness"] == 4.0 and sidecar["slice_profile"] == "boxcar"
    code, _, err = run(capsys, "upsample", tmp_path / "thick.nii.gz", "--scale", "2,1,1", "--slice-profile",
                       "gaussian", "-o", tmp_path / "x.nii.gz", "--weights", tiny_weights)
    assert code == 1 and err.startswith("error: a slice thickness needs one axis coarser than the other two and "
                                        "upsampled") and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv,message", [
    (["--slice-thickness", "0"], "argument --slice-thickness: expected a positive number, got '0'"),
    (["--slice-thickness", "thick"], "argument --slice-thickness: expected a positive number, got 'thick'"),
    (["--slice-profile", "box"], "argument --slice-profile: invalid choice: 'box'"),
    (["--slice-thickness", "5", "--consistency", "none"], "cannot go with --consistency none"),
])
def test_slice_options_usage_errors_exit_2_before_any_work(tmp_path, capsys, argv, message, tiny_weights):
    with pytest.raises(SystemExit) as exc:
        run(capsys, "upsample", tmp_path / "missing.nii.gz", "--scale", "1,1,4", *argv, "-o", tmp_path / "o.nii.gz",
            "--weights", tiny_weights)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_an_existing_sidecar_is_not_replaced_unasked(tmp_path, capsys, oblique_nifti, tiny_weights):
    out = tmp_path / "sr.nii.gz"
    (tmp_path / "sr.json").write_text("mine\n")
    code, _, err = run(capsys, "upsample", oblique_nifti, "--scale", "2", "-o", out, "--weights", tiny_weights)
    assert code == 1 and err.strip() == f"error: {tmp_path / 'sr.json'}: exists (use --overwrite to replace it)"
    assert (tmp_path / "sr.json").read_text() == "mine\n" and not out.exists()
    code, _, err = run(capsys, "upsample", oblique_nifti, "--scale", "2", "-o", out, "--weights", tiny_weights,
                       "--overwrite", "-q")
    assert code == 0, err
    assert json.loads((tmp_path / "sr.json").read_text())["output"] == str(out)


def _mni_thick(mni_t1, folder, thickness_mm=None):
    """The MNI152 T1 averaged over 4 mm boxcar slices along its third axis (1 x 1 x 4 mm), with a BIDS sidecar
    giving ``thickness_mm`` when it is set."""
    hr = mni_t1.data[60:90, 70:96, 60:120]
    lr = hr.reshape(30, 26, 15, 4).mean(axis=3)
    nib.save(nib.Nifti1Image(lr, mni_t1.affine @ np.diag([1.0, 1.0, 4.0, 1.0])), folder / "thick.nii.gz")
    if thickness_mm is not None:
        (folder / "thick.json").write_text(json.dumps({"SliceThickness": thickness_mm, "RepetitionTime": 0.5}))
    return folder / "thick.nii.gz"


@pytest.mark.parametrize("sidecar_mm, same_as, origin, line", [
    (None, "spacing", "spacing", "slices 4 mm thick (as spaced)"),
    (3.0, "3", "sidecar", "slices 3 mm thick (SliceThickness of its JSON sidecar)"),
])
def test_thick_slices_are_detected_by_default_on_real_anatomy(tmp_path, capsys, mni_t1, tiny_weights, sidecar_mm,
                                                              same_as, origin, line):
    source = _mni_thick(mni_t1, tmp_path, sidecar_mm)
    common = ["--scale", "1,1,4", "--weights", tiny_weights, "--threads", "1"]
    code, _, err = run(capsys, "upsample", source, "-o", tmp_path / "default.nii.gz", *common)
    assert code == 0, err
    assert err.splitlines()[0] == (f"{source}: 2D multi-slice along axis 2, {line}; --slice-thickness none treats "
                                   "it as a 3D volume")
    sidecar = json.loads((tmp_path / "default.json").read_text())
    assert sidecar["slice_thickness_from"] == origin and sidecar["slice_profile"] == "boxcar"
    assert run(capsys, "upsample", source, "-o", tmp_path / "asked.nii.gz", "--slice-thickness", same_as, "-q",
               *common)[0] == 0
    assert run(capsys, "upsample", source, "-o", tmp_path / "3d.nii.gz", "--slice-thickness", "none", *common)[2] \
        .startswith(f"{tmp_path / '3d.nii.gz'}  (")
    default, asked, volume_3d = (np.asarray(nib.load(tmp_path / f"{name}.nii.gz").dataobj)
                                 for name in ("default", "asked", "3d"))
    assert np.array_equal(default, asked) and not np.allclose(default, volume_3d, atol=1e-3)
    assert json.loads((tmp_path / "3d.json").read_text())["slice_thickness"] is None


def test_thick_slices_are_not_assumed_where_the_rule_does_not_hold(tmp_path, capsys, mni_t1, tiny_weights):
    source = _mni_thick(mni_t1, tmp_path)
    cases = [["--scale", "2,2,4"], ["--scale", "2"], ["--scale", "1,1,4", "--consistency", "none"]]
    for i, argv in enumerate(cases):
        code, _, err = run(capsys, "upsample", source, "-o", tmp_path / f"o{i}.nii.gz", "--weights", tiny_weights,
                           "--threads", "1", *argv)
        assert code == 0 and "2D multi-slice" not in err, err
        assert json.loads((tmp_path / f"o{i}.json").read_text())["slice_thickness"] is None
    # a 3D acquisition with thick voxels, as its BIDS sidecar says
    (tmp_path / "thick.json").write_text(json.dumps({"MRAcquisitionType": "3D", "SliceThickness": 4}))
    code, _, err = run(capsys, "upsample", source, "-o", tmp_path / "3d.nii.gz", "--weights", tiny_weights,
                       "--threads", "1", "--scale", "1,1,4")
    assert code == 0 and err.splitlines()[0] == (f"{source}: its JSON sidecar says MRAcquisitionType 3D: taken as a "
                                                 "3D volume, not as slices")
    assert json.loads((tmp_path / "3d.json").read_text())["slice_thickness"] is None


def test_thick_slices_detected_quietly_with_q(tmp_path, capsys, mni_t1, tiny_weights):
    source = _mni_thick(mni_t1, tmp_path)
    code, _, err = run(capsys, "upsample", source, "-o", tmp_path / "q.nii.gz", "--weights", tiny_weights,
                       "--threads", "1", "--scale", "1,1,4", "-q")
    assert code == 0 and err == ""
    assert json.loads((tmp_path / "q.json").read_text())["slice_thickness"] == "spacing"