"""Slice-to-slice intensity of 2D multi-slice inputs: the alternation of interleaved acquisitions.

An interleaved 2D acquisition excites the even slices in one pass and the odd
ones in another; saturation from the neighbouring pass makes one set a few
percent brighter. Each slice ``k`` is compared with the mean of its two
neighbours (the median ratio over the foreground, so anatomy that changes
smoothly cancels); the ratio is above 1 on the brighter set and below 1 on the
other, and the brightness ratio of the even slices to the odd ones is
``exp((median log ratio over even k - median over odd k) / 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arssr.errors import InputError
from arssr.metrics import brain_mask
from arssr.volume import Volume

#: An even/odd brightness ratio further than this from 1 is reported as alternating slice intensity.
ALTERNATION_THRESHOLD = 0.02


@dataclass(frozen=True)
class Alternation:
    """The even slices' brightness over the odd ones' along ``axis``; ``spread`` is the standard error of
    its logarithm over the slices (an alternation well inside it is noise)."""

    axis: int
    ratio: float
    spread: float

    @property
    def alternates(self) -> bool:
        return bool(abs(self.ratio - 1) > ALTERNATION_THRESHOLD and abs(np.log(self.ratio)) > 2 * self.spread)

    def __str__(self) -> str:
        if self.alternates:
            verdict = "alternating, as interleaved 2D acquisitions give"
        elif abs(np.log(self.ratio)) > 2 * self.spread:
            verdict = f"below the {ALTERNATION_THRESHOLD:.0%} that counts as alternating"
        else:
            verdict = "no alternation beyond noise"
        return (f"even slices x{self.ratio:.3f} the odd ones along axis {self.axis} "
                f"(+/- {self.spread * 100:.1f} %; {verdict})")


def slice_alternation(volume: Volume, axis: int) -> Alternation:
    """The even/odd brightness ratio of ``volume``'s slices along ``axis`` (see the module's text)."""
    data = np.moveaxis(np.asarray(volume.data, dtype=np.float64), axis, -1)
    if data.shape[-1] < 5:
        raise InputError(f"slice intensity needs at least 5 slices along axis {axis}, got {data.shape[-1]}")
    mask = np.moveaxis(brain_mask(volume.data), axis, -1) & (data > 0)
    logs = []
    for k in range(1, data.shape[-1] - 1):
        inside = mask[..., k - 1] & mask[..., k] & mask[..., k + 1]
        if inside.sum() < 100:
            logs.append(np.nan)
            continue
        neighbours = (data[..., k - 1][inside] + data[..., k + 1][inside]) / 2
        logs.append(float(np.median(np.log(data[..., k][inside] / neighbours))))
    logs, slices = np.asarray(logs), np.arange(1, data.shape[-1] - 1)
    even = logs[np.isfinite(logs) & (slices % 2 == 0)]
    odd = logs[np.isfinite(logs) & (slices % 2 == 1)]
    if len(even) < 2 or len(odd) < 2:
        raise InputError(f"slice intensity: too few slices along axis {axis} with enough foreground")
    log_ratio = (np.median(even) - np.median(odd)) / 2
    return Alternation(axis, float(np.exp(log_ratio)), _spread(np.concatenate([even - np.median(even),
                                                                            odd - np.median(odd)])))


def _spread(residuals: np.ndarray) -> float:
    """Standard error of the log ratio for slices whose log brightness varies independently (variance
    ``s^2``) around an even/odd pattern: each neighbour ratio holds its slice and half of each neighbour, so
    its variance is ``1.5 s^2`` while the even-minus-odd sum gathers ``4 s^2 / N``; medians instead of means
    cost a factor of about 1.25 more."""
    slice_variance = float(np.mean(residuals**2)) / 1.5
    return 1.25 * float(np.sqrt(4 * slice_variance / len(residuals)))


def equalize_slices(volume: Volume, axis: int) -> tuple[Volume, Alternation]:
    """``volume`` with its even and odd slices along ``axis`` brought to one brightness (the geometric mean of
    the two), and the alternation that was removed. The caller's volume is not changed."""
    found = slice_alternation(volume, axis)
    gains = np.where(np.arange(volume.shape[axis]) % 2 == 0, found.ratio ** -0.5, found.ratio ** 0.5)
    shape = [1, 1, 1]
    shape[axis] = -1
    data = (volume.data * gains.reshape(shape)).astype(np.result_type(volume.data.dtype, np.float32))
    return Volume(data, volume.affine, volume.header), found
