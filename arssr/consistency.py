"""Data consistency: make an SR result degrade back to the LR volume it came from.

Every degradation of :mod:`arssr.degrade` is linear and separable, ``A = A0 x
A1 x A2`` with one ``(m, n)`` matrix per axis of full row rank (condition
numbers 1-13 for every operator and scale tried). The orthogonal projection of
an output ``y`` onto the volumes that degrade to the input ``x`` is therefore
closed-form and exact for every operator,

    y' = y + A+ (x - A y),    A+ = A0+ x A1+ x A2+   (Moore-Penrose, per axis),

so no iterations are needed. For ``kspace`` it replaces the output's central
k-space by the input's. An axis of scale 1 has ``A = I``: there the result is
the input itself, so ``--scale 1,1,1`` returns the input.

Memory: besides the result, one array of the output's size divided by the
smallest scale, and one divided by the product of the two largest; the output
is processed in slabs along axis 0.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from arssr.degrade import apply_along_axis, resampling_matrix
from arssr.errors import InputError
from arssr.protocol import CONSISTENCY_OPERATORS, DEFAULT_CONSISTENCY
#: Most projection-and-clipping rounds with a floor, and the clipping change (share of the range) that ends them.
FLOOR_ITERATIONS = 10
FLOOR_TOLERANCE = 1e-4
#: Output voxels per slab along axis 0.
SLAB_VOXELS = 1 << 22


def check_operator(operator: str) -> None:
    if operator not in CONSISTENCY_OPERATORS:
        raise InputError(f"unknown consistency operator {operator!r}; known: {', '.join(CONSISTENCY_OPERATORS)}")


@lru_cache(maxsize=64)
def pseudo_inverse(operator: str, n: int, m: int) -> torch.Tensor:
    """``(n, m)`` float64 Moore-Penrose inverse of the operator's ``(m, n)`` matrix on one axis."""
    return torch.linalg.pinv(resampling_matrix(operator, n, m))


def _slabs(rows: int, voxels_per_row: int):
    step = max(1, SLAB_VOXELS // max(1, voxels_per_row))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def degrade_volume(volume: np.ndarray, lr_shape, operator: str) -> np.ndarray:
    """``A y``: the degradation of ``volume`` to ``lr_shape`` (float32), computed slab by slab."""
    y = torch.from_numpy(np.asarray(volume, dtype=np.float32))
    big, small = y.shape, tuple(int(n) for n in lr_shape)
    inner = torch.empty((big[0], small[1], small[2]), dtype=torch.float32)
    a1, a2 = (resampling_matrix(operator, big[d], small[d]) for d in (1, 2))
    for rows in _slabs(big[0], big[1] * big[2]):
        inner[rows] = apply_along_axis(apply_along_axis(y[rows], a2, 2), a1, 1)
    return apply_along_axis(inner, resampling_matrix(operator, big[0], small[0]), 0).numpy()


def _projection(volume: np.ndarray, lr: np.ndarray, operator: str) -> np.ndarray:
    big, small = volume.shape, lr.shape
    residual = torch.from_numpy(lr - degrade_volume(volume, small, operator))
    p0, p1, p2 = (pseudo_inverse(operator, big[d], small[d]) for d in range(3))
    # A+ r on axes 2 and 1 first (n0 x M1 x M2), then axis 0 slab by slab into the result.
    lifted = apply_along_axis(apply_along_axis(residual, p2, 2), p1, 1)
    rows_of = p0.to(torch.float32)
    out = np.array(volume, dtype=np.float32, copy=True)
    result = torch.from_numpy(out)
    for rows in _slabs(big[0], big[1] * big[2]):
        result[rows] += torch.tensordot(rows_of[rows], lifted, dims=1)
    return out


def project(
    volume: np.ndarray,
    lr: np.ndarray,
    operator: str = DEFAULT_CONSISTENCY,
    floor: float | None = None,
    iterations: int = FLOOR_ITERATIONS,
) -> np.ndarray:
    """The closest array to ``volume`` (least squares) whose ``operator`` degradation equals ``lr``.

    ``volume`` is on the output grid of ``lr`` (``arssr.geometry``); both are
    intensities in the same units. With a ``floor`` (0 for MR magnitudes,
    which the ringing of a k-space projection would take below zero),
    projection and clipping alternate (POCS) until clipping moves no voxel by
    more than ``FLOOR_TOLERANCE`` of the input's range or ``iterations`` are
    done, and the result is clipped: it lies above the floor and degrades to
    ``lr`` up to that tolerance. Returns a new float32 array; neither input
    is changed. ``operator="none"`` returns a float32 copy of ``volume``.
    """
    check_operator(operator)
    volume = np.asarray(volume)
    if operator == "none":
        return volume.astype(np.float32, copy=True)
    if volume.ndim != 3 or np.ndim(lr) != 3 or any(m < n for m, n in zip(volume.shape, np.shape(lr))):
        raise InputError(
            f"consistency needs a 3D output at least as large as its 3D input, got {volume.shape} and {np.shape(lr)}"
        )
    lr = np.asarray(lr, dtype=np.float32)
    if volume.shape == lr.shape:  # A = I: the input itself, bit for bit
        return lr.copy()
    out = _projection(volume, lr, operator)
    if floor is None:
        return out
    tolerance = FLOOR_TOLERANCE * float(np.ptp(lr))
    for _ in range(iterations):
        below = float(floor - out.min())
        if below <= tolerance:
            break
        out = _projection(np.maximum(out, floor), lr, operator)
    return np.maximum(out, floor, out=out)
