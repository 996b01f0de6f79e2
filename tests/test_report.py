"""Visual reports (arssr.report, upsample --report / --report-dir, arssr report): facts, flags, pixels, the index,
safe writing, and the page as a real browser renders it."""

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from arssr import geometry
from arssr.cli import main
from arssr.degrade import degrade
from arssr.inference import empty_background, example_volume_path, super_resolve, upsample
from arssr.models import save_model
from arssr.models.space import ModelSpace
from arssr.report import flags, write_index, write_report
from arssr.volume import Volume, load_volume, save_volume
from conftest import make_tiny_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """What a page or an index shows: the facts table, the flags, the images, the embedded facts and the links."""

    def __init__(self, text: str):
        super().__init__()
        self.facts, self.flags, self.images, self.links, self.rows = {}, [], {}, [], []
        self.embedded = None
        self._cell = self._fact = self._script = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-fact" in attrs:
            self._fact = attrs["data-fact"]
        elif tag == "tr" and attrs.get("class") in ("flagged", "clean"):
            self.rows.append(attrs["class"])
        elif tag == "td" and self._fact:
            self._cell = []
        elif tag == "li" and attrs.get("class") == "flag":
            self._cell, self._fact = [], "__flag__"
        elif tag == "img":
            self.images[attrs.get("id") or f"#{len(self.images)}"] = attrs
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "script" and attrs.get("type") == "application/json":
            self._script = []

    def handle_data(self, data):
        for parts in (self._cell, self._script):
            if parts is not None:
                parts.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "li") and self._cell is not None:
            text = "".join(self._cell)
            self.flags.append(text) if self._fact == "__flag__" else self.facts.__setitem__(self._fact, text)
            self._cell = self._fact = None
        elif tag == "script" and self._script is not None:
            self.embedded, self._script = json.loads("".join(self._script)), None


def decode(uri: str) -> np.ndarray:
    """A data URI's PNG as an array (palette images as their indices)."""
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def millimetres(spacing) -> str:
    return " x ".join(f"{s:.4f}".rstrip("0").rstrip(".") for s in spacing) + " mm"


def cli(capsys, *argv):
    """``(exit code, stderr)`` of one ``arssr`` command (usage errors exit with 2)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def carded_weights(tmp_path_factory) -> Path:
    """The tiny model with a card for 1-2 mm inputs: the 3 mm example is outside its range (a warning)."""
    folder = tmp_path_factory.mktemp("weights")
    return save_model(make_tiny_model(), folder / "tiny.safetensors", input_spacing_mm="1,2", scale_range="2,4")


@pytest.fixture(scope="module")
def example_run(tmp_path_factory, carded_weights):
    """``upsample --example --scale 1.5,1,1 --report`` with the carded model: (folder, sidecar, page text)."""
    folder = tmp_path_factory.mktemp("run")
    code = main(["upsample", "--example", "--scale", "1.5,1,1", "--weights", str(carded_weights), "-o",
                 str(folder / "sr.nii.gz"), "--report", str(folder / "sr.html"), "--threads", "1", "-q"])
    assert code == 0
    return folder, json.loads((folder / "sr.json").read_text()), (folder / "sr.html").read_text()


def test_residual_is_the_input_minus_the_degraded_output_before_projection(mni_crop, tiny_model, one_thread):
    upsampled = upsample(mni_crop, tiny_model, scale=(2, 1.5, 2), gain=1.0, device="cpu", details=True)
    result, residual = upsampled.volume, upsampled.residual
    np.testing.assert_array_equal(result.data, upsample(mni_crop, tiny_model, scale=(2, 1.5, 2), gain=1.0,
                                                        device="cpu").data)
    space = ModelSpace.of(mni_crop.data, mni_crop.affine, tiny_model)
    lr = space.to_model(mni_crop.data)
    estimate = super_resolve(lr, tiny_model, space.axes((48, 42, 40)))
    estimate[empty_background(lr, estimate.shape)] = 0.0
    degraded = degrade(torch.from_numpy(estimate.astype(np.float64)), lr.shape, "kspace").numpy()
    expected = space.from_model_axes(lr - degraded) * (space.window[1] - space.window[0])
    assert residual.shape == mni_crop.shape and residual.dtype == np.float32
    np.testing.assert_allclose(residual, expected, atol=1e-4 * float(np.ptp(mni_crop.data)))
    assert np.abs(residual).max() > 0.01 * float(np.ptp(mni_crop.data))  # the network did disagree
    assert upsample(mni_crop, tiny_model, scale=2, consistency="none", details=True).residual is None
    constant = Volume(np.full((6, 7, 8), 3.0, np.float32), np.eye(4))
    np.testing.assert_array_equal(upsample(constant, tiny_model, scale=2, details=True).residual, np.zeros((6, 7, 8)))


def test_page_shows_every_fact_of_the_sidecar(example_run, carded_weights):
    folder, sidecar, text = example_run
    page = Page(text)
    assert {key: page.embedded[key] for key in sidecar} == sidecar  # the page carries the record whole
    source = nib.load(example_volume_path())
    facts = page.facts
    assert facts["input"] == sidecar["input"] == str(example_volume_path())
    assert facts["output"] == sidecar["output"] == str(folder / "sr.nii.gz")
    assert facts["input_geometry"] == f"66 x 78 x 63 voxels of {millimetres(source.header.get_zooms())}"
    assert sidecar["output_shape"] == [99, 78, 63]
    assert facts["output_geometry"] == f"99 x 78 x 63 voxels of {millimetres(sidecar['spacing_mm'])}"
    assert facts["scale"] == "1.5, 1, 1"
    assert facts["weights"] == f"{carded_weights} (sha256 {sidecar['weights_sha256'][:12]})"
    assert facts["model_card"] == "input voxel size 1-2 mm, scale 2-4"
    assert facts["slice_model"] == "none (a 3D volume)" and sidecar["slice_thickness"] is None
    assert facts["slice_intensity"] == "not checked" and sidecar["slice_intensity"] is None
    assert facts["consistency"] == sidecar["consistency"] == "kspace"
    assert facts["detail_gain"] == f"{sidecar['detail_gain']:.3f}".rstrip("0").rstrip(".") + " (fitted on the input)"
    assert facts["adapt"] == "not used" and sidecar["adapt"] is None
    assert facts["warnings"] == "; ".join(sidecar["warnings"])
    assert facts["seconds"] == f"{sidecar['seconds']:.1f}".rstrip("0").rstrip(".") + " s"  # 1.0 s is shown 1 s
    assert facts["peak_memory_mib"].startswith(f"{sidecar['peak_memory_mib']:.0f} MiB (resident")
    assert sidecar["peak_memory_mib"] > 50
    assert facts["device"] == f"{sidecar['device']}, fp32, tile auto"
    assert facts["arssr_version"] == f"{sidecar['arssr_version']}: arssr {' '.join(sidecar['arguments'])}"
    shown_in = {"output_shape": "output_geometry", "spacing_mm": "output_geometry", "weights_sha256": "weights",
                "slice_thickness": "slice_model", "slice_thickness_from": "slice_model", "slice_profile": "slice_model",
                "detail_gain_fitted": "detail_gain", "precision": "device", "tile": "device",
                "arguments": "arssr_version"}
    assert all(shown_in.get(key, key) in facts for key in sidecar)  # every fact of the sidecar has its row
    record = {**sidecar, "dose_of_luck": [1, 2]}  # a field the page does not know yet is shown as it is
    page = Page(write_report(folder / "newer.html", load_volume(example_volume_path()),
                             load_volume(folder / "sr.nii.gz"), None, record, {}).read_text())
    assert page.facts["dose_of_luck"] == "[1, 2]"


def test_warning_is_flagged_at_the_top(example_run):
    _, sidecar, text = example_run
    assert sidecar["warnings"] == ["input voxel size 2.98x2.99x3 mm is outside the 1-2 mm the model was trained "
                                   "on; results may be poor"]
    assert Page(text).flags == [f"warning: {sidecar['warnings'][0]}"]
    assert text.index('id="flags"') < text.index('id="slices"') < text.index('id="facts"')


def test_a_run_inside_the_card_has_no_flags_and_a_dropped_adaptation_is_flagged(tmp_path, capsys):
    weights = save_model(make_tiny_model(), tmp_path / "w.safetensors", input_spacing_mm="1,6", scale_range="1,4")
    code, err = cli(capsys, "upsample", "--example", "--scale", "1.5,1,1", "--weights", weights, "-o",
                    tmp_path / "sr.nii.gz", "--report", tmp_path / "sr.html", "--threads", "1", "-q")
    assert code == 0 and "warning" not in err
    page = Page((tmp_path / "sr.html").read_text())
    assert page.flags == [] and page.facts["warnings"] == "none" and 'class="ok"' in (tmp_path / "sr.html").read_text()
    dropped = {**page.embedded, "adapt": {"before": 30.0, "after": 29.5, "kept": False, "steps": 3, "seconds": 1.0}}
    assert flags(dropped) == ["adaptation dropped: held-out PSNR 30.00 -> 29.50 dB did not improve, so the default "
                              "model was used"]
    assert flags({**dropped, "adapt": {**dropped["adapt"], "after": 31.0, "kept": True}}) == []


def test_adaptation_scores_are_on_the_page_and_a_dropped_one_is_flagged(tmp_path, capsys, carded_weights):
    code, err = cli(capsys, "upsample", "--example", "--scale", "1.5,1,1", "--weights", carded_weights, "-o",
                    tmp_path / "sr.nii.gz", "--report", tmp_path / "sr.html", "--adapt-steps", "3", "--threads", "1")
    assert code == 0, err
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    adapt = sidecar["adapt"]
    page = Page((tmp_path / "sr.html").read_text())
    verdict = "kept" if adapt["kept"] else "dropped (the default model was used)"
    assert page.facts["adapt"] == (f"held-out PSNR {adapt['before']:.2f} -> {adapt['after']:.2f} dB, {verdict}; "
                                   f"3 steps, {adapt['seconds']:.1f} s".replace(".0 s", " s"))
    assert any(flag.startswith("adaptation dropped") for flag in page.flags) == (not adapt["kept"])
    dropped = {**sidecar, "adapt": {**adapt, "after": adapt["before"] - 0.5, "kept": False}}
    write_report(tmp_path / "dropped.html", load_volume(example_volume_path()), load_volume(tmp_path / "sr.nii.gz"),
                 None, dropped, {})
    page = Page((tmp_path / "dropped.html").read_text())
    assert page.flags[-1] == (f"adaptation dropped: held-out PSNR {adapt['before']:.2f} -> "
                              f"{adapt['before'] - 0.5:.2f} dB did not improve, so the default model was used")
    assert page.facts["adapt"].startswith(f"held-out PSNR {adapt['before']:.2f} -> {adapt['before'] - 0.5:.2f} dB, "
                                          "dropped (the default model was used)")


def test_slices_show_the_input_its_cubic_interpolation_and_the_output(example_run):
    folder, sidecar, text = example_run
    images = Page(text).images
    assert all(attrs["src"].startswith("data:image/png;base64,") for attrs in images.values())
    assert "http:" not in text and "https:" not in text and "<link" not in text  # nothing to fetch
    source = nib.as_closest_canonical(nib.load(example_volume_path())).get_fdata()
    output = nib.as_closest_canonical(nib.load(folder / "sr.nii.gz")).get_fdata()
    low, high = np.percentile(source, (0.5, 99.5))

    def grey(plane):  # superior (anterior) up, the subject's left on the left
        return np.rint(np.clip((plane.T[::-1] - low) / (high - low), 0, 1) * 255)

    cubic = ndimage.zoom(source, np.divide(output.shape, source.shape), order=3, mode="reflect", grid_mode=True)
    z = output.shape[2] // 2
    assert np.abs(decode(images["centre-axial-output"]["src"]) - grey(output[:, :, z])).max() <= 1
    assert np.abs(decode(images["centre-axial-cubic"]["src"]) - grey(cubic[:, :, z])).max() <= 1
    nearest = int((z + 0.5) * source.shape[2] / output.shape[2])
    assert np.abs(decode(images["centre-axial-input"]["src"]) - grey(source[:, :, nearest])).max() <= 1
    limit = float(re.search(r'id="scale-difference"><b>[^<]*</b> <span>-([^<]*)</span>', text).group(1))
    image = Image.open(io.BytesIO(base64.b64decode(images["centre-axial-difference"]["src"].split(",", 1)[1])))
    palette = np.reshape(image.getpalette(), (-1, 3))
    assert palette[0, 2] > 2 * palette[0, 0] and palette[255, 0] > 2 * palette[255, 2]  # blue below, red above
    index = np.asarray(image).astype(int)
    difference = (output[:, :, z] - cubic[:, :, z]).T[::-1]
    assert np.abs(index - np.clip(difference / limit, -1, 1) * 127.5 - 127.5).max() <= 1
    assert np.abs(difference).max() > limit  # the colour scale is symmetric, saturating at 99.5 %
    assert sidecar["detail_gain"] == 0  # the tiny model's detail is fitted away: the output is consistent as it is
    residual_limit = float(re.search(r'id="scale-residual"><b>[^<]*</b> <span>-([^<]*)</span>', text).group(1))
    assert residual_limit == pytest.approx(0.005 * (high - low), rel=1e-3)  # the floor, not rounding errors
    assert set(np.unique(decode(images["centre-axial-residual"]["src"]))) <= {127, 128}  # white
    x = output.shape[0] // 2
    assert decode(images["centre-sagittal-output"]["src"]).shape == (63, 78)  # z up, y across
    assert decode(images["centre-sagittal-residual"]["src"]).shape == (63, 78)  # on the input's grid
    assert int(images["centre-sagittal-output"]["width"]) == 200 and x == 49


def test_thick_slices_show_the_planes_that_contain_the_slice_axis(tmp_path, capsys, mni_t1, tiny_weights):
    hr = mni_t1.data[60:90, 70:96, 60:120]
    thick = hr.reshape(30, 26, 10, 6).mean(axis=3)
    affine = mni_t1.affine @ np.diag([1.0, 1.0, 6.0, 1.0])
    save_volume(Volume(thick, affine), tmp_path / "thick.nii.gz")
    code, err = cli(capsys, "upsample", tmp_path / "thick.nii.gz", "--scale", "1,1,6", "--slice-thickness", "6",
                    "--weights", tiny_weights, "-o", tmp_path / "sr.nii.gz", "--report", tmp_path / "sr.html", "-q",
                    "--equalize-slices")
    assert code == 0, err
    page = Page((tmp_path / "sr.html").read_text())
    found = json.loads((tmp_path / "sr.json").read_text())["slice_intensity"]
    assert page.facts["slice_intensity"] == (
        f"even / odd slices {found['even_over_odd']:.4g} (spread {found['spread']:.3g}) along axis 2: "
        + ("equalized" if found["equalized"] else "left as it is"))
    assert ("slice intensities equalized" in (tmp_path / "sr.html").read_text()) == found["equalized"]
    assert {name.rsplit("-", 1)[0] for name in page.images if not name.startswith("#")} == {
        "centre-sagittal", "centre-coronal", "brightest-sagittal", "brightest-coronal"}
    assert decode(page.images["centre-coronal-input"]["src"]).shape == (10, 30)  # 10 slices up, x across
    assert decode(page.images["centre-coronal-output"]["src"]).shape == (60, 30)
    assert page.facts["slice_model"] == "6 mm slices, boxcar profile (--slice-thickness)"


def test_report_dir_index_and_its_rebuild(tmp_path, capsys, carded_weights, mni_crop):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(example_volume_path(), inputs / "a.nii.gz")
    save_volume(mni_crop, inputs / "b.nii.gz")
    reports = tmp_path / "reports"
    for shard in ("0/2", "1/2"):  # each shard writes its own pages and rebuilds the index from what is present
        code, err = cli(capsys, "upsample", inputs, "--scale", "2", "--weights", carded_weights, "--output-dir",
                        tmp_path / "out", "--report-dir", reports, "--shard", shard, "--threads", "1", "-q")
        assert code == 0, err
    assert sorted(p.name for p in reports.iterdir()) == ["a_sr.html", "b_sr.html", "index.html"]
    index = Page((reports / "index.html").read_text())
    assert index.links == ["a_sr.html", "a_sr.html", "b_sr.html", "b_sr.html"]  # thumbnail and name
    assert index.rows == ["flagged", "clean"]  # a is 3 mm, outside the card's 1-2 mm; b is 2 mm
    assert max(decode(index.images["#0"]["src"]).shape) == 96
    (reports / "b_sr.html").unlink()
    shutil.copy(tmp_path / "out" / "b_sr.json", reports / "b_sr.json")  # a sidecar without a page still counts
    code, err = cli(capsys, "report", reports)
    assert code == 0 and f"{reports / 'index.html'}  (2 files)" in err
    index = Page((reports / "index.html").read_text())
    assert index.links == ["a_sr.html", "a_sr.html"] and index.rows == ["flagged", "clean"]
    a = json.loads((tmp_path / "out" / "a_sr.json").read_text())
    volumes = load_volume(inputs / "a.nii.gz"), load_volume(tmp_path / "out" / "a_sr.nii.gz")
    write_report(reports / "a_sr.html", *volumes, None, {**a, "warnings": []}, {}, overwrite=True)
    write_report(reports / "c_sr.html", *volumes, None, {**a, "output": "c_sr.nii.gz", "warnings": ["w"]}, {})
    write_index(reports)
    index = Page((reports / "index.html").read_text())  # flagged first, then by name
    assert index.links == ["c_sr.html", "c_sr.html", "a_sr.html", "a_sr.html"]
    assert index.rows == ["flagged", "clean", "clean"]
    (reports / "index.html").write_text("<p>someone's own page</p>")
    code, err = cli(capsys, "report", reports)
    assert code == 1 and "is not an arssr index (use --overwrite" in err
    assert (reports / "index.html").read_text() == "<p>someone's own page</p>"
    assert cli(capsys, "report", reports, "--overwrite")[0] == 0
    assert len(Page((reports / "index.html").read_text()).rows) == 3
    code, err = cli(capsys, "report", tmp_path / "in")
    assert code == 1 and "no arssr report pages or sidecars here" in err
    (inputs / "bad.nii.gz").write_bytes(b"not a volume")  # a batch with no page to index: no index, one error
    code, err = cli(capsys, "upsample", inputs / "bad.nii.gz", inputs / "a.nii.gz", "--scale", "2", "--weights",
                    carded_weights, "--output-dir", tmp_path / "out", "--report-dir", tmp_path / "none",
                    "--skip-existing", "-q")
    assert code == 1 and err.count("error:") == 1 and "bad.nii.gz" in err and not (tmp_path / "none").exists()


def test_index_of_many_pages_is_fast_enough_to_rebuild(tmp_path, example_run):
    _, _, text = example_run
    for i in range(20):
        (tmp_path / f"p{i:02d}.html").write_text(text.replace('"output": "', f'"output": "{i:02d}'))
    path, rows = write_index(tmp_path)
    assert rows == 20 and len(Page(path.read_text()).rows) == 20


def test_report_is_checked_before_any_work(tmp_path, capsys, carded_weights):
    out = tmp_path / "sr.nii.gz"
    args = ["upsample", "--example", "--scale", "2", "--weights", carded_weights, "-o", out, "-q"]
    (tmp_path / "old.html").write_text("old")
    code, err = cli(capsys, *args, "--report", tmp_path / "old.html")
    assert code == 1 and "old.html: exists (use --overwrite" in err and not out.exists()
    assert (tmp_path / "old.html").read_text() == "old"
    code, err = cli(capsys, *args, "--report", tmp_path / "page.txt")
    assert code == 2 and "page.txt: a report must end in .html" in err
    (tmp_path / "in.html").symlink_to(example_volume_path())
    code, err = cli(capsys, *args, "--report", tmp_path / "in.html")
    assert code == 2 and "the report would replace an input or an output" in err
    (tmp_path / "sidecar.html").symlink_to(tmp_path / "sr.json")  # dangling: the sidecar is not written yet
    code, err = cli(capsys, *args, "--report", tmp_path / "sidecar.html")
    assert code == 2 and "the report would replace an input or an output" in err and not out.exists()
    shutil.copy(example_volume_path(), tmp_path / "copy.nii.gz")
    code, err = cli(capsys, "upsample", example_volume_path(), tmp_path / "copy.nii.gz", "--scale", "2", "--weights",
                    carded_weights, "--output-dir", tmp_path, "--report", tmp_path / "r.html")
    assert code == 2 and "--report FILE.html takes one input; use --report-dir" in err
    code, err = cli(capsys, *args, "--report", tmp_path / "old.html", "--overwrite")
    assert code == 0 and Page((tmp_path / "old.html").read_text()).facts["output"] == str(out)


def test_missing_matplotlib_is_one_clear_error_before_any_work(tmp_path, capsys, carded_weights, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    code, err = cli(capsys, "upsample", "--example", "--scale", "2", "--weights", carded_weights, "-o",
                    tmp_path / "sr.nii.gz", "--report", tmp_path / "sr.html")
    assert code == 1 and "a report needs matplotlib" in err and "pip install 'arssr[report]'" in err
    assert list(tmp_path.iterdir()) == []


def test_a_report_that_cannot_be_written_leaves_the_volume(tmp_path, capsys, carded_weights, monkeypatch):
    reports = tmp_path / "reports"
    (reports / "index.html").mkdir(parents=True)  # a folder where the index goes: it fails after the volumes
    code, err = cli(capsys, "upsample", "--example", "--scale", "2", "--weights", carded_weights, "--output-dir",
                    tmp_path / "out", "--report-dir", reports, "-q")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 2 and lines[-1].startswith(f"error: {reports}: report index not written (")
    assert nib.load(tmp_path / "out" / "mni152_t1_3mm_sr.nii.gz").shape == (132, 156, 126)
    assert (reports / "mni152_t1_3mm_sr.html").is_file()

    import arssr.report

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(arssr.report, "render_page", full_disk)
    code, err = cli(capsys, "upsample", "--example", "--scale", "2", "--weights", carded_weights, "-o",
                    tmp_path / "b.nii.gz", "--report", tmp_path / "b.html", "-q")
    assert code == 1 and err.count("error:") == 1
    assert f"error: {tmp_path / 'b.html'}: report not written (" in err and "No space left on device" in err
    assert nib.load(tmp_path / "b.nii.gz").shape == (132, 156, 126) and (tmp_path / "b.json").is_file()
    assert not (tmp_path / "b.html").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs the chromium browser (apt-get install chromium; .ci/run does)")
def test_page_renders_in_a_real_browser(tmp_path, example_run):
    folder, _, _ = example_run
    shot = tmp_path / "page.png"
    flags_ = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"]
    url = (folder / "sr.html").as_uri()
    subprocess.run([CHROMIUM, *flags_, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([CHROMIUM, *flags_, "--dump-dom", url], check=True, capture_output=True, timeout=120).stdout
    assert dom.count(b'type="range"') == 6  # the script built a slider for each of the six planes
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape == (1000, 1400, 3) and pixels.std() > 40  # not blank
    grey = (np.ptp(pixels, axis=2) < 8)
    dark = grey & (pixels[..., 0] < 16)  # the slices' background
    tissue = grey & (pixels[..., 0] > 60) & (pixels[..., 0] < 240)  # brain in the slices
    assert dark.mean() > 0.15 and tissue.mean() > 0.08
    red = (pixels[..., 0] - pixels[..., 2] > 80)  # the flag and the difference maps
    blue = (pixels[..., 2] - pixels[..., 0] > 80)
    assert red.mean() > 0.002 and blue.mean() > 0.002
    # the first row of slices: four images side by side with dark backgrounds across a row of the screenshot
    rows_with_four = [row for row in dark if np.count_nonzero(np.diff(row.astype(int)) == 1) >= 4]
    assert len(rows_with_four) > 200


def test_report_goes_with_the_other_upsample_options(tmp_path, capsys, carded_weights):
    code, err = cli(capsys, "upsample", "--example", "--voxel-size", "2", "--weights", carded_weights, "-o",
                    tmp_path / "sr.nii", "--report", tmp_path / "sr.html", "--tile", "16", "--dtype", "int16",
                    "--consistency", "cubic", "--detail-gain", "0.5", "--precision", "bf16", "--no-sidecar", "-q")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.html", "sr.nii"]
    facts = Page((tmp_path / "sr.html").read_text()).facts
    image = nib.load(tmp_path / "sr.nii")
    assert image.get_data_dtype() == np.int16 and image.shape == (99, 117, 95)
    assert facts["output_geometry"] == f"99 x 117 x 95 voxels of {millimetres(image.header.get_zooms())}"
    scale = (f"{m / n:.4f}".rstrip("0").rstrip(".") for n, m in zip((66, 78, 63), image.shape))
    assert facts["scale"] == ", ".join(scale)
    assert facts["consistency"] == "cubic" and facts["detail_gain"] == "0.5 (given or fixed)"
    assert facts["device"] == "cpu, bf16, tile 16"


def test_large_planes_are_averaged_down_to_keep_the_page_small(tmp_path):
    ramp = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None, None], (20, 24, 4))
    source = Volume(np.ascontiguousarray(ramp), np.eye(4))
    big = ndimage.zoom(source.data, (30, 30, 1), order=1, grid_mode=True, mode="nearest").astype(np.float32)
    result = Volume(big, geometry.resampled_affine(source.affine, source.shape, big.shape))
    record = {"output": "big.nii.gz", "input": "small.nii.gz", "output_shape": list(big.shape), "spacing_mm": [1] * 3,
              "consistency": "none", "detail_gain": 1.0, "seconds": 1.0, "warnings": []}
    page = Page(write_report(tmp_path / "big.html", source, result, None, record, {}).read_text())
    axial = decode(page.images["centre-axial-output"]["src"]).astype(int)
    assert axial.shape == (512, 427)  # 600 across (x) and 720 up (y), the longer side taken to 512
    assert np.all(np.diff(axial, axis=1) >= 0) and np.all(axial == axial[0])  # still the ramp along x
    assert axial[0, 0] <= 3 and axial[0, -1] >= 252  # the ramp spans the input's grey scale
    assert decode(page.images["centre-sagittal-input"]["src"]).shape == (4, 24)  # small images as they are


def test_index_writes_values_from_pages_and_sidecars_as_text(tmp_path):
    from arssr.report import index_entries, page_facts, render_index

    hostile = {"output": "x<script>.nii.gz", "input": "in.nii.gz", "thumbnail": 'x" onerror="alert(1)',
               "seconds": "<b>slow</b>", "peak_memory_mib": "<i>big</i>", "warnings": []}
    html_text = render_index([("javascript:alert(1).html", hostile)], "cohort")
    assert "<script>" not in html_text and 'onerror="' not in html_text and "<b>slow" not in html_text
    assert 'href="javascript%3Aalert%281%29.html"' in html_text  # a relative name, not a scheme and "&lt;b&gt;slow&lt;/b&gt;" in html_text
    for text in ('[1, 2]', '{"input": "in.nii.gz"}'):  # embedded facts that are not a page's: not a page
        page = tmp_path / "page.html"
        page.write_text(f'<script type="application/json" id="arssr-report">{text}</script>')
        assert page_facts(page) is None
    assert index_entries(tmp_path) == []
    page.write_text('<script type="application/json" id="arssr-report">{"output": "a.nii.gz"}</script>')
    assert page_facts(page) == {"output": "a.nii.gz"}
