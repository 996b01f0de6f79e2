"""The through-plane prior: its planes and their fusion, its files, its examples and its training."""

import re

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from scipy import ndimage

from arssr.consistency import degrade_volume, slice_consistency
from arssr.degrade import SliceModel
from arssr.errors import InputError, ModelFileError
from arssr.inference import upsample
from arssr.models.planes import MIRRORS, PlanePrior, load_prior, save_prior, through_plane
from arssr.protocol import DEFAULT_PRIOR_MIRRORS, PRIOR_MIRRORS
from arssr.simulate import ThickSlices, simulate_thick_slices
from arssr.training.planes import (PlaneDraws, PriorRun, cubic_rows, draw_example, plane_loss, thin_rows,
                                   train_prior, with_phase)
from arssr.volume import Volume


def small_prior(seed: int = 0, phase: bool = False) -> PlanePrior:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prior = PlanePrior(channels=(4, 8), res_units=1, phase=phase)
        for p in prior.parameters():  # a visible residual: the default initialisation is near zero
            p.data.normal_(0, 0.3)
    return prior.eval()


def one_plane(prior, plane: np.ndarray, spacing: float, thickness: float) -> np.ndarray:
    """An independent path: one plane, padded by numpy's reflection to a multiple of 2, through the network."""
    pad = [(0, -n % prior.multiple) for n in plane.shape]
    padded = torch.from_numpy(np.pad(plane, pad, mode="reflect"))[None, None]
    with torch.no_grad():
        out = prior(padded, torch.tensor([spacing]), torch.tensor([thickness]))[0, 0].numpy()
    return out[:plane.shape[0], :plane.shape[1]]


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("phase", [False, True])
def test_through_plane_is_the_mean_of_the_planes_across_each_other_axis(axis, phase, mni_crop, one_thread):
    volume = (mni_crop.data / mni_crop.data.max()).astype(np.float32)[:, :23, :19]  # odd sizes: padding
    prior = small_prior(phase=phase)
    got = through_plane(prior, volume, axis, 3.0, 2.5)
    expected = np.zeros_like(volume)
    for across in [a for a in range(3) if a != axis]:
        third = 3 - axis - across
        for k in range(volume.shape[third]):
            index = [slice(None)] * 3
            index[third] = k
            plane = volume[tuple(index)]  # the two remaining axes in increasing order
            rows_first = axis < across
            restored = one_plane(prior, plane if rows_first else plane.T, 3.0, 2.5)
            expected[tuple(index)] += (restored if rows_first else restored.T) / 2
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, volume, atol=1e-2)  # the network did change the volume


@pytest.mark.parametrize("axis", [0, 2])
def test_the_mirrored_ensemble_is_the_mean_of_the_estimates_of_mirrored_volumes(axis, mni_crop, one_thread):
    volume = (mni_crop.data / mni_crop.data.max()).astype(np.float32)[:, :23, :19]
    prior = small_prior()
    in_plane = tuple(a for a in range(3) if a != axis)
    members = {2: [(), in_plane], 4: [(), in_plane, (axis,), in_plane + (axis,)]}
    for mirrors, flips in members.items():
        expected = np.mean([np.flip(through_plane(prior, np.ascontiguousarray(np.flip(volume, f)), axis, 3.0, 2.5), f)
                            for f in flips], axis=0)
        np.testing.assert_allclose(through_plane(prior, volume, axis, 3.0, 2.5, mirrors=mirrors), expected,
                                   atol=1e-5)
    single = through_plane(prior, volume, axis, 3.0, 2.5)
    assert not np.allclose(through_plane(prior, volume, axis, 3.0, 2.5, mirrors=2), single, atol=1e-4)


def test_the_mirrored_copies_are_those_the_cli_offers():
    assert tuple(MIRRORS) == PRIOR_MIRRORS and DEFAULT_PRIOR_MIRRORS in PRIOR_MIRRORS
    assert all(len(set(members)) == n for n, members in MIRRORS.items())


def test_the_mirrored_ensemble_tells_a_phase_prior_where_the_mirrored_slices_start(mni_crop, one_thread):
    prior = small_prior(phase=True)
    volume = (mni_crop.data[:8, :6, :14] / mni_crop.data.max()).astype(np.float32)  # 14 rows: no padding
    spacing, thickness, rows = 3.0, 3.0, 14  # 14 is no multiple of 3: mirrored, the slices start elsewhere
    centres = np.arange(rows) + 0.5
    expected = np.zeros_like(volume)
    for in_plane, along in [(False, False), (True, False), (False, True), (True, True)]:
        member = np.flip(volume, (0, 1)) if in_plane else volume
        member = np.flip(member, 2) if along else member
        # a mirrored row r lies at rows - r - 1/2 of the slices: its place within its slice counted backwards
        angle = 2 * np.pi * ((rows - centres) if along else centres) / spacing
        waves = np.stack([np.cos(angle), -np.sin(angle) if along else np.sin(angle)])
        for across in (0, 1):
            planes = np.moveaxis(member, (1 - across, 2, across), (0, 1, 2))  # (planes, rows, columns)
            n, width = planes.shape[0], planes.shape[2]
            inputs = np.concatenate([planes[:, None], np.full((n, 1, rows, width), spacing / 8),
                                     np.full((n, 1, rows, width), thickness / 8),
                                     np.broadcast_to(waves[None, :, :, None], (n, 2, rows, width))], axis=1)
            with torch.no_grad():
                restored = planes + prior.net(torch.from_numpy(inputs.astype(np.float32)))[:, 0].numpy()
            back = np.moveaxis(restored, (0, 1, 2), (1 - across, 2, across))
            back = np.flip(back, 2) if along else back
            expected += (np.flip(back, (0, 1)) if in_plane else back) / 8
    np.testing.assert_allclose(through_plane(prior, volume, 2, spacing, thickness, mirrors=4), expected, atol=1e-5)
    with pytest.raises(ValueError, match="mirrors must be one of 1, 2, 4, got 3"):
        through_plane(prior, volume, 2, spacing, thickness, mirrors=3)


def test_the_prior_is_told_the_spacing_and_thickness(mni_crop):
    volume = (mni_crop.data / mni_crop.data.max()).astype(np.float32)
    prior = small_prior()
    assert not np.allclose(through_plane(prior, volume, 2, 3.0, 3.0), through_plane(prior, volume, 2, 5.0, 3.0))
    assert not np.allclose(through_plane(prior, volume, 2, 3.0, 3.0), through_plane(prior, volume, 2, 3.0, 2.0))


def test_a_phase_prior_reads_each_rows_place_within_its_slice(mni_crop):
    prior = small_prior(phase=True)
    planes = torch.from_numpy((mni_crop.data[:, :16, :8] / mni_crop.data.max()).astype(np.float32))[:, None]
    spacing, thickness, offset = (torch.full((24,), 3.5), torch.full((24,), 3.0), torch.arange(24.0) % 5)
    rows = np.arange(16)[None, :] + offset.numpy()[:, None] + 0.5  # (planes, rows)
    waves = [f(2 * np.pi * rows / 3.5) for f in (np.cos, np.sin)]
    inputs = [planes[:, 0]] + [torch.full((24, 16, 8), value) for value in (3.5 / 8, 3.0 / 8)] + [
        torch.from_numpy(w).float()[:, :, None].expand(-1, -1, 8) for w in waves]
    with torch.no_grad():
        expected = planes + prior.net(torch.stack(inputs, dim=1))
        torch.testing.assert_close(prior(planes, spacing, thickness, offset), expected)
        shifted = prior(planes, spacing, thickness, offset + 1)
    assert not torch.allclose(shifted, expected, atol=1e-3)
    assert "phase" not in small_prior().config and small_prior(phase=True).config["phase"] is True


def test_with_phase_keeps_the_function_until_trained_and_round_trips(tmp_path, mni_t1, one_thread):
    volume = (mni_t1.data[::2, ::2, ::2] / mni_t1.data.max()).astype(np.float32)
    plain = small_prior()
    phased = with_phase(plain)
    assert phased.phase and not plain.phase and "phase" not in plain.config
    np.testing.assert_allclose(through_plane(phased, volume, 2, 4.0, 4.0), through_plane(plain, volume, 2, 4.0, 4.0),
                               atol=1e-6)
    trained = load_prior(train_prior([volume], tmp_path / "run", PriorRun(steps=2, batch=2, draws=PlaneDraws(size=16)),
                                     prior=phased, log=lambda _: None))
    assert trained.phase and trained.config == phased.config
    new_inputs = trained.state_dict()["net.model.0.conv.unit0.conv.weight"][:, 3:]
    assert new_inputs.abs().max() > 0  # the phase channels began at zero and learnt
    assert not phased.state_dict()["net.model.0.conv.unit0.conv.weight"][:, 3:].any()  # the caller's copy is kept


def test_thin_rows_averages_whole_slices_and_cubic_rows_is_scipys_zoom():
    rows = np.random.default_rng(0).random((24, 5)).astype(np.float32)
    slices, spacing = thin_rows(rows, 4.0, SliceModel(4.0))
    assert spacing == 4.0
    np.testing.assert_allclose(slices, rows.reshape(6, 4, 5).mean(axis=1), atol=1e-6)
    gaps, _ = thin_rows(rows, 4.0, SliceModel(2.0))  # 2-voxel slices centred between voxels 1 and 2 of each 4
    np.testing.assert_allclose(gaps, rows.reshape(6, 4, 5)[:, 1:3].mean(axis=1), atol=1e-6)
    up = cubic_rows(slices, 24)
    np.testing.assert_allclose(up, ndimage.zoom(slices.astype(np.float64), (4, 1), order=3, mode="reflect",
                                                grid_mode=True), atol=1e-5)


@pytest.mark.parametrize("axes", [(2, 0), (0, 1)])
def test_an_example_is_the_plane_and_its_slices_brought_back(axes, mni_t1):
    volume = (mni_t1.data / mni_t1.data.max()).astype(np.float32)
    draws = PlaneDraws(size=32, noise_share=0, slice_gain_share=0, invert_share=0)
    centre = np.array([98, 116, 90])
    example = draw_example(volume, draws, np.random.default_rng(0), axes=axes, spacing=4.0, thickness=4.0,
                           profile="boxcar", centres=centre[None])
    margin = 8 + 4  # ceil(2 x 4) + 4 rows on each side, degraded with the patch so its edges are no faces
    index = [slice(c, c + 1) for c in centre]
    index[axes[0]] = slice(centre[axes[0]] - 16 - margin, centre[axes[0]] + 16 + margin)
    index[axes[1]] = slice(centre[axes[1]] - 16, centre[axes[1]] + 16)
    wide = np.moveaxis(volume[tuple(index)], axes, (0, 1))[:, :, 0]
    np.testing.assert_array_equal(example.target, wide[margin:-margin])
    slices = wide.reshape(-1, 4, 32).mean(axis=1)  # whole boxcar slices, 4 rows each
    expected = ndimage.zoom(slices.astype(np.float64), (4, 1), order=3, mode="reflect", grid_mode=True)
    np.testing.assert_allclose(example.interpolated, expected[margin:-margin], atol=1e-5)
    assert (example.spacing, example.thickness, example.offset) == (4.0, 4.0, margin)


def test_prior_files_round_trip_and_bad_files_are_refused(tmp_path, mni_crop):
    prior = small_prior()
    path = save_prior(prior, tmp_path / "prior.safetensors", step="7")
    loaded = load_prior(path)
    assert loaded.card == {"step": "7"} and loaded.config == prior.config
    volume = (mni_crop.data / mni_crop.data.max()).astype(np.float32)
    np.testing.assert_array_equal(through_plane(loaded, volume, 2, 3, 3), through_plane(prior, volume, 2, 3, 3))
    half = load_prior(save_prior(prior, tmp_path / "half.safetensors", half=True))
    with safe_open(str(tmp_path / "half.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} == {torch.float16}
    for key, value in prior.state_dict().items():  # float16 storage, float32 weights within its rounding
        torch.testing.assert_close(half.state_dict()[key], value.half().float(), rtol=0, atol=0)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "arssr"})
    with pytest.raises(ModelFileError, match="not a plane prior"):
        load_prior(other)
    state = {k: v.clone() for k, v in prior.state_dict().items()}
    next(v for v in state.values() if v.is_floating_point()).fill_(float("nan"))
    poisoned = PlanePrior(**prior.config)
    poisoned.load_state_dict(state)
    with pytest.raises(ModelFileError, match="NaN"):
        load_prior(save_prior(poisoned, tmp_path / "nan.safetensors"))
    with pytest.raises(ModelFileError, match="plane prior file not found"):
        load_prior(tmp_path / "missing.safetensors")


def test_upsample_with_the_prior_is_slice_consistent_on_real_anatomy(mni_t1, tiny_model, one_thread):
    hr = Volume(mni_t1.data[40:150:2, 50:180:2, 30:160:2], mni_t1.affine @ np.diag([2.0, 2, 2, 1]))
    thick = simulate_thick_slices(hr, ThickSlices(8.0, 2))
    lr = Volume(thick.data - 10, thick.affine)  # below zero: no floor, so the projection is exact
    scale = (1.0, 1.0, hr.shape[2] / lr.shape[2])
    prior = small_prior()
    out = upsample(lr, tiny_model, scale=scale, slice_thickness=8.0, plane_prior=prior, device="cpu")
    without = upsample(lr, tiny_model, scale=scale, slice_thickness=8.0, device="cpu", plane_prior=None)
    assert out.shape == hr.shape and np.allclose(out.affine, without.affine)
    operator = slice_consistency("kspace", lr.spacing, lr.shape, out.shape, 8.0, correction="smooth")
    np.testing.assert_allclose(degrade_volume(out.data, lr.shape, operator), lr.data, atol=1e-3 * lr.data.max())
    assert np.abs(out.data - without.data).max() > 1.0  # the prior, not the 3D model, made it
    isotropic = upsample(lr, tiny_model, scale=2, plane_prior=prior, device="cpu")  # not thick slices alone
    np.testing.assert_array_equal(isotropic.data, upsample(lr, tiny_model, scale=2, device="cpu",
                                                           plane_prior=None).data)


def test_the_shipped_prior_is_the_default_and_beats_cubic_on_real_anatomy(mni_t1, one_thread):
    from arssr.metrics import brain_mask, psnr
    from arssr.models.planes import default_prior_path

    hr = Volume(mni_t1.data[::2, ::2, ::2], mni_t1.affine @ np.diag([2.0, 2, 2, 1]))
    lr = simulate_thick_slices(hr, ThickSlices(8.0, 2))
    scale = (1.0, 1.0, hr.shape[2] / lr.shape[2])
    default = upsample(lr, scale=scale, slice_thickness=8.0, details=True)
    assert default.estimator == "plane prior"
    explicit = upsample(lr, scale=scale, slice_thickness=8.0, plane_prior=default_prior_path())
    np.testing.assert_array_equal(default.volume.data, explicit.data)
    cubic = ndimage.zoom(lr.data.astype(np.float64), (1, 1, hr.shape[2] / lr.shape[2]), order=3, mode="reflect",
                         grid_mode=True)
    mask = brain_mask(hr.data)
    assert psnr(default.volume.data, hr.data, mask) > psnr(cubic, hr.data, mask) + 0.5


def test_training_resumes_where_it_stopped(tmp_path, mni_t1, one_thread):
    volumes = [(mni_t1.data[::2, ::2, ::2] / mni_t1.data.max()).astype(np.float32)]
    run = PriorRun(steps=4, batch=2, checkpoint_every=2, draws=PlaneDraws(size=16))
    straight = load_prior(train_prior(volumes, tmp_path / "straight", run, prior=small_prior(), log=lambda _: None))
    train_prior(volumes, tmp_path / "resumed", run, prior=small_prior(), stop_at=2, log=lambda _: None)
    resumed = load_prior(train_prior(volumes, tmp_path / "resumed", run, prior=small_prior(), log=lambda _: None))
    assert straight.card["step"] == resumed.card["step"] == "4"
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert not torch.equal(straight.state_dict()["net.model.0.conv.unit0.conv.weight"],
                           small_prior().state_dict()["net.model.0.conv.unit0.conv.weight"])
    with pytest.raises(InputError, match="its run's cosine schedule spans 4 steps, not 6"):
        train_prior(volumes, tmp_path / "resumed", PriorRun(**{**run.__dict__, "steps": 6}), log=lambda _: None)
    with pytest.raises(InputError, match="its run's loss has difference weight 0.0 and norm l1, not 0.5 and l1"):
        train_prior(volumes, tmp_path / "resumed", PriorRun(**{**run.__dict__, "difference_weight": 0.5}),
                    log=lambda _: None)
    with pytest.raises(InputError, match="its run trained on 1 volumes, not 2"):
        train_prior(volumes * 2, tmp_path / "resumed", run, prior=small_prior(), log=lambda _: None)
    wider = PlanePrior(channels=(8, 16), res_units=0)
    with pytest.raises(InputError, match=re.escape(f"its run's prior is {small_prior().config}, not {wider.config}")):
        train_prior(volumes, tmp_path / "resumed", run, prior=wider, log=lambda _: None)


def test_the_difference_loss_is_the_l1_of_the_row_to_row_changes_and_sees_a_staircase(mni_t1):
    rng = np.random.default_rng(3)
    example = draw_example((mni_t1.data / mni_t1.data.max()).astype(np.float32), PlaneDraws(size=32), rng,
                           axes=(2, 0), spacing=4.0, thickness=4.0, profile="boxcar")
    target = example.target.astype(np.float64)
    # a staircase with the target's mean level per slice: constant within every 4 rows
    stairs = np.repeat(target.reshape(8, 4, 32).mean(axis=1), 4, axis=0)
    as_tensor = [torch.from_numpy(x)[None, None] for x in (stairs, target)]
    intensity = np.abs(stairs - target).mean()
    differences = np.abs(np.diff(stairs, axis=0) - np.diff(target, axis=0)).mean()
    assert float(plane_loss(*as_tensor)) == pytest.approx(intensity, rel=1e-12)
    assert float(plane_loss(*as_tensor, difference_weight=0.5)) == pytest.approx(intensity + 0.5 * differences,
                                                                                 rel=1e-12)
    squared = ((stairs - target) ** 2).mean() + 2 * ((np.diff(stairs, axis=0) - np.diff(target, axis=0)) ** 2).mean()
    assert float(plane_loss(*as_tensor, difference_weight=2, norm="l2")) == pytest.approx(squared, rel=1e-12)
    with pytest.raises(ValueError, match="unknown loss norm 'l3'; known: l1, l2"):
        plane_loss(*as_tensor, norm="l3")
    # per unit of intensity error, the staircase costs more in differences than cubic interpolation does
    cubic = example.interpolated.astype(np.float64)
    cubic_ratio = np.abs(np.diff(cubic - target, axis=0)).mean() / np.abs(cubic - target).mean()
    assert differences / intensity > 1.2 * cubic_ratio


def test_adaptation_learns_from_the_inputs_own_planes_and_keeps_the_caller_prior(mni_t1, one_thread):
    from arssr.adapt import adapt_prior

    lr = (mni_t1.data[20:180, 20:210, 40:160:5] / mni_t1.data.max()).astype(np.float32)  # 5 mm slices, axis 2
    prior = small_prior()
    state = {k: v.clone() for k, v in prior.state_dict().items()}
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    used, report = adapt_prior(prior, lr, 2, 5.0, 5.0, (1.0, 1.0), seconds=None, steps=3, batch=2)
    assert report.steps == 3 and report.kept == (report.after > report.before)
    assert (used is not prior) == report.kept
    for key, value in prior.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert torch.equal(torch.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], numpy_state)
    tuned, _ = adapt_prior(prior, lr, 2, 5.0, 5.0, (1.0, 1.0), seconds=None, steps=30, learning_rate=1e-3, batch=4)
    assert tuned is not prior  # a random prior is far from any restoration: 30 steps on the input's planes help


def test_adapt_prior_to_passes_its_learning_rate_to_the_prior(mni_t1, tiny_model, one_thread):
    from arssr.adapt import AdaptOptions, adapt_prior_to
    from arssr.request import prepare

    hr = Volume(mni_t1.data[20:180:2, 20:210:2, 40:160:2], mni_t1.affine @ np.diag([2.0, 2, 2, 1]))
    request = prepare(simulate_thick_slices(hr, ThickSlices(8.0, 2)), tiny_model, (1, 1, 4), slice_thickness=8.0)
    prior, options = small_prior(), AdaptOptions(seconds=None, steps=3)
    frozen, report = adapt_prior_to(request, prior, options, learning_rate=0.0)
    assert frozen is prior and report.after == report.before and report.steps == 3  # Adam at 0 moves nothing
    _, report = adapt_prior_to(request, prior, options, learning_rate=1e-3)
    assert report.after != report.before


def test_the_cli_uses_the_prior_for_thick_slices_only(tmp_path, capsys, mni_t1, tiny_weights, one_thread):
    import json

    from arssr.cli import main
    from arssr.models import load_model
    from arssr.volume import load_volume, save_volume

    hr = Volume(mni_t1.data[40:150:2, 50:180:2, 30:160:2], mni_t1.affine @ np.diag([2.0, 2, 2, 1]))
    save_volume(simulate_thick_slices(hr, ThickSlices(8.0, 2)), tmp_path / "thick.nii.gz")
    prior_file = save_prior(small_prior(), tmp_path / "prior.safetensors")
    common = ["--weights", str(tiny_weights), "--plane-prior", str(prior_file), "-q", "--threads", "1"]
    assert main(["upsample", str(tmp_path / "thick.nii.gz"), "--scale", "1,1,4", "-o", str(tmp_path / "a.nii.gz"),
                 *common]) == 0
    sidecar = json.loads((tmp_path / "a.json").read_text())
    assert sidecar["estimator"] == "plane prior" and sidecar["plane_prior"] == str(prior_file)
    assert sidecar["detail_gain"] == 1.0 and sidecar["prior_mirrors"] == DEFAULT_PRIOR_MIRRORS
    expected = upsample(load_volume(tmp_path / "thick.nii.gz"), load_model(tiny_weights), scale=(1, 1, 4),
                        slice_thickness="spacing", plane_prior=load_prior(prior_file), device="cpu")
    np.testing.assert_array_equal(load_volume(tmp_path / "a.nii.gz").data, expected.data)
    assert main(["upsample", str(tmp_path / "thick.nii.gz"), "--scale", "1,1,4", "-o", str(tmp_path / "one.nii.gz"),
                 *common, "--prior-mirrors", "1"]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["prior_mirrors"] == 1
    once = upsample(load_volume(tmp_path / "thick.nii.gz"), load_model(tiny_weights), scale=(1, 1, 4),
                    slice_thickness="spacing", plane_prior=load_prior(prior_file), device="cpu", prior_mirrors=1)
    np.testing.assert_array_equal(load_volume(tmp_path / "one.nii.gz").data, once.data)
    assert not np.allclose(once.data, expected.data)
    with pytest.raises(SystemExit):
        main(["upsample", str(tmp_path / "thick.nii.gz"), "--scale", "1,1,4", "-o", str(tmp_path / "three.nii.gz"),
              *common, "--prior-mirrors", "3"])
    assert "--prior-mirrors: invalid choice: 3 (choose from 1, 2, 4)" in capsys.readouterr().err
    assert not (tmp_path / "three.nii.gz").exists()
    assert main(["upsample", str(tmp_path / "thick.nii.gz"), "--scale", "2", "-o", str(tmp_path / "b.nii.gz"),
                 *common]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["estimator"] == "model"  # every axis upsampled
    assert json.loads((tmp_path / "b.json").read_text())["prior_mirrors"] is None
    assert main(["upsample", str(tmp_path / "thick.nii.gz"), "--scale", "1,1,4", "-o", str(tmp_path / "c.nii.gz"),
                 "--weights", str(tiny_weights), "--plane-prior", "none", "-q"]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["estimator"] == "model"
    assert main(["upsample", str(tmp_path / "thick.nii.gz"), "--scale", "1,1,4", "-o", str(tmp_path / "d.nii.gz"),
                 *common, "--adapt-steps", "2", "--save-adapted", str(tmp_path / "adapted.safetensors")]) == 0
    assert json.loads((tmp_path / "d.json").read_text())["adapt"]["steps"] == 2
    assert load_prior(tmp_path / "adapted.safetensors").card["adapted_to"] == str(tmp_path / "thick.nii.gz")
    capsys.readouterr()
    assert main(["upsample", str(tmp_path / "thick.nii.gz"), "--scale", "1,1,4", "-o", str(tmp_path / "e.nii.gz"),
                 "--weights", str(tiny_weights), "--plane-prior", str(tiny_weights), "-q"]) != 0
    assert capsys.readouterr().err.strip() == f"error: {tiny_weights}: not a plane prior (no arssr-plane-prior metadata)"
    assert not (tmp_path / "e.nii.gz").exists()


def test_the_evaluation_method_adapts_the_prior_not_the_model(monkeypatch, mni_t1, tiny_model, one_thread):
    from arssr import inference
    from arssr.adapt import AdaptReport
    from arssr.evaluation import methods

    hr = Volume(mni_t1.data[40:150:2, 50:180:2, 30:160:2], mni_t1.affine @ np.diag([2.0, 2, 2, 1]))
    slices = ThickSlices(8.0, 2)
    lr = simulate_thick_slices(hr, slices)
    scale = tuple(n / m for n, m in zip(hr.shape, lr.shape))
    given, adapted, calls = small_prior(0), small_prior(1), []

    def adapt_prior_to(request, prior, options):
        calls.append((prior, request.model, request.factors, request.slice_thickness,
                      request.operator[2].profile, options.seconds))
        return adapted, AdaptReport(20.0, 21.0, True, 3, 1.0)

    monkeypatch.setattr(inference, "adapt_prior_to", adapt_prior_to)
    monkeypatch.setattr(inference, "adapt_request", lambda *a, **k: pytest.fail("the 3D model was adapted"))
    run = methods.model_method(tiny_model, "cpu", consistency="slice", gain="auto", plane_prior=given, adapt=5.0)
    got = run(lr, hr.shape, slices)
    assert calls == [(given, tiny_model, scale, 8.0, "boxcar", 5.0)]
    expected = upsample(lr, tiny_model, scale=scale, slice_thickness=8.0, plane_prior=adapted, device="cpu")
    np.testing.assert_array_equal(got.data, expected.data)
    once = methods.model_method(tiny_model, "cpu", consistency="slice", gain="auto", plane_prior=given,
                                prior_mirrors=1)(lr, hr.shape, slices)
    np.testing.assert_array_equal(once.data, upsample(lr, tiny_model, scale=scale, slice_thickness=8.0,
                                                      plane_prior=given, device="cpu", prior_mirrors=1).data)
    assert not np.allclose(once.data, upsample(lr, tiny_model, scale=scale, slice_thickness=8.0, plane_prior=given,
                                               device="cpu").data)


def test_review_cases_small_inputs_readaptation_and_scales_near_one(tmp_path, capsys, mni_t1, tiny_weights,
                                                                     one_thread):
    import json

    from arssr.adapt import adapt_prior
    from arssr.cli import main
    from arssr.volume import save_volume

    with pytest.raises(InputError, match=r"too small to adapt the plane prior to: its in-plane axes need at least 2"):
        adapt_prior(small_prior(), np.ones((1, 9, 3), np.float32), 2, 4.0, 4.0, (1.0, 1.0), steps=1)
    prior = PlanePrior(channels=(4, 8, 8, 8), res_units=0)
    thin = (mni_t1.data[60:96, 60:106, 60:100:4] / mni_t1.data.max()).astype(np.float32)  # 36 x 46: not x8
    used, report = adapt_prior(prior, thin, 2, 4.0, 4.0, (1.0, 1.0), seconds=None, steps=1, batch=1)
    assert report.steps == 1
    small = Volume(mni_t1.data[60:108:2, 60:116:2, 60:120:6], mni_t1.affine @ np.diag([2.0, 2, 6, 1]))
    save_volume(small, tmp_path / "small.nii.gz")
    prior_file = save_prior(small_prior(), tmp_path / "prior.safetensors")
    common = ["--weights", str(tiny_weights), "-q", "--threads", "1", "--adapt-steps", "1"]
    for k, source in enumerate([prior_file, tmp_path / "a0.safetensors"]):  # an adapted prior adapts again
        assert main(["upsample", str(tmp_path / "small.nii.gz"), "--scale", "1,1,3", "-o", str(tmp_path / f"{k}.nii.gz"),
                     "--plane-prior", str(source), "--save-adapted", str(tmp_path / f"a{k}.safetensors"),
                     *common]) == 0
    assert load_prior(tmp_path / "a1.safetensors").card["adapted_to"] == str(tmp_path / "small.nii.gz")
    assert main(["upsample", str(tmp_path / "small.nii.gz"), "--scale", "1.001,1,3", "-o", str(tmp_path / "n.nii.gz"),
                 "--slice-thickness", "spacing", "--plane-prior", str(prior_file), "--weights", str(tiny_weights),
                 "-q"]) == 0
    sidecar = json.loads((tmp_path / "n.json").read_text())  # 24 x 1.001 rounds to 24: only the slices grow
    assert (sidecar["estimator"], sidecar["plane_prior"], sidecar["detail_gain_fitted"]) == (
        "plane prior", str(prior_file), False)
    with pytest.warns(UserWarning, match="slice spacing of 12 output voxels is outside the 2-8"):
        upsample(small, tiny_weights, scale=(1, 1, 12), slice_thickness="spacing", plane_prior=prior_file)
    training = small_prior().train()
    through_plane(training, np.zeros((8, 8, 8), np.float32), 2, 3.0, 3.0)
    assert training.training  # the caller's mode is kept


def test_a_weights_files_method_is_that_model_and_the_default_is_the_prior(mni_t1, tiny_weights, one_thread):
    from arssr.evaluation.methods import method

    hr = Volume(mni_t1.data[40:150:2, 50:180:2, 30:160:2], mni_t1.affine @ np.diag([2.0, 2, 2, 1]))
    slices = ThickSlices(8.0, 2)
    lr = simulate_thick_slices(hr, slices)
    scale = tuple(n / m for n, m in zip(hr.shape, lr.shape))
    _, of_file = method(f"v={tiny_weights}+dc:slice", device="cpu")
    expected = upsample(lr, tiny_weights, scale=scale, slice_thickness=8.0, plane_prior=None, device="cpu",
                        gain=1.0)  # a method's gain is 1 unless +gain says otherwise
    np.testing.assert_array_equal(of_file(lr, hr.shape, slices).data, expected.data)
    _, default = method("arssr+dc:slice", device="cpu")
    shipped = upsample(lr, scale=scale, slice_thickness=8.0, device="cpu", details=True)
    assert shipped.estimator == "plane prior"
    np.testing.assert_array_equal(default(lr, hr.shape, slices).data, shipped.volume.data)
