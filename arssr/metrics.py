"""Image-quality metrics of a super-resolved volume against its ground truth.

Both full-reference metrics use the data range of the reference,
``reference.max() - reference.min()`` over the whole volume (as the official
ArSSR evaluation), also when they are reported inside a mask.

- :func:`psnr`: ``10 log10(range^2 / MSE)``, MSE over all voxels or inside a mask.
- :func:`ssim`: 3D SSIM of Wang et al. (2004): Gaussian window ``sigma = 1.5``
  (11 taps per axis), population covariances, ``K1 = 0.01``, ``K2 = 0.03``,
  computed by :func:`skimage.metrics.structural_similarity`.
- :func:`brain_mask`: the foreground (head) mask used for "inside the brain" figures.
- :func:`slicewise_mean`: a 2D metric over every slice of the three orthogonal
  orientations, averaged over all those slices (the paper's protocol for LPIPS).
- :func:`load_lpips`: AlexNet LPIPS of the ``lpips`` package as such a 2D metric,
  or the reason it cannot be had (its backbone weights are downloaded on first use).
- :func:`dice`: Dice overlap per labelled class of two label maps.
- :func:`slice_steps`: no reference; how much of a volume's change along the
  slice axis of a thick-slice input comes in steps at slice boundaries.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

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
    """Mean 3D SSIM: scikit-image's mean (borders of half a window left out), or the SSIM map's mean inside ``mask``.

    MONAI's ``SSIMMetric`` with the same window agrees to a few 1e-4 (tests/test_monai.py); scikit-image's
    is kept because it is about 7x faster on a CPU in float64 (the 96 x 112 x 96 MNI block: 0.6-1.3 s
    against 7-9 s, one thread), returns the SSIM map that the masked mean needs, and is the
    population-covariance SSIM of Wang et al. that the published tables use.
    """
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


#: A 2D metric: a batch of estimate slices and reference slices ``(B, H, W)`` -> ``B`` scores.
SliceMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]


def slicewise_mean(metric: SliceMetric, estimate: np.ndarray, reference: np.ndarray, batch: int = 32) -> float:
    """Mean of ``metric`` over the slices along each of the three axes, pooled.

    Slices where the reference is constant (empty background) are left out:
    they carry no structure and would pull the mean toward a perfect score.
    """
    estimate, reference, _ = _pair(estimate, reference, None)
    scores = []
    for axis in range(3):
        est = np.moveaxis(estimate, axis, 0)
        ref = np.moveaxis(reference, axis, 0)
        keep = np.flatnonzero(np.ptp(ref.reshape(ref.shape[0], -1), axis=1) > 0)
        for start in range(0, keep.size, batch):
            index = keep[start:start + batch]
            scores.append(np.asarray(metric(est[index], ref[index]), dtype=np.float64).reshape(-1))
    if not scores:
        raise InputError("reference is constant in every slice: no slice to score")
    return float(np.concatenate(scores).mean())


class MetricUnavailable(Exception):
    """A metric whose implementation or weights cannot be loaded here; the message says why."""


def load_lpips(device: str = "cpu") -> Callable[[np.ndarray, np.ndarray], float]:
    """Volume LPIPS (AlexNet, ``lpips`` 0.1): slices scaled to [-1, 1] by the reference's range, grey to RGB.

    Raises :class:`MetricUnavailable` with the reason when the package, its
    torchvision backbone or the pretrained weights cannot be loaded.
    """
    try:
        import lpips
        import torch

        network = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    except Exception as err:  # offline download, missing torchvision, ...: all mean "not here"
        raise MetricUnavailable(f"{type(err).__name__}: {err}".strip().splitlines()[0]) from err

    def volume_lpips(estimate: np.ndarray, reference: np.ndarray) -> float:
        low, peak = float(np.min(reference)), data_range(reference)

        def batch_lpips(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
            pair = [torch.from_numpy(2 * (x - low) / peak - 1).float().to(device)[:, None].expand(-1, 3, -1, -1)
                    for x in (est, ref)]
            with torch.no_grad():
                return network(*pair).reshape(-1).cpu().numpy()

        return slicewise_mean(batch_lpips, estimate, reference)

    return volume_lpips


def dice(labels: np.ndarray, reference: np.ndarray, classes: Mapping[str, int]) -> dict[str, float]:
    """Dice ``2|A and B| / (|A| + |B|)`` per class; ``nan`` for a class absent from both maps."""
    labels, reference = np.asarray(labels), np.asarray(reference)
    if labels.shape != reference.shape:
        raise InputError(f"label maps differ in shape: {labels.shape} vs {reference.shape}")
    scores = {}
    for name, value in classes.items():
        a, b = labels == value, reference == value
        total = int(a.sum()) + int(b.sum())
        scores[name] = 2.0 * int(np.logical_and(a, b).sum()) / total if total else float("nan")
    return scores


#: Share of the planes whose differences make the upper tail of :func:`slice_steps`.
STEP_TAIL = 0.1


def slice_steps(data: np.ndarray, axis: int, mask: np.ndarray | None = None) -> float:
    """The staircase of an upsampled thick-slice volume: the mean of the largest 10 % of ``d`` over the mean
    of ``d``, where ``d[k]`` is the mean absolute difference between planes ``k`` and ``k + 1`` along ``axis``
    (inside ``mask`` when given: voxels in the mask in both planes).

    A change spread evenly over the planes scores 1; the same change made in
    steps every ``K`` planes scores ``K`` (up to 10, where the steps fill the
    tail), so a staircase stands out whatever the contrast. Compare methods
    on the same input, and with the ground truth where there is one: anatomy
    alone scores above 1.
    """
    data = np.moveaxis(np.asarray(data, dtype=np.float64), axis, 0)
    if data.shape[0] < 3:
        raise InputError(f"slice steps need at least 3 planes along axis {axis}, got {data.shape[0]}")
    if mask is not None and np.shape(mask) != np.moveaxis(data, 0, axis).shape:
        raise InputError(f"slice steps: mask of shape {np.shape(mask)} for a volume of shape "
                         f"{np.moveaxis(data, 0, axis).shape}")
    weight = np.ones(data.shape, bool) if mask is None else np.moveaxis(np.asarray(mask, bool), axis, 0)
    pairs = weight[1:] & weight[:-1]
    counts = pairs.sum(axis=(1, 2))
    if not counts.any():
        raise InputError("slice steps: the mask holds no neighbouring pair of voxels along the slice axis")
    sums = (np.abs(np.diff(data, axis=0)) * pairs).sum(axis=(1, 2))
    per_plane = np.sort(sums[counts > 0] / counts[counts > 0])
    mean = float(per_plane.mean())
    tail = per_plane[-max(1, round(STEP_TAIL * len(per_plane))):]
    return float(tail.mean() / mean) if mean > 0 else 1.0
