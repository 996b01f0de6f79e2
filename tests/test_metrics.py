"""Metrics against hand computations, scikit-image, stand-in networks and real anatomy."""

import math
import sys
import types

import numpy as np
import pytest
from scipy import ndimage
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from arssr.errors import InputError
from arssr.metrics import MetricUnavailable, brain_mask, dice, load_lpips, psnr, slice_steps, slicewise_mean, ssim


@pytest.fixture(scope="module")
def pair():
    """A smooth 3D reference (range not starting at 0) and a noisy estimate of it."""
    rng = np.random.default_rng(1)
    reference = ndimage.gaussian_filter(rng.normal(size=(24, 20, 16)), 2.0) * 300 + 40
    return reference + rng.normal(0, 2.0, reference.shape), reference


def reference_ssim_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """Wang et al.'s SSIM map with an 11-tap Gaussian window (sigma 1.5) and population covariances."""
    blur = lambda a: ndimage.gaussian_filter(a, 1.5, truncate=3.5, mode="reflect")  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def test_psnr_matches_hand_computation_and_skimage(pair):
    estimate, reference = pair
    value_range = float(reference.max() - reference.min())
    mse = np.mean((estimate - reference) ** 2)
    assert psnr(estimate, reference) == pytest.approx(10 * math.log10(value_range**2 / mse), abs=1e-9)
    expected = peak_signal_noise_ratio(reference, estimate, data_range=value_range)
    assert psnr(estimate, reference) == pytest.approx(expected, abs=1e-4)


def test_psnr_of_identical_volumes_is_infinite(pair):
    _, reference = pair
    assert psnr(reference, reference.copy()) == float("inf")


def test_integer_volumes_do_not_wrap_around():
    reference = np.arange(8000).reshape(20, 20, 20) % 251
    estimate = (reference + 10) % 256  # uint8 subtraction would wrap where estimate < reference
    expected = (psnr(estimate.astype(float), reference.astype(float)), ssim(estimate.astype(float), reference))
    assert (psnr(estimate.astype(np.uint8), reference.astype(np.uint8)),
            ssim(estimate.astype(np.uint8), reference.astype(np.uint8))) == pytest.approx(expected)


def test_masked_psnr_uses_only_masked_voxels(pair):
    estimate, reference = pair
    mask = np.zeros(reference.shape, dtype=bool)
    mask[4:12, 3:15, 2:9] = True
    value_range = float(reference.max() - reference.min())
    mse = np.mean((estimate[mask] - reference[mask]) ** 2)
    assert psnr(estimate, reference, mask) == pytest.approx(10 * math.log10(value_range**2 / mse), abs=1e-9)
    corrupted = estimate.copy()
    corrupted[~mask] += 100
    assert psnr(corrupted, reference, mask) == pytest.approx(psnr(estimate, reference, mask), abs=1e-9)


def test_ssim_matches_skimage_and_wang_formula(pair):
    estimate, reference = pair
    value_range = float(reference.max() - reference.min())
    expected = structural_similarity(
        estimate, reference, data_range=value_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(estimate, reference) == pytest.approx(expected, abs=1e-12)
    by_hand = reference_ssim_map(estimate, reference, value_range)[5:-5, 5:-5, 5:-5].mean()
    assert ssim(estimate, reference) == pytest.approx(by_hand, abs=1e-6)


def test_masked_ssim_averages_the_map_inside_the_mask(pair):
    estimate, reference = pair
    mask = reference > np.median(reference)
    value_range = float(reference.max() - reference.min())
    by_hand = reference_ssim_map(estimate, reference, value_range)[mask].mean()
    assert ssim(estimate, reference, mask) == pytest.approx(by_hand, abs=1e-6)


def test_ssim_is_one_for_identical_volumes_and_drops_with_noise(pair):
    _, reference = pair
    rng = np.random.default_rng(2)
    assert ssim(reference, reference.copy()) == pytest.approx(1.0, abs=1e-12)
    values = [ssim(reference + rng.normal(0, sd, reference.shape), reference) for sd in (1.0, 5.0, 20.0)]
    assert 1.0 > values[0] > values[1] > values[2]


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_mismatch_names_both_shapes(metric):
    with pytest.raises(InputError, match=r"\(12, 12, 12\).*\(12, 12, 13\)"):
        metric(np.zeros((12, 12, 12)), np.arange(12 * 12 * 13.0).reshape(12, 12, 13))


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_constant_reference_and_bad_masks_are_input_errors(metric, pair):
    estimate, reference = pair
    with pytest.raises(InputError, match="constant"):
        metric(estimate, np.full(reference.shape, 3.0))
    with pytest.raises(InputError, match="empty"):
        metric(estimate, reference, np.zeros(reference.shape, dtype=bool))
    with pytest.raises(InputError, match="boolean"):
        metric(estimate, reference, np.ones(reference.shape, dtype=np.uint8))


def test_ssim_needs_a_full_window():
    with pytest.raises(InputError, match="at least 11"):
        ssim(np.ones((20, 20, 8)), np.arange(3200.0).reshape(20, 20, 8))


def test_brain_mask_on_mni_t1(mni_t1):
    mask = brain_mask(mni_t1.data)
    fraction = mask.mean()
    # The MNI152 template is skull-stripped: about 22 % of its field of view is non-zero.
    assert 0.18 < fraction < 0.30, fraction
    assert ndimage.label(mask)[1] == 1
    nonzero = mni_t1.data > 0
    dice = 2 * np.sum(mask & nonzero) / (mask.sum() + nonzero.sum())
    assert dice > 0.95, dice


def test_brain_mask_fills_holes_and_drops_small_blobs():
    volume = np.zeros((30, 30, 30))
    volume[5:25, 5:25, 5:25] = 100.0
    volume[12:18, 12:18, 12:18] = 0.0  # an enclosed dark cavity (a ventricle)
    volume[1:3, 1:3, 1:3] = 100.0  # a separate bright speck
    mask = brain_mask(volume)
    assert mask[15, 15, 15] and not mask[2, 2, 2]
    assert mask.sum() == 20**3
    with pytest.raises(InputError, match="threshold"):
        brain_mask(volume, threshold=1000.0)


def test_slicewise_mean_pools_the_slices_of_all_three_orientations():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(6, 5, 4))
    reference[0] = 0.0  # a constant slice along axis 0: left out
    estimate = reference + rng.normal(scale=0.1, size=reference.shape)
    seen = []

    def mean_abs(est, ref):
        seen.append(est.shape[1:])
        return np.abs(est - ref).mean(axis=(1, 2))

    expected = [np.abs(estimate[i] - reference[i]).mean() for i in range(1, 6)]
    expected += [np.abs(estimate[:, j] - reference[:, j]).mean() for j in range(5)]
    expected += [np.abs(estimate[:, :, k] - reference[:, :, k]).mean() for k in range(4)]
    assert slicewise_mean(mean_abs, estimate, reference, batch=2) == pytest.approx(np.mean(expected), rel=1e-12)
    assert set(seen) == {(5, 4), (6, 4), (6, 5)}
    with pytest.raises(InputError, match="constant in every slice"):
        slicewise_mean(mean_abs, estimate, np.ones_like(reference))


def test_lpips_unavailable_gives_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # as if not installed
    with pytest.raises(MetricUnavailable, match="lpips"):
        load_lpips()


def test_lpips_feeds_the_network_rgb_slices_in_minus_one_to_one(monkeypatch, mni_crop):
    batches = []

    class StandInLPIPS(torch.nn.Module):
        def __init__(self, net, verbose):
            super().__init__()
            assert net == "alex"

        def forward(self, a, b):
            batches.append((a.clone(), b.clone()))
            return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=StandInLPIPS))
    reference = mni_crop.data
    estimate = reference + 5.0
    score = load_lpips()(estimate, reference)
    low, high = reference.min(), reference.max()
    assert all(a.shape[1] == 3 and torch.equal(a[:, 0], a[:, 2]) for a, _ in batches)
    assert min(b.min().item() for _, b in batches) == pytest.approx(-1.0)
    assert max(b.max().item() for _, b in batches) == pytest.approx(1.0)
    assert score == pytest.approx(2 * 5.0 / (high - low), rel=1e-5)  # a shift of 5 is 10 / range in [-1, 1]


def test_dice_on_label_maps_with_known_overlap():
    a = np.zeros((10, 10, 10), dtype=np.uint8)
    b = np.zeros_like(a)
    a[:5] = 1  # 500 voxels
    b[:4] = 1  # 400 voxels, all inside a's
    a[5:] = 2
    b[4:8] = 2  # overlap with a's class 2: rows 5..7 = 300 voxels of 500 and 400
    scores = dice(a, b, {"one": 1, "two": 2, "absent": 3})
    assert scores["one"] == pytest.approx(2 * 400 / 900)
    assert scores["two"] == pytest.approx(2 * 300 / 900)
    assert np.isnan(scores["absent"])
    assert dice(a, a, {"one": 1}) == {"one": 1.0}
    with pytest.raises(InputError, match="differ in shape"):
        dice(a, a[:5], {"one": 1})


def test_slice_steps_of_a_staircase_and_of_a_ramp():
    ramp = np.broadcast_to(np.arange(40.0), (6, 5, 40))
    stairs = np.broadcast_to(np.repeat(np.arange(10.0), 4), (6, 5, 40))  # 9 steps among 39 neighbouring pairs
    assert slice_steps(ramp, axis=2) == pytest.approx(1.0)
    assert slice_steps(stairs, axis=2) == pytest.approx(39 / 9)
    assert slice_steps(np.moveaxis(stairs, 2, 0), axis=0) == pytest.approx(39 / 9)
    assert slice_steps(np.zeros((4, 4, 4)), axis=1) == 1.0
    for period in (8, 10, 16):  # coarse steps fill the tail of the largest 10 % instead of falling out of it
        coarse = np.broadcast_to(np.repeat(np.arange(10.0), period), (3, 3, 10 * period))
        pairs, steps = 10 * period - 1, 9
        tail = round(0.1 * pairs)
        assert slice_steps(coarse, axis=2) == pytest.approx(min(steps, tail) / tail * pairs / steps)
    with pytest.raises(InputError, match=r"mask of shape \(6, 5\) for a volume of shape \(6, 5, 40\)"):
        slice_steps(ramp, 2, np.ones((6, 5), bool))


def test_slice_steps_count_only_pairs_inside_the_mask():
    stairs = np.repeat(np.arange(10.0), 4)[None, None, :] * np.ones((6, 5, 1))
    noisy = stairs + np.where(np.arange(6)[:, None, None] == 0, np.random.default_rng(0).random((1, 5, 40)) * 9, 0)
    mask = np.ones(noisy.shape, bool)
    mask[0] = False  # the noisy row is left out
    mask[1, 0, 13] = False  # one voxel: the pairs (12, 13) and (13, 14) lose it, the means stay those of the rest
    assert slice_steps(noisy, 2, mask) == pytest.approx(39 / 9)
    assert slice_steps(noisy, 2) != pytest.approx(39 / 9)
    with pytest.raises(InputError, match="no neighbouring pair"):
        slice_steps(noisy, 2, np.zeros(noisy.shape, bool))


def test_slice_steps_rank_nearest_above_cubic_on_real_anatomy(mni_t1):
    """The MNI152 T1 in 4 mm slices brought back to 1 mm: nearest neighbour is a staircase (about 4), cubic is as
    smooth as the anatomy itself."""
    from arssr.degrade import resample

    hr = mni_t1.data[40:150, 50:180, 40:140].astype(np.float64)
    lr = hr.reshape(110, 130, 25, 4).mean(axis=3)
    mask = brain_mask(hr)
    nearest = np.repeat(lr, 4, axis=2)
    cubic = resample(torch.from_numpy(lr), hr.shape, "cubic").numpy()
    steps = [slice_steps(v, 2, mask) for v in (nearest, cubic, hr)]
    assert steps[0] > 3.0 and abs(steps[1] - steps[2]) < 0.1 and steps[1] < 1.5
