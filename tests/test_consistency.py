import itertools

import numpy as np
import pytest
import torch

from arssr import geometry
from arssr.consistency import (CONSISTENCY_OPERATORS, thick_slice_axis, correction_bands, degrade_volume, fit_band_weights, project,
                               projection_bands, slice_consistency, weighted_projection)
from arssr.degrade import SliceModel, axis_matrix, degrade, resample, resampling_matrix
from arssr.errors import InputError
from arssr.protocol import DEFAULT_SLICE_CORRECTION
from arssr.inference import fitted_gain, upsample
from arssr.metrics import psnr
from arssr.volume import Volume
from conftest import smooth_volume

OPERATORS = [op for op in CONSISTENCY_OPERATORS if op != "none"]
# (HR shape, LR shape): isotropic even, per-axis odd and even, one axis of scale 1.
GRIDS = [((24, 20, 16), (12, 10, 8)), ((25, 19, 14), (8, 10, 14)), ((21, 30, 11), (7, 12, 5))]


def guess_and_input(hr_shape, lr_shape, seed=0):
    """A rough SR guess (cubic upsampling plus noise) and an LR input it is not consistent with."""
    rng = np.random.default_rng(seed)
    lr = smooth_volume(lr_shape, seed)
    guess = resample(torch.from_numpy(lr.astype(np.float64)), hr_shape, "cubic").numpy()
    return (guess + rng.normal(0, 5, hr_shape)).astype(np.float32), lr


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("hr_shape,lr_shape", GRIDS)
def test_projection_degrades_back_to_the_input_and_is_idempotent(operator, hr_shape, lr_shape):
    guess, lr = guess_and_input(hr_shape, lr_shape)
    span = np.ptp(lr)
    assert np.abs(degrade_volume(guess, lr_shape, operator) - lr).max() > 1e-2 * span  # not consistent before
    projected = project(guess, lr, operator)
    assert projected.dtype == np.float32 and projected.shape == hr_shape
    # The operator as the degradation module applies it (float64), independent of the slab-wise one.
    again = degrade(torch.from_numpy(projected.astype(np.float64)), lr_shape, operator).numpy()
    assert np.abs(again - lr).max() < 1e-4 * span
    assert np.abs(project(projected, lr, operator) - projected).max() < 1e-4 * span


@pytest.mark.parametrize("operator", OPERATORS)
def test_projection_equals_the_dense_least_squares_solution(operator):
    """``y + pinv(K) (x - K y)`` with ``K`` the full Kronecker matrix, in numpy float64."""
    hr_shape, lr_shape = (9, 8, 7), (4, 5, 7)
    guess, lr = guess_and_input(hr_shape, lr_shape, seed=1)
    dense = np.kron(np.kron(*(resampling_matrix(operator, n, m).numpy() for n, m in zip(hr_shape[:2], lr_shape[:2]))),
                    resampling_matrix(operator, hr_shape[2], lr_shape[2]).numpy())
    y = guess.astype(np.float64).ravel()
    expected = y + np.linalg.pinv(dense) @ (lr.astype(np.float64).ravel() - dense @ y)
    np.testing.assert_allclose(project(guess, lr, operator).ravel(), expected, atol=1e-4 * np.ptp(lr))


def test_kspace_projection_replaces_the_central_spectrum():
    """Odd sizes, x3 on every axis: the kept frequencies come from the truth, the others from the guess."""
    truth = smooth_volume((27, 21, 15), seed=2) + np.random.default_rng(3).normal(0, 3, (27, 21, 15)).astype(np.float32)
    guess = np.random.default_rng(4).normal(100, 20, truth.shape).astype(np.float32)
    lr = degrade(torch.from_numpy(truth.astype(np.float64)), (9, 7, 5), "kspace").numpy().astype(np.float32)
    spectrum = np.fft.fftn(project(guess, lr, "kspace"))
    central = np.zeros(truth.shape, dtype=bool)
    central[np.ix_(*[np.abs(np.fft.fftfreq(n) * n) <= m // 2 for n, m in zip(truth.shape, (9, 7, 5))])] = True
    scale = np.abs(np.fft.fftn(truth)).max()
    assert np.abs(spectrum - np.fft.fftn(truth))[central].max() < 1e-5 * scale
    assert np.abs(spectrum - np.fft.fftn(guess))[~central].max() < 1e-5 * scale


@pytest.mark.parametrize("operator", OPERATORS)
def test_a_consistent_volume_is_unchanged(operator, mni_crop):
    hr = mni_crop.data
    lr = degrade(torch.from_numpy(hr.astype(np.float64)), (12, 10, 20), operator).numpy().astype(np.float32)
    np.testing.assert_allclose(project(hr, lr, operator), hr, atol=1e-4 * np.ptp(hr))


def test_equal_grids_give_the_input_and_none_gives_a_copy():
    guess, lr = guess_and_input((10, 9, 8), (10, 9, 8))
    np.testing.assert_array_equal(project(guess, lr, "kspace"), lr)
    kept = project(guess, lr, "none")
    np.testing.assert_array_equal(kept, guess)
    assert kept is not guess


def test_bad_operator_and_grids_are_errors():
    guess, lr = guess_and_input((10, 9, 8), (5, 9, 4))
    with pytest.raises(InputError, match="unknown consistency operator 'fft'"):
        project(guess, lr, "fft")
    with pytest.raises(InputError, match="at least as large"):
        project(lr, guess, "kspace")


def test_inputs_are_not_changed():
    guess, lr = guess_and_input((12, 10, 8), (6, 5, 4))
    before = guess.copy(), lr.copy()
    project(guess, lr, "cubic")
    np.testing.assert_array_equal(guess, before[0])
    np.testing.assert_array_equal(lr, before[1])


@pytest.mark.parametrize("operator", OPERATORS)
def test_upsample_output_is_consistent_with_its_input(oblique_volume, tiny_model, operator):
    """Through the whole pipeline, on an oblique LPS-like file, per-axis scales, one of them 1."""
    result = upsample(oblique_volume, tiny_model, scale=(2.5, 1, 1.7), consistency=operator)
    again = degrade(torch.from_numpy(result.data.astype(np.float64)), oblique_volume.shape, operator).numpy()
    assert np.abs(again - oblique_volume.data).max() < 1e-3 * np.ptp(oblique_volume.data)
    assert result.data.min() >= 0


def test_projection_with_a_floor_stays_non_negative_and_consistent(mni_t1):
    """Real anatomy at the edge of the head (zero background): k-space ringing would go below zero."""
    hr = np.ascontiguousarray(mni_t1.data[0:60:2, 60:120:2, 100:160:2])
    assert hr.min() == 0
    lr = degrade(torch.from_numpy(hr.astype(np.float64)), (15, 10, 12), "kspace").numpy().astype(np.float32)
    lr = np.abs(lr)  # a magnitude image, as MR scanners write
    guess = resample(torch.from_numpy(lr.astype(np.float64)), hr.shape, "linear").numpy().astype(np.float32)
    exact = project(guess, lr, "kspace")
    assert exact.min() < -1e-2 * hr.max()  # unbounded: negative ringing
    bounded = project(guess, lr, "kspace", floor=0.0)
    assert bounded.min() >= 0

    def residual(volume):
        return np.abs(degrade_volume(volume, lr.shape, "kspace") - lr).max()

    # Alternating projections end far closer to consistency than clipping the exact projection once.
    assert residual(bounded) < 1e-2 * hr.max() and residual(bounded) < 0.3 * residual(np.maximum(exact, 0))


def test_scale_one_returns_the_input(oblique_volume, tiny_model):
    result = upsample(oblique_volume, tiny_model, scale="1,1,1")
    np.testing.assert_array_equal(result.data, oblique_volume.data)
    np.testing.assert_allclose(result.affine, oblique_volume.affine)


def test_kspace_consistency_improves_the_default_model_on_real_anatomy(mni_t1):
    """MNI152 T1 block at 1 mm, k-space LR at x2: the projection brings the model closer to the truth."""
    hr = Volume(mni_t1.data[40:120, 60:140, 50:114], mni_t1.affine)
    lr_shape = geometry.output_shape(hr.shape, (0.5, 0.5, 0.5))
    lr = Volume(degrade(torch.from_numpy(hr.data.astype(np.float64)), lr_shape, "kspace").numpy().astype(np.float32),
                geometry.resampled_affine(hr.affine, hr.shape, lr_shape))
    raw = upsample(lr, scale=2, consistency="none", device="cpu").data
    projected = upsample(lr, scale=2, device="cpu").data
    zero_filled = resample(torch.from_numpy(lr.data.astype(np.float64)), hr.shape, "kspace").numpy()
    assert psnr(projected, hr.data) > psnr(raw, hr.data) + 0.3, (psnr(projected, hr.data), psnr(raw, hr.data))
    assert psnr(projected, hr.data) > psnr(zero_filled, hr.data) + 0.3


def flipped_and_permuted(volume: Volume, permutation, flips) -> Volume:
    """The same image stored with array axes permuted and reversed: the affine follows."""
    data = volume.data.transpose(permutation)
    affine = volume.affine[:, [*permutation, 3]].copy()
    for axis in np.flatnonzero(flips):
        data = np.flip(data, axis)
        affine[:, 3] += affine[:, axis] * (data.shape[axis] - 1)
        affine[:, axis] *= -1
    return Volume(np.ascontiguousarray(data), affine)


def world_values(volume: Volume, reference_affine: np.ndarray, shape) -> np.ndarray:
    """``volume`` read at the voxel centres of a reference grid (nearest voxel: the grids coincide)."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = index @ reference_affine[:3, :3].T + reference_affine[:3, 3]
    own = (world - volume.affine[:3, 3]) @ np.linalg.inv(volume.affine[:3, :3]).T
    rounded = np.rint(own).astype(int)
    assert np.abs(own - rounded).max() < 1e-6
    return volume.data[tuple(rounded.T)].reshape(shape)


@pytest.mark.parametrize("consistency", ["none", "kspace"])
def test_every_orientation_gives_the_same_world_space_result(mni_crop, tiny_model, consistency):
    """All 48 axis orientations (6 permutations x 8 flips) of a real MNI152 block."""
    base = Volume(mni_crop.data[:14, :12, :10], mni_crop.affine)
    scale = np.array([2.0, 1.5, 2.5])
    reference = upsample(base, tiny_model, scale=tuple(scale), consistency=consistency)
    span = np.ptp(base.data)
    for permutation in itertools.permutations(range(3)):
        for flips in itertools.product([False, True], repeat=3):
            stored = flipped_and_permuted(base, permutation, flips)
            result = upsample(stored, tiny_model, scale=tuple(scale[list(permutation)]), consistency=consistency)
            same = world_values(result, reference.affine, reference.shape)
            assert np.abs(same - reference.data).max() <= 1e-4 * span, (permutation, flips)


def test_gain_zero_gives_zero_filled_kspace(oblique_volume, tiny_model):
    """Odd LR sizes: there the minimum-norm consistent volume is zero-filled k-space interpolation exactly
    (for even sizes the two treat the Nyquist bin differently)."""
    odd = Volume(oblique_volume.data[:13, :11, :9], oblique_volume.affine)
    result = upsample(odd, tiny_model, scale=(2, 1.5, 3), gain=0.0).data
    zero_filled = resample(torch.from_numpy(odd.data.astype(np.float64)), result.shape, "kspace").numpy()
    assert zero_filled.min() > 0  # the floor at zero plays no part
    np.testing.assert_allclose(result, zero_filled, atol=1e-4 * np.ptp(odd.data))


def test_detail_gain_undoes_a_doubled_detail(monkeypatch, mni_crop, tiny_model):
    """A network whose detail is twice the true one (on the input's own degradation) gets a gain of 1/2."""
    from arssr import gain as gain_module

    lr = mni_crop.data / mni_crop.data.max()

    def doubled(low, model, shape, **kwargs):  # b + 2 (lr - b), b the projected interpolation of low
        interpolated = resample(torch.from_numpy(low.astype(np.float64)), shape, operator).numpy()
        return 2 * lr - project(interpolated.astype(np.float32), low, operator)

    monkeypatch.setattr(gain_module, "super_resolve", doubled)
    for operator in ("kspace", "cubic", "lanczos"):
        assert gain_module.detail_gain(tiny_model, lr, (2.0, 2.0, 2.0), operator, torch.device("cpu")) == pytest.approx(
            0.5, abs=1e-4)


def test_detail_gain_degrades_the_input_by_at_most_its_self_scale(monkeypatch, mni_crop, tiny_model):
    from arssr import gain as gain_module

    seen = []
    monkeypatch.setattr(gain_module, "super_resolve", lambda low, model, shape, **kwargs: (
        seen.append(low.shape), np.zeros(shape, np.float32))[1])
    lr = mni_crop.data / mni_crop.data.max()  # 24 x 28 x 20
    gain_module.detail_gain(tiny_model, lr, (3.2, 1.0, 1.2), "kspace", torch.device("cpu"))
    assert gain_module.GAIN_SELF_SCALE == 1.5 and seen == [(16, 28, 17)]  # round(24 / 1.5), 28, round(20 / 1.2)
    gain_module.detail_gain(tiny_model, lr, (3.2, 1.0, 1.2), "kspace", torch.device("cpu"), self_scale=3.2)
    assert seen[-1] == (8, 28, 17)  # round(24 / 3.2): the input's own scale


def test_detail_gain_of_thick_slices_pools_the_in_plane_views(monkeypatch, mni_crop, tiny_model):
    """Slices along axis 2: a network whose detail is twice the true one on both in-plane views (each in-plane
    axis swapped into the slice axis' place and thinned there to the slices' scale) gets a gain of 1/2."""
    from arssr import gain as gain_module

    lr = mni_crop.data / mni_crop.data.max()  # 24 x 28 x 20
    operator = ("kspace", "kspace", SliceModel(3.0))
    views = {(20, 28, 24): lr.transpose(2, 1, 0), (24, 20, 28): lr.transpose(0, 2, 1)}
    seen = []

    def doubled(low, model, shape, **kwargs):
        seen.append((low.shape, shape))
        interpolated = gain_module.interpolation(low, shape, operator)
        return 2 * views[shape] - project(interpolated, low, operator)

    monkeypatch.setattr(gain_module, "super_resolve", doubled)
    gain = gain_module.detail_gain(tiny_model, lr, (1.0, 1.0, 3.0), operator, torch.device("cpu"))
    assert gain == pytest.approx(0.5, abs=1e-4)
    assert seen == [((20, 28, 8), (20, 28, 24)), ((24, 20, 9), (24, 20, 28))]  # thinned x3, not capped at x1.5


def test_thick_slice_upsampling_uses_the_fitted_gain(monkeypatch, mni_crop, tiny_model):
    """MNI152 with 6 mm slices and the 3D model: the default gain is the one fitted on the in-plane views, not
    1; with the plane prior (the default where it is installed) it is 1, and nothing is fitted."""
    from arssr import gain as gain_module
    from arssr.simulate import ThickSlices, simulate_thick_slices

    thick = simulate_thick_slices(mni_crop, ThickSlices(6.0, 2))
    assert thick.shape == (24, 28, 7)
    fitted = []
    fit = gain_module.detail_gain

    def recorded(*args, **kwargs):
        fitted.append(fit(*args, **kwargs))
        return fitted[-1]

    monkeypatch.setattr(gain_module, "detail_gain", recorded)
    scale = (1, 1, 20 / 7)
    auto = upsample(thick, tiny_model, scale=scale, slice_thickness=6.0, plane_prior=None).data
    assert len(fitted) == 1 and 0 <= fitted[0] <= gain_module.MAX_GAIN and fitted[0] != 1.0
    given = upsample(thick, tiny_model, scale=scale, slice_thickness=6.0, gain=fitted[0], plane_prior=None).data
    np.testing.assert_array_equal(auto, given)
    assert fitted_gain(thick, tiny_model, scale=scale, slice_thickness=6.0, plane_prior=None) == fitted[0]
    assert fitted_gain(thick, tiny_model, scale=scale, slice_thickness=6.0) == 1.0  # the shipped prior's
    with_prior = upsample(thick, tiny_model, scale=scale, slice_thickness=6.0, details=True)
    assert len(fitted) == 2 and (with_prior.gain, with_prior.estimator) == (1.0, "plane prior")  # no more fits
    assert with_prior.operator == ("kspace", "kspace", SliceModel(3.0, "boxcar", "smooth"))  # 6 mm on a 2 mm grid


def test_cubic_consistency_takes_the_fixed_gain_unless_slices_are_thick(monkeypatch, mni_crop, tiny_model):
    """Cubic consistency on an isotropic input: ``auto`` is CUBIC_GAIN, no fit; with thick slices it is fitted."""
    from arssr import gain as gain_module
    from arssr.simulate import ThickSlices, simulate_thick_slices

    fits = []
    fit = gain_module.detail_gain
    monkeypatch.setattr(gain_module, "detail_gain", lambda *args, **kwargs: (fits.append(1), fit(*args, **kwargs))[1])
    scale = (2, 1.5, 2.5)
    auto = upsample(mni_crop, tiny_model, scale=scale, consistency="cubic").data
    given = upsample(mni_crop, tiny_model, scale=scale, consistency="cubic", gain=0.25).data
    np.testing.assert_array_equal(auto, given)
    assert fitted_gain(mni_crop, tiny_model, scale=scale, consistency="cubic") == gain_module.CUBIC_GAIN == 0.25
    assert fits == []
    thick = simulate_thick_slices(mni_crop, ThickSlices(6.0, 2))
    gain = fitted_gain(thick, tiny_model, scale=(1, 1, 20 / 7), consistency="cubic", slice_thickness=6.0,
                       plane_prior=None)
    assert fits == [1] and gain != gain_module.CUBIC_GAIN


def test_fitted_gain_of_constant_volumes_and_without_consistency(mni_crop, tiny_model):
    constant = Volume(np.full((8, 8, 8), 3.0, np.float32), np.eye(4))
    assert fitted_gain(constant, tiny_model, scale=2) == 1.0
    with pytest.raises(InputError, match="a detail gain needs a consistency operator, not none"):
        fitted_gain(mni_crop, tiny_model, scale=2, consistency="none")


def test_gain_zero_gives_the_operators_own_interpolation_projected(mni_crop, tiny_model):
    """Cubic consistency: a gain of 0 is cubic B-spline interpolation of the input, made consistent."""
    result = upsample(mni_crop, tiny_model, scale=(2, 1.5, 2.5), consistency="cubic", gain=0.0).data
    cubic = resample(torch.from_numpy(mni_crop.data.astype(np.float64)), result.shape, "cubic").numpy()
    expected = project(cubic.astype(np.float32), mni_crop.data, "cubic", floor=0.0)
    np.testing.assert_allclose(result, expected, atol=1e-4 * np.ptp(mni_crop.data))


def test_fitted_gain_on_real_anatomy_keeps_consistency(mni_crop, tiny_model):
    result = upsample(mni_crop, tiny_model, scale=2, gain="auto").data
    again = degrade(torch.from_numpy(result.astype(np.float64)), mni_crop.shape, "kspace").numpy()
    assert np.abs(again - mni_crop.data).max() < 1e-3 * np.ptp(mni_crop.data)


# --- the slice model of thick-slice inputs -----------------------------------------------------

# (HR shape, LR shape, per-axis operator): slices along one axis, contiguous, with gaps, overlapping, Gaussian.
SLICE_OPERATORS = [
    ((12, 10, 30), (12, 10, 6), ("kspace", "kspace", SliceModel(5.0))),
    ((12, 35, 9), (12, 5, 9), ("cubic", SliceModel(5.0), "cubic")),
    ((26, 10, 9), (4, 10, 9), (SliceModel(8.0), "kspace", "kspace")),
    ((12, 10, 27), (6, 10, 6), ("kspace", "kspace", SliceModel(4.0, "gaussian"))),
]


@pytest.mark.parametrize("hr_shape,lr_shape,operator", SLICE_OPERATORS)
def test_slice_projection_degrades_back_and_equals_the_dense_least_squares_solution(hr_shape, lr_shape, operator):
    guess, lr = guess_and_input(hr_shape, lr_shape, seed=5)
    projected = project(guess, lr, operator)
    again = degrade(torch.from_numpy(projected.astype(np.float64)), lr_shape, operator).numpy()
    assert np.abs(again - lr).max() < 1e-4 * np.ptp(lr)
    matrices = [axis_matrix(op, n, m).numpy() for op, n, m in zip(operator, hr_shape, lr_shape)]
    dense = np.kron(np.kron(matrices[0], matrices[1]), matrices[2])
    y = guess.astype(np.float64).ravel()
    expected = y + np.linalg.pinv(dense) @ (lr.astype(np.float64).ravel() - dense @ y)
    np.testing.assert_allclose(projected.ravel(), expected, atol=1e-4 * np.ptp(lr))


def test_voxels_in_slice_gaps_keep_the_guess():
    """7-voxel spacing, 5-voxel slices: HR voxels 7j and 7j + 6 are seen by no slice, so no projection moves them."""
    guess, lr = guess_and_input((6, 5, 35), (6, 5, 5), seed=6)
    projected = project(guess, lr, ("kspace", "kspace", SliceModel(5.0)))
    gaps = np.array([i % 7 in (0, 6) for i in range(35)])
    np.testing.assert_array_equal(projected[..., gaps], guess[..., gaps])
    assert np.abs(projected[..., ~gaps] - guess[..., ~gaps]).max() > 1.0


@pytest.mark.parametrize("profile", ["boxcar", "gaussian"])
def test_projecting_onto_the_true_slices_of_real_anatomy_moves_any_guess_closer(mni_crop, profile):
    """MNI152 T1 (2 mm) in 8 mm slices along axis 2: cubic upsampling, projected onto those slices, gains PSNR."""
    hr = mni_crop.data
    operator = ("kspace", "kspace", SliceModel(4.0, profile))
    lr = degrade(torch.from_numpy(hr.astype(np.float64)), (24, 28, 5), operator).numpy().astype(np.float32)
    guess = resample(torch.from_numpy(lr.astype(np.float64)), hr.shape, "cubic").numpy().astype(np.float32)
    projected = project(guess, lr, operator, floor=0.0)
    assert projected.min() >= 0
    assert psnr(projected, hr) > psnr(guess, hr) + 0.1  # non-expansive: never below; here +0.16 dB and more
    np.testing.assert_allclose(project(hr, lr, operator), hr, atol=1e-4 * np.ptp(hr))  # the truth is consistent


def test_slice_consistency_finds_the_slice_axis_and_converts_mm():
    operator = slice_consistency("kspace", (0.8, 0.8, 6.5), (256, 256, 25), (256, 256, 162), 5.0, "gaussian")
    assert operator[:2] == ("kspace", "kspace")
    assert operator[2] == SliceModel(5.0 / (6.5 * 25 / 162), "gaussian", DEFAULT_SLICE_CORRECTION)
    assert slice_consistency("cubic", (1, 7, 1), (9, 4, 9), (9, 28, 9), "spacing", correction="orthogonal")[1] == \
        SliceModel(7.0)
    with pytest.raises(InputError, match="one axis coarser than the other two and upsampled"):
        slice_consistency("kspace", (1, 1, 1), (9, 9, 9), (18, 18, 18), 3.0)
    with pytest.raises(InputError, match="one axis coarser than the other two and upsampled"):
        slice_consistency("kspace", (1, 1, 5), (9, 9, 9), (18, 18, 9), 3.0)
    with pytest.raises(InputError, match="cannot go with consistency none"):
        slice_consistency("none", (1, 1, 5), (9, 9, 9), (9, 9, 45), 3.0)
    with pytest.raises(InputError, match="unknown consistency operator 'nearest'"):
        project(np.zeros((4, 4, 8)), np.zeros((4, 4, 2)), ("nearest", "kspace", SliceModel(4.0)))


def test_upsample_with_a_slice_thickness_degrades_back_through_the_slice_model(tiny_model):
    """A flipped, anisotropic volume with 4 mm slices every 5 mm (1 mm gaps) along its third axis."""
    data = smooth_volume((10, 9, 6), seed=7)
    volume = Volume(data, np.diag([-1.0, 1.0, 5.0, 1.0]))
    out = upsample(volume, tiny_model, scale=(1, 1, 5), device="cpu", slice_thickness=4.0)
    operator = ("kspace", "kspace", SliceModel(4.0))
    np.testing.assert_allclose(degrade_volume(out.data, data.shape, operator), data, atol=1e-4 * np.ptp(data))
    plain = upsample(volume, tiny_model, scale=(1, 1, 5), device="cpu")  # the k-space projection does not
    assert np.abs(degrade_volume(plain.data, data.shape, operator) - data).max() > 1e-2 * np.ptp(data)


def test_correction_bands_split_at_half_the_input_nyquist_and_add_up():
    """Cosines along each axis at 0.3 and 0.7 of the LR's Nyquist frequency (in HR cycles per voxel: 0.5 m / n)
    land in the low and the high band; the bands always add up to the correction."""
    hr_shape, lr_shape = (40, 36, 30), (20, 12, 15)
    grids = np.meshgrid(*[np.arange(n) for n in hr_shape], indexing="ij")
    for axis, (n, m) in enumerate(zip(hr_shape, lr_shape)):
        nyquist = 0.5 * m / n
        cycles = [round(f * nyquist * n) / n for f in (0.3, 0.7)]  # whole periods on the grid (no leakage)
        slow, fast = (np.cos(2 * np.pi * c * grids[axis]).astype(np.float32) for c in cycles)
        low, high = correction_bands(slow + fast, lr_shape)
        np.testing.assert_allclose(low, slow, atol=1e-5)
        np.testing.assert_allclose(high, fast, atol=1e-5)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=hr_shape).astype(np.float32)
    low, high = correction_bands(noise, lr_shape)
    np.testing.assert_allclose(low + high, noise, atol=1e-5)


@pytest.mark.parametrize("operator", OPERATORS)
def test_weighted_projection_spans_the_guess_to_its_projection(operator):
    hr_shape, lr_shape = GRIDS[1]
    guess, lr = guess_and_input(hr_shape, lr_shape)
    np.testing.assert_allclose(weighted_projection(guess, lr, operator, (1, 1)), project(guess, lr, operator),
                               atol=1e-3)
    np.testing.assert_array_equal(weighted_projection(guess, lr, operator, (0, 0)), guess)
    floor = float(np.median(guess))
    clipped = weighted_projection(guess, lr, operator, (0.5, 1), floor=floor)
    np.testing.assert_array_equal(clipped, np.maximum(weighted_projection(guess, lr, operator, (0.5, 1)), floor))
    copy = guess.copy()
    weighted_projection(guess, lr, operator, (0.3, 0.6))
    np.testing.assert_array_equal(guess, copy)
    with pytest.raises(InputError, match="weighted consistency needs an operator"):
        weighted_projection(guess, lr, "none", (1, 1))


def test_fitted_band_weights_recover_known_weights_and_are_least_squares(mni_crop):
    """Real anatomy: a reference made with weights (0.8, 0.35) gives them back; on the true volume the fitted
    weights are closer than the projection (1, 1) and than any nearby pair."""
    truth = mni_crop.data
    lr_shape = tuple(n // 2 for n in truth.shape)
    lr = degrade(torch.from_numpy(truth.astype(np.float64)), lr_shape, "kspace").numpy().astype(np.float32)
    rng = np.random.default_rng(1)
    coded = lr + rng.normal(0, 0.05 * float(lr.std()), lr.shape).astype(np.float32)  # a lossy LR
    guess = resample(torch.from_numpy(coded.astype(np.float64)), truth.shape, "cubic").numpy().astype(np.float32)
    bands = projection_bands(guess, coded, "kspace")
    made = weighted_projection(guess, coded, "kspace", (0.8, 0.35))
    assert fit_band_weights(guess, bands, made) == (0.8, 0.35)
    fitted = fit_band_weights(guess, bands, truth)

    def error(weights):
        return float(np.sum((weighted_projection(guess, coded, "kspace", weights) - truth) ** 2, dtype=np.float64))

    best = error(fitted)
    assert best < error((1, 1))
    for step in itertools.product((-0.05, 0, 0.05), repeat=2):
        assert best <= error((fitted[0] + step[0], fitted[1] + step[1])) * (1 + 1e-6)


@pytest.mark.parametrize("spacing, factors, axis", [
    ((1.0, 1.0, 4.0), (1, 1, 4), 2),
    ((0.78, 0.78, 6.5), (1, 1, 8.33), 2),
    ((5.0, 0.9, 0.9), (5, 1, 1), 0),
    ((1.0, 1.0, 1.5), (1, 1, 1.5), None),  # 1.5x coarser is not more than 1.5x
    ((1.0, 1.0, 1.51), (1, 1, 1.5), 2),
    ((1.0, 2.0, 4.0), (1, 1, 4), 2),  # more than 1.5x coarser than each of the others
    ((1.0, 3.0, 4.0), (1, 1, 4), None),
    ((1.0, 1.0, 4.0), (2, 2, 4), None),  # in-plane upsampled too
    ((1.0, 1.0, 4.0), (1, 2, 1), None),  # the coarse axis is not the one upsampled
    ((1.0, 1.0, 4.0), (1, 1, 1), None),
    ((0.8, 0.8, 5.0), (1.0000000079, 0.9999999921, 5.0), 2),  # --voxel-size 0.8,0.8,1 on an oblique grid
])
def test_thick_slice_axis_follows_the_default_rule(spacing, factors, axis):
    assert thick_slice_axis(spacing, factors) == axis


def test_smooth_slice_correction_is_exact_and_linear_between_slice_centres():
    from arssr.consistency import right_inverse
    from arssr.degrade import lr_coordinates

    n, m = 40, 10
    smooth, orthogonal = SliceModel(4.0, "boxcar", "smooth"), SliceModel(4.0)
    a = axis_matrix(smooth, n, m).numpy()
    np.testing.assert_array_equal(a, axis_matrix(orthogonal, n, m).numpy())  # the same slices
    lift = right_inverse(smooth, n, m).numpy()
    np.testing.assert_allclose(a @ lift, np.eye(m), atol=1e-12)
    # each column is a ramp between neighbouring slice centres: no curvature away from them
    centres = lr_coordinates(n, m).numpy()
    curvature = np.abs(np.diff(lift, n=2, axis=0))  # row i is centred on output voxel i + 1
    kinks = np.abs(np.arange(1, n - 1)[:, None] - centres[None, :]).min(axis=1) < 1.0
    assert curvature[~kinks].max() < 1e-9 and curvature[kinks].max() > 1e-3
    # the least-squares lift is constant over each slice instead
    assert np.abs(np.diff(right_inverse(orthogonal, n, m).numpy()[4:8], axis=0)).max() < 1e-9


def test_smooth_slice_correction_on_real_anatomy_keeps_the_slices_and_their_steps_fall(mni_t1):
    from arssr.metrics import slice_steps

    hr = mni_t1.data[60:100, 70:110, 60:124].astype(np.float32)
    lr = degrade_volume(hr, (40, 40, 16), ("cubic", "cubic", SliceModel(4.0)))
    from scipy import ndimage

    start = 0.8 * ndimage.gaussian_filter(hr, 2.0)  # smooth, but each slice's mean is off
    outputs = {}
    for correction in ("orthogonal", "smooth"):
        operator = ("cubic", "cubic", SliceModel(4.0, "boxcar", correction))
        outputs[correction] = project(start, lr, operator)
        np.testing.assert_allclose(degrade_volume(outputs[correction], lr.shape, operator), lr, atol=1e-2)
    assert slice_steps(outputs["smooth"], 2) < slice_steps(outputs["orthogonal"], 2) - 0.5


@pytest.mark.parametrize("thickness, profile, smooth", [
    (4.0, "boxcar", True), (6.0, "boxcar", True), (2.0, "boxcar", True), (2.0, "gaussian", True),  # gaps too
    (8.0, "boxcar", False), (12.0, "boxcar", False), (10.0, "gaussian", False),  # overlapping: A B ill-conditioned
])
def test_smooth_slice_correction_is_exact_or_keeps_the_least_squares_lift(thickness, profile, smooth):
    from arssr.consistency import MAX_SMOOTH_CONDITION, right_inverse
    from arssr.degrade import resampling_matrix

    n, m = 40, 10
    operator = SliceModel(thickness, profile, "smooth")
    a = axis_matrix(operator, n, m)
    condition = float(torch.linalg.cond(a @ resampling_matrix("linear", m, n)))
    assert (condition <= MAX_SMOOTH_CONDITION) == smooth
    lift = right_inverse(operator, n, m)
    np.testing.assert_allclose((a @ lift).numpy(), np.eye(m), atol=1e-9)
    least_squares = torch.linalg.pinv(a)
    assert torch.allclose(lift, least_squares) != smooth
