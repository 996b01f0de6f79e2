"""Intensity windows: how a volume is brought to about ``[0, 1]`` for a network and back.

``percentile`` (arssr's own models): the 0.5th and 99.5th percentiles of all
voxels map to 0 and 1. Values outside the window are not clipped on the way
in, so bright vessels or fat stay brighter than 1; robust to a few hot voxels
that would squash the whole range under min-max. A low percentile within 15 %
of the high one from zero is taken as zero: the background of an MR magnitude
image, which noise or the ringing of a low-resolution acquisition moves a
little up or down, then maps to 0 in training and at inference alike.
``minmax`` (the official release's models): the minimum and maximum map to 0 and 1.
On the way out, intensities are mapped back through the same window and
clipped to the input's own ``[min, max]``.
"""

from __future__ import annotations

import numpy as np

NORMALIZATIONS = ("percentile", "minmax")
PERCENTILES = (0.5, 99.5)
#: A low percentile closer to zero than this fraction of the high one counts as a zero background
#: (the Gibbs ringing of a truncated k-space reaches about 9 % of an edge).
ZERO_SNAP = 0.15


def intensity_window(data: np.ndarray, rule: str) -> tuple[float, float]:
    """``(low, high)`` intensities that map to 0 and 1 under ``rule``."""
    if rule == "minmax":
        low, high = float(data.min()), float(data.max())
    elif rule == "percentile":
        low, high = (float(v) for v in np.percentile(data, PERCENTILES))
        if high > 0 and abs(low) <= ZERO_SNAP * high:
            low = 0.0
        if high <= low:  # mostly constant volume: fall back to the full range
            low, high = float(data.min()), float(data.max())
    else:
        raise ValueError(f"unknown normalization {rule!r}; known: {', '.join(NORMALIZATIONS)}")
    if high <= low:
        high = low + 1.0
    return low, high


def normalize(data: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    low, high = window
    return ((data.astype(np.float64) - low) / (high - low)).astype(np.float32)


def denormalize(data: np.ndarray, window: tuple[float, float], clip: tuple[float, float] | None = None) -> np.ndarray:
    low, high = window
    out = data.astype(np.float64) * (high - low) + low
    return (out if clip is None else np.clip(out, clip[0], clip[1])).astype(np.float32)
