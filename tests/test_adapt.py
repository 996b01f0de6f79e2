import json

import numpy as np
import pytest
import torch

from arssr import adapt as adapt_module
from arssr.adapt import AdaptOptions, _crop, _holdout, adapt, adapt_to
from arssr.cli import main
from arssr.degrade import SliceModel
from arssr.errors import InputError
from arssr.evaluation.methods import model_options
from arssr.models import load_model
from arssr.models.space import ModelSpace
from arssr.protocol import DEFAULT_SLICE_CORRECTION
from arssr.volume import Volume, load_volume, save_volume


@pytest.fixture(scope="module")
def mni_block(mni_t1) -> Volume:
    """A 2 mm MNI152 T1 block (real anatomy) large enough for x2 crops beside the held-out slab."""
    data = np.ascontiguousarray(mni_t1.data[40:136:2, 60:156:2, 60:124:2])
    return Volume(data, mni_t1.affine @ np.diag([2.0, 2.0, 2.0, 1.0]))


def state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_adapting_keeps_the_callers_model_and_reports_both_scores(mni_block, tiny_model):
    before = state(tiny_model)
    options = AdaptOptions(seconds=None, steps=3, learning_rate=1e-3, batch=2, samples=500)
    used, report = adapt_to(mni_block, tiny_model, scale=2, options=options, device="cpu")
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())
    assert report.steps == 3 and report.seconds > 0 and np.isfinite([report.before, report.after]).all()
    assert report.kept == (report.after > report.before)
    changed = any(not torch.equal(v, used.state_dict()[k]) for k, v in before.items())
    assert changed == report.kept and (used is tiny_model) == (not report.kept)
    again = adapt_to(mni_block, tiny_model, scale=2, options=options, device="cpu")[1]
    assert again.before == report.before and again.after == pytest.approx(report.after, abs=1e-4)  # seeded


def test_a_worse_copy_is_dropped(mni_block, tiny_model, monkeypatch):
    scores = iter([30.0, 29.0])
    monkeypatch.setattr(adapt_module, "_held_out_psnr", lambda *args: next(scores))
    options = AdaptOptions(seconds=None, steps=1, batch=1, samples=100)
    used, report = adapt(tiny_model, mni_block.data / mni_block.data.max(), (2.0, 2.0, 2.0), options)
    assert used is tiny_model and not report.kept and (report.before, report.after) == (30.0, 29.0)


def test_training_crops_never_touch_the_held_out_slab():
    shape = (30, 50, 20)
    axis, start, stop = _holdout(shape, 0.2)
    assert (axis, start, stop) == (1, 20, 30)
    index = np.indices(shape)[axis].astype(np.float32)  # each voxel holds its index along the slab's axis
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        crop = _crop(index, (12, 18, 9), axis, start, stop, rng)
        assert crop.shape == (12, 18, 9)
        values = set(np.unique(crop).astype(int))
        assert not values & set(range(start, stop))
        seen |= values
    assert seen == set(range(0, start)) | set(range(stop, shape[axis]))  # both sides are used


def test_options_and_small_inputs_are_errors(tiny_model):
    with pytest.raises(InputError, match="needs a time budget"):
        AdaptOptions(seconds=None, steps=None)
    with pytest.raises(InputError, match="unknown adaptation operator"):
        AdaptOptions(operator="nearest")
    with pytest.raises(InputError, match="too small to adapt"):
        adapt(tiny_model, np.random.default_rng(0).random((6, 6, 6), dtype=np.float32), (4.0, 4.0, 4.0),
              AdaptOptions(steps=1))


def test_evaluation_method_options():
    assert model_options(["dc:cubic", "adapt:5"], "x") == {"consistency": "cubic", "adapt": 5.0}
    assert model_options(["dc", "adapt"], "x") == {"consistency": "kspace", "adapt": 60.0}
    with pytest.raises(InputError, match="unknown method option 'adapt:-1'"):
        model_options(["adapt:-1"], "arssr+adapt:-1")


def test_cli_adapts_saves_and_records(tmp_path, capsys, mni_block, tiny_weights):
    source = tmp_path / "block.nii.gz"
    save_volume(mni_block, source)
    out, weights = tmp_path / "sr.nii.gz", tmp_path / "adapted.safetensors"
    code = main(["upsample", str(source), "--scale", "2", "-o", str(out), "--weights", str(tiny_weights),
                 "--adapt-steps", "2", "--save-adapted", str(weights), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "adapted in 2 steps" in err and "held-out PSNR" in err
    record = json.loads((tmp_path / "sr.json").read_text())["adapt"]
    assert record["steps"] == 2 and record["kept"] in (True, False)
    saved = load_model(weights)
    assert saved.card["adapted_to"] == str(source)
    with pytest.raises(SystemExit) as usage:
        main(["upsample", str(source), "--scale", "2", "-o", str(tmp_path / "b.nii.gz"),
              "--save-adapted", str(tmp_path / "w.safetensors")])
    assert usage.value.code == 2 and "--save-adapted needs --adapt" in capsys.readouterr().err


def test_a_thick_slice_input_adapts_in_plane_only(mni_t1, tiny_model, monkeypatch):
    """1 mm MNI152 in-plane, 4 mm slices along the file's third axis (a block average): every training example
    is an in-plane axis, moved to the slice axis and thinned there (the slice axis itself is too short to thin
    again); the held-out score is taken on both in-plane axes."""
    hr = mni_t1.data[40:136, 60:156, 60:124]
    thick = hr.reshape(96, 96, 16, 4).mean(axis=-1)
    volume = Volume(np.ascontiguousarray(thick), mni_t1.affine @ np.diag([1.0, 1.0, 4.0, 1.0]))
    space = ModelSpace.of(volume.data, volume.affine, tiny_model)
    slice_axis = space.axes((0, 1, 2)).index(2)
    lr = space.to_model(volume.data)
    seen, scored = [], []
    make_pairs = adapt_module.make_pairs
    monkeypatch.setattr(adapt_module, "make_pairs", lambda crops, examples, *rest: (
        seen.extend((crop.numpy(), example.method) for crop, example in zip(crops, examples)),
        make_pairs(crops, examples, *rest))[1])
    held_out = adapt_module._held_out_psnr
    monkeypatch.setattr(adapt_module, "_held_out_psnr", lambda model, examples, device: (
        scored.append(examples), held_out(model, examples, device))[1])
    options = AdaptOptions(seconds=None, steps=6, batch=1, samples=200, lr_size=8)
    used, report = adapt_to(volume, tiny_model, scale=(1, 1, 4), options=options, device="cpu",
                            slice_thickness="spacing")
    assert report.steps == 6 and np.isfinite([report.before, report.after]).all()
    slices = SliceModel(4.0, "boxcar", DEFAULT_SLICE_CORRECTION)  # 4 mm on the 1 mm output grid
    for crop, method in seen:
        assert method.index(slices) == slice_axis and crop.shape[slice_axis] == 32 and sorted(crop.shape) == [8, 8, 32]
        # the crop is a block of the input with an in-plane axis in the slice axis' place: a 32-voxel line along
        # the slice axis is found along an in-plane axis of the input
        line = crop[tuple(slice(None) if a == slice_axis else 0 for a in range(3))]
        assert any(_found_along(lr, line, plane) for plane in range(3) if plane != slice_axis)
    planes = [a for a in range(3) if a != slice_axis]
    assert len(scored) == 2 and all(len(examples) == 2 for examples in scored)
    for (image, low, operator, _), plane in zip(scored[0], planes):
        order = [0, 1, 2]
        order[plane], order[slice_axis] = slice_axis, plane
        np.testing.assert_array_equal(image, lr.transpose(order))
        assert low.shape == tuple(n // 4 if a == slice_axis else n for a, n in enumerate(image.shape))
    with pytest.raises(InputError, match="slice thickness must be a number of mm or 'spacing', got 'thick'"):
        adapt_to(volume, tiny_model, scale=(1, 1, 4), options=options, slice_thickness="thick")


def _found_along(volume: np.ndarray, line: np.ndarray, axis: int) -> bool:
    """Whether ``line`` occurs as consecutive voxels along ``axis`` of ``volume``."""
    moved = np.moveaxis(volume, axis, -1)
    windows = np.lib.stride_tricks.sliding_window_view(moved, len(line), axis=-1)
    return bool(np.any(np.all(windows == line, axis=-1)))


def test_cli_adapts_a_thick_slice_input_in_plane(tmp_path, capsys, mni_t1, tiny_weights):
    """8 mm slices (8 of them): too few to thin once more, so only the in-plane views make adaptation possible."""
    thick = mni_t1.data[40:136, 60:156, 60:124].reshape(96, 96, 8, 8).mean(axis=-1)
    source = tmp_path / "thick.nii.gz"
    save_volume(Volume(np.ascontiguousarray(thick), mni_t1.affine @ np.diag([1.0, 1.0, 8.0, 1.0])), source)
    common = ["upsample", str(source), "--scale", "1,1,8", "--weights", str(tiny_weights), "--adapt-steps", "1",
              "--threads", "1"]
    assert main([*common, "--slice-thickness", "none", "-o", str(tmp_path / "flat.nii.gz")]) == 1
    assert "too small to adapt to at scale" in capsys.readouterr().err
    assert main([*common, "--slice-thickness", "8", "-o", str(tmp_path / "sr.nii.gz")]) == 0
    assert "adapted in 1 steps" in capsys.readouterr().err
    assert json.loads((tmp_path / "sr.json").read_text())["adapt"]["steps"] == 1
    assert main([*common, "-o", str(tmp_path / "default.nii.gz")]) == 0  # taken as thick slices by default
    assert "2D multi-slice along axis 2, slices 8 mm thick" in capsys.readouterr().err
    assert np.array_equal(load_volume(tmp_path / "default.nii.gz").data, load_volume(tmp_path / "sr.nii.gz").data)
