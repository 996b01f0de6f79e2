"""Image-quality metrics of a super-resolved volume against its ground truth.

Both full-reference metrics use the data range of the reference,
``reference.max() - reference.min()`` over the whole volume (as the official
ArSSR evaluation), also when they are reported inside a mask.

- :func:`psnr`: ``10 log10(range^2 / MSE)``, MSE over all voxels or inside a mask.
- :func:`ssim`: 3D SSIM of Wang et al. (2004): Gaussian window ``sigma = 1.5``
  (11 taps per axis), population covariances, ``K1 = 0.01``, ``K2 = 0.03``,
  computed by :func:`skimage.metrics.structural_similarity`.
- :func:`brain_mask`: the foreground (head) mask used for "inside the brain" figures.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.metrics import structural_similarity

from arssr.errors import InputError

SSIM_SIGMA = 1.5
#: Side of the SSIM window: ``2 * int(3.5 * sigma + 0.5) + 1`` as in scikit-image.
SSIM_WINDOW = 11


def _pair(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None):
    """Both volumes as float64 plus a checked boolean mask (or ``None``)."""
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if estimate.shape != reference.shape:
        raise InputError(f"estimate and reference differ in shape: {estimate.shape} vs {reference.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != reference.shape:
            raise InputError(f"mask shape {mask.shape} does not match the volumes' shape {reference.shape}")
        if mask.dtype != bool:
            raise InputError(f"mask must be a boolean array, got dtype {mask.dtype}")
        if not mask.any():
            raise InputError("mask is empty: no voxel to compare")
    return estimate, reference, mask


def data_range(reference: np.ndarray) -> float:
    """``reference.max() - reference.min()``; a constant reference has no range and is an error."""
    value = float(np.max(reference) - np.min(reference))
    if value <= 0:
        raise InputError("reference is constant: its data range is 0, so PSNR and SSIM are undefined")
    return value


def psnr(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` when the volumes are equal (inside ``mask``)."""
    estimate, reference, mask = _pair(estimate, reference, mask)
    peak = data_range(reference)
    error = (estimate - reference) ** 2
    mse = float(error[mask].mean() if mask is not None else error.mean())
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(peak * peak / mse)


def ssim(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean 3D SSIM: scikit-image's mean (borders of half a window left out), or the SSIM map's mean inside ``mask``."""
    estimate, reference, mask = _pair(estimate, reference, mask)
    if min(reference.shape) < SSIM_WINDOW:
        raise InputError(f"SSIM needs at least {SSIM_WINDOW} voxels along every axis, got shape {reference.shape}")
    mean, ssim_map = structural_similarity(
        estimate,
        reference,
        data_range=data_range(reference),
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )
    return float(ssim_map[mask].mean() if mask is not None else mean)


def brain_mask(reference: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Foreground mask: voxels above ``threshold`` (Otsu's by default), largest connected component, holes filled."""
    reference = np.asarray(reference, dtype=np.float64)
    if threshold is None:
        threshold = float(threshold_otsu(reference))
    labels, count = ndimage.label(reference > threshold)
    if count == 0:
        raise InputError(f"no voxel above the threshold {threshold:g}: cannot build a foreground mask")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(sizes.argmax()))
