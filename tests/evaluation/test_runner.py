"""``arssr evaluate`` end to end on real anatomy: every result file, figures, and errors for bad input."""

import csv
import json

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest

from arssr.evaluation.methods import baseline
from arssr.evaluation.runner import markdown_report, run_evaluation
from arssr.evaluation.scoring import Record
from arssr.evaluation.segmentation import REGIONS
from arssr.metrics import MetricUnavailable, psnr
from arssr.simulate import simulate_lr
from arssr.volume import load_volume
from conftest import needs_ants
from cli.test_cli import run


@pytest.fixture
def mni_files(tmp_path, mni_crop):
    """The MNI crop as a NIfTI ground truth, and an AAL-numbered atlas on its grid (caudate and cerebellum blocks)."""
    gt = tmp_path / "mni.nii.gz"
    nib.save(nib.Nifti1Image(mni_crop.data, mni_crop.affine), gt)
    atlas = np.zeros(mni_crop.shape, dtype=np.int16)
    atlas[4:12, 8:16, 6:12] = 71
    atlas[14:20, 2:10, 2:8] = 95
    atlas_path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas, mni_crop.affine), atlas_path)
    return gt, atlas_path


def mean_difference(estimate, reference) -> float:
    """A stand-in for LPIPS, so the tests do not depend on whether ``lpips`` and its weights are here."""
    return float(np.abs(estimate - reference).mean())


@needs_ants
def test_evaluate_writes_every_result_and_figure(tmp_path, capsys, mni_files, mni_crop, tiny_weights, monkeypatch):
    monkeypatch.setattr("arssr.metrics.load_lpips", lambda device: mean_difference)
    gt, atlas = mni_files
    out = tmp_path / "eval"
    code, _, err = run(capsys, "evaluate", "--gt", gt, "--atlas", atlas, "--scales", "2,3", "--degradations",
                       "kspace,cubic", "--methods", f"cubic,kspace,bspline,tiny={tiny_weights}", "-o", out,
                       "--device", "cpu")
    assert code == 0, err
    assert "warning: LPIPS" not in err
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 2 * 2 * 4
    assert {(r["degradation"], r["scale"]) for r in records} == {("kspace", 2), ("kspace", 3), ("cubic", 2), ("cubic", 3)}
    assert {r["method"] for r in records} == {"cubic", "kspace", "bspline", "tiny"}
    for record in records:
        assert {"method", "scale", "degradation", "subject", "psnr", "ssim", "lpips", "psi", "dice"} <= set(record)
        assert record["psi"] == 0.0  # PSI needs slices of at least 3 x 32 pixels; this crop has none
        assert set(record["dice"]) == set(REGIONS) and record["subject"] == "mni"
        assert all(v is None or 0 <= v <= 1 for v in record["dice"].values())
        assert -1 < record["ssim"] < 1 and 5 < record["psnr"] < 50  # the tiny model has random weights
        assert record["lpips"] > 0
        if record["method"] != "tiny":
            assert record["ssim"] > 0.5 and record["psnr"] > 15
    # One number checked against an independent run of the same protocol.
    cubic = next(r for r in records if (r["method"], r["degradation"], r["scale"]) == ("cubic", "kspace", 3))
    lr = simulate_lr(mni_crop, 3, "kspace")
    assert cubic["psnr"] == pytest.approx(psnr(baseline("cubic")(lr, mni_crop.shape).data, mni_crop.data), abs=1e-9)

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == len(records) and rows[0]["dice_deep GM"] != ""
    assert float(rows[0]["psnr"]) == pytest.approx(records[0]["psnr"])
    table = (out / "results.md").read_text()
    assert "## LR by kspace degradation" in table and "## LR by cubic degradation" in table
    assert "| PSNR (dB) | x2 | x3 |" in table and "PSI of the ground truth: mni 0.0000" in table and "| Dice: scale | method | CSF | GM | WM | deep GM | cerebellum |" in table
    assert "| LPIPS (lower is better) | x2 | x3 |" in table
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert len(figures) == 4 * 3 and "mni_kspace_x3_profile.png" in figures
    image = matplotlib.image.imread(out / "figures" / "mni_cubic_x2_mosaic.png")
    assert image.ndim == 3 and image.shape[0] > image.shape[1]  # rows: LR, four methods, GT

    code, _, err = run(capsys, "evaluate", "--gt", gt, "--scales", "2", "--methods", "cubic", "-o", out)
    assert code == 1 and "results.csv: exists (use --overwrite" in err


def test_evaluate_given_lr_pairs(tmp_path, mni_files, mni_crop):
    gt, _ = mni_files
    lr = tmp_path / "lr.nii.gz"
    lr_volume = simulate_lr(mni_crop, (2, 2, 1), "kspace")
    nib.save(nib.Nifti1Image(lr_volume.data, lr_volume.affine), lr)
    records = run_evaluation([str(gt)], tmp_path / "pairs", lr=[str(lr)], methods=["cubic"], lpips=False,
                             dice=False, figures=False)
    assert [(r.degradation, r.scale) for r in records] == [("given", [2.0, 2.0, 1.0])]
    assert "| PSNR (dB) | x2x2x1 |" in (tmp_path / "pairs" / "results.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--gt", "missing.nii.gz"], "missing.nii.gz: file not found"),
    (["--gt", "{gt}", "--lr", "{gt}", "{gt}"], "one LR input per ground truth"),
    (["--gt", "{gt}", "--methods", "bicubic"], "unknown method 'bicubic'"),
])
def test_bad_evaluate_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, mni_files, argv, message):
    gt, _ = mni_files
    out = tmp_path / "out"
    code, _, err = run(capsys, "evaluate", *[a.format(gt=gt) for a in argv], "-o", out, "--no-dice")
    assert code == 1 and message in err and err.startswith("error:"), err
    assert not out.exists()


def test_evaluate_usage_errors_exit_2(capsys, mni_files):
    gt, _ = mni_files
    with pytest.raises(SystemExit) as exc:
        run(capsys, "evaluate", "--gt", gt, "--scales", "2,x", "-o", "out")
    assert exc.value.code == 2 and "--scales takes comma-separated numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run(capsys, "evaluate", "--gt", gt, "--scales", ",", "-o", "out")
    assert exc.value.code == 2 and "--scales takes comma-separated numbers, got none" in capsys.readouterr().err
    for option, value, message in (("--degradations", "blur", "unknown degradation 'blur'"),
                                   ("--scales", "0.5", "scale must be >= 1")):
        with pytest.raises(SystemExit) as exc:
            run(capsys, "evaluate", "--gt", gt, option, value, "-o", "out")
        assert exc.value.code == 2 and capsys.readouterr().err.startswith(f"error: {message}")


def test_lpips_that_cannot_load_is_one_warning_and_the_rest_is_written(tmp_path, capsys, mni_files, monkeypatch):
    def unavailable(device):
        raise MetricUnavailable("OSError: no pretrained AlexNet weights offline")

    monkeypatch.setattr("arssr.metrics.load_lpips", unavailable)
    gt, _ = mni_files
    out = tmp_path / "eval"
    code, _, err = run(capsys, "evaluate", "--gt", gt, "--scales", "2", "--degradations", "kspace", "--methods",
                       "cubic", "--no-psi", "--no-dice", "--no-figures", "-o", out, "--device", "cpu")
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        "warning: LPIPS: unavailable (OSError: no pretrained AlexNet weights offline)"]
    table = (out / "results.md").read_text()
    assert "LPIPS: unavailable (" in table and "| LPIPS" not in table
    assert [r["lpips"] for r in json.loads((out / "results.json").read_text())] == [None]


def test_markdown_marks_values_missing_for_some_subjects():
    records = [Record(method, 2.0, "kspace", subject, 30.0, 31.0, 0.9, lpips)
               for method, subject, lpips in (("cubic", "a", 0.1), ("cubic", "b", None), ("lanczos", "a", 0.2),
                                              ("lanczos", "b", 0.3))]
    table = markdown_report(records)
    assert "| cubic | 30.00 |" in table
    assert "| LPIPS (lower is better) | x2 |\n|---|---|\n| cubic | - |\n| lanczos | 0.2500 |" in table


def test_thick_slice_protocol_writes_tables_per_slice_axis(tmp_path, capsys, mni_files):
    gt, _ = mni_files
    out = tmp_path / "thick"
    code, _, err = run(capsys, "evaluate", "--gt", gt, "--slice-thickness", "3,4", "--slice-axis", "2",
                       "--slice-profile", "gaussian", "--methods", "cubic,kspace", "--no-psi", "--no-dice",
                       "--no-lpips", "--no-figures", "-o", out)
    assert code == 0, err
    records = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["slice_axis"], r["slice_thickness"], r["degradation"]) for r in records] == [
        (m, 2, t, "slices-gaussian") for t in (3.0, 4.0) for m in ("cubic", "kspace")]
    table = (out / "results.md").read_text()
    assert "## LR by gaussian slices along axis 2" in table and "| PSNR (dB) | 3 mm | 4 mm |" in table
    assert list(csv.DictReader((out / "results.csv").open()))[0]["slice_thickness"] == "3.0"
    # the staircase measure of each output, against an independent call on the same output
    from arssr.evaluation.methods import baseline
    from arssr.metrics import brain_mask, slice_steps
    from arssr.simulate import ThickSlices, simulate_thick_slices

    truth = load_volume(gt)
    cubic = baseline("cubic")(simulate_thick_slices(truth, ThickSlices(3.0, 2, "gaussian")), truth.shape).data
    assert records[0]["steps"] == pytest.approx(slice_steps(cubic, 2, brain_mask(truth.data)), rel=1e-9)
    assert "| Slice steps in the mask" in table and "Slice steps of the ground truth in its mask: " in table


def test_thick_slices_with_gaps(tmp_path, capsys, mni_files):
    """4 mm slices every 6 mm: the records carry the gap, the tables say it, the LR has one slice per 6 mm."""
    gt, _ = mni_files
    out = tmp_path / "gaps"
    code, _, err = run(capsys, "evaluate", "--gt", gt, "--slice-thickness", "4", "--slice-gap", "2", "--slice-axis",
                       "1", "--methods", "cubic", "--no-psi", "--no-dice", "--no-lpips", "--no-figures", "-o", out)
    assert code == 0, err
    record, = json.loads((out / "results.json").read_text())
    assert (record["slice_thickness"], record["slice_gap"], record["slice_axis"]) == (4.0, 2.0, 1)
    volume = load_volume(gt)
    n, spacing = volume.shape[1], volume.spacing[1]
    assert record["scale"][1] == pytest.approx(n / round(n * spacing / 6), abs=1e-4)
    assert "| PSNR (dB) | 4 mm + 2 mm gap |" in (out / "results.md").read_text()
    assert list(csv.DictReader((out / "results.csv").open()))[0]["slice_gap"] == "2.0"


@pytest.mark.parametrize("argv,message", [
    (["--slice-thickness", "3,-1"], "slice thickness must be a positive number"),
    (["--slice-thickness", "3", "--scales", "2"], "--slice-thickness replaces --scales and --degradations"),
    (["--slice-axis", "2"], "--slice-axis, --slice-profile and --slice-gap need --slice-thickness"),
    (["--slice-gap", "2"], "--slice-axis, --slice-profile and --slice-gap need --slice-thickness"),
    (["--slice-thickness", "3", "--slice-gap", "-1"], "slice gap must be >= 0 mm, got -1.0"),
    (["--methods", "cubic,arssr+dc:slice"], "+dc:slice needs thick slices"),
])
def test_thick_slice_usage_errors_exit_2(capsys, mni_files, argv, message):
    gt, _ = mni_files
    with pytest.raises(SystemExit) as exc:
        run(capsys, "evaluate", "--gt", gt, *argv, "-o", "out")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and message in err
