"""No-reference sharpness: the Perceptual Sharpness Index (PSI) of Feichtenhofer et al. (IEEE SPL 2013).

PSI follows the authors' MATLAB release: Sobel edges (MATLAB's default
threshold, ``4 x`` the mean squared gradient, with directional thinning),
then, at edge pixels whose gradient is within 8 degrees of vertical, the
edge width between the intensity extrema above and below, divided by the
cosine of the angle and reduced by the edge slope when it reaches the
just-noticeable width of 3 pixels; widths are averaged in 32 x 32 blocks
(border blocks skipped, blocks with a width sum under 2 ignored), and PSI
is the inverse mean of the sharpest 22 % of blocks. Images smaller than three
blocks per side have no interior block and score 0, as in the release. Edge
maps of MATLAB versions differ slightly, so scores match the release
closely, not bit for bit. LPC-SI is not provided.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

BLOCK = 32
MIN_BLOCK_WIDTH_SUM = 2.0
ANGLE_TOLERANCE_DEG = 8.0
JUST_NOTICEABLE_WIDTH = 3.0
SHARPEST_FRACTION = 0.22


def sobel_edges(image: np.ndarray) -> np.ndarray:
    """Edge map of MATLAB's ``edge(I, 'sobel')``: squared magnitude above 4x its mean, thinned across the edge."""
    gx = np.abs(ndimage.sobel(image, axis=1, mode="nearest")) / 8
    gy = np.abs(ndimage.sobel(image, axis=0, mode="nearest")) / 8
    magnitude = gx * gx + gy * gy
    cutoff = 4.0 * magnitude.mean()
    padded = np.pad(magnitude, 1, mode="edge")
    left, right = padded[1:-1, :-2], padded[1:-1, 2:]
    up, down = padded[:-2, 1:-1], padded[2:, 1:-1]
    across_columns = (gx >= gy) & (left <= magnitude) & (magnitude > right)
    across_rows = (gy >= gx) & (up <= magnitude) & (magnitude > down)
    return (magnitude > cutoff) & (across_columns | across_rows)


def _runs(image: np.ndarray, step: int, rising: bool) -> np.ndarray:
    """Per pixel, how many successive pixels in direction ``step`` (-1 up, +1 down) keep rising (or falling)."""
    runs = np.zeros(image.shape, dtype=np.int64)
    rows = range(1, image.shape[0]) if step < 0 else range(image.shape[0] - 2, -1, -1)
    for i in rows:
        neighbour = i + step
        moving = image[neighbour] > image[i] if rising else image[neighbour] < image[i]
        runs[i] = np.where(moving, runs[neighbour] + 1, 0)
    return runs


def psi(image: np.ndarray) -> float:
    """PSI of one 2D image with intensities in [0, 1] (higher is sharper)."""
    image = np.asarray(image, dtype=np.float64)
    rows, cols = image.shape
    edges = sobel_edges(image)
    gy, gx = np.gradient(image)
    angle = np.degrees(np.arctan2(gy, gx))
    index = np.arange(rows)[:, None]
    widths = np.zeros_like(image)
    # Gradient pointing up (intensity falls downwards), then pointing down: walk to the extremum on each side.
    for sign, centre in ((-1, -90.0), (1, 90.0)):
        chosen = edges & (np.abs(angle - centre) < ANGLE_TOLERANCE_DEG) & ((gx != 0) | (gy != 0))
        up = _runs(image, -1, rising=sign < 0)
        down = _runs(image, +1, rising=sign > 0)
        valid = chosen & (up < index) & (down < rows - 1 - index)
        top = np.take_along_axis(image, np.clip(index - up, 0, rows - 1), axis=0)
        bottom = np.take_along_axis(image, np.clip(index + down, 0, rows - 1), axis=0)
        width = (up + down) / np.cos(np.radians(angle - centre))
        slope = np.divide(np.abs(top - bottom), width, out=np.zeros_like(width), where=width > 0)
        width = np.where(width >= JUST_NOTICEABLE_WIDTH, width - slope, width)
        widths = np.where(valid, width, widths)
    row_blocks, col_blocks = rows // BLOCK, cols // BLOCK
    means = []
    for r in range(1, row_blocks - 1):
        for c in range(1, col_blocks - 1):
            block = widths[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK]
            total = block.sum()
            if total >= MIN_BLOCK_WIDTH_SUM:
                means.append(total / np.count_nonzero(block))
    if not means:
        return 0.0
    sharpest = np.sort(means)[:math.ceil(len(means) * SHARPEST_FRACTION)]
    return float(len(sharpest) / sharpest.sum())


def volume_psi(volume: np.ndarray) -> float:
    """PSI of every slice along the three axes, averaged (the paper's protocol); the volume is scaled to [0, 1]."""
    from arssr.metrics import data_range, slicewise_mean

    volume = np.asarray(volume, dtype=np.float64)
    scaled = (volume - volume.min()) / data_range(volume)
    return slicewise_mean(lambda batch, _: np.array([psi(s) for s in batch]), scaled, scaled)
