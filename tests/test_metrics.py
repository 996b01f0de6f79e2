"""PSNR, SSIM and the foreground mask against hand computations, scikit-image and real anatomy."""

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from arssr.errors import InputError
from arssr.metrics import brain_mask, psnr, ssim


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
