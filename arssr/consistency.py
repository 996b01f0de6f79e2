"""Data consistency: make an SR result degrade back to the LR volume it came from.

Every degradation of :mod:`arssr.degrade` is linear and separable, ``A = A0 x
A1 x A2`` with one ``(m, n)`` matrix per axis of full row rank (condition
numbers 1-13 for every operator and scale tried). The orthogonal projection of
an output ``y`` onto the volumes that degrade to the input ``x`` is therefore
closed-form and exact for every operator,

    y' = y + A+ (x - A y),    A+ = A0+ x A1+ x A2+   (Moore-Penrose, per axis),

so no iterations are needed. For ``kspace`` it replaces the output's central
k-space by the input's. The operator may differ per axis (``arssr.degrade.Operator``):
for a thick-slice input, the slice model (:class:`arssr.degrade.SliceModel`)
along the slice axis and a name on the others; with gaps, the HR voxels that
no slice sees keep the output's values. An axis of scale 1 has ``A = I``: there the result is
the input itself, so ``--scale 1,1,1`` returns the input. Along a slice axis the correction can instead
be smooth (``SliceModel.correction``): ``A+`` there is replaced by the right inverse ``B (A B)^-1`` with
``B`` linear interpolation from the slice centres, an oblique projection that is as exact (``A y' = x``)
but spreads each slice's residual as ramps rather than as a constant over the slice.

Memory: besides the result, one array of the output's size divided by the
smallest scale, and one divided by the product of the two largest; the output
is processed in slabs along axis 0.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from arssr.degrade import (AxisOperator, Operator, SliceModel, apply_along_axis, axis_matrix, axis_operators,
                           resampling_matrix)
from arssr.errors import InputError
from arssr.protocol import CONSISTENCY_OPERATORS, DEFAULT_CONSISTENCY, DEFAULT_SLICE_CORRECTION
#: Most projection-and-clipping rounds with a floor, and the clipping change (share of the range) that ends them.
FLOOR_ITERATIONS = 10
FLOOR_TOLERANCE = 1e-4
#: Output voxels per slab along axis 0.
SLAB_VOXELS = 1 << 22
#: How much coarser than the other two axes the slice axis of a thick-slice input must be.
SLICE_AXIS_RATIO = 1.01
#: Radial frequency, in units of the input's Nyquist frequency along each axis, that splits a projection's
#: correction into the two bands that :func:`weighted_projection` weights.
BAND_SPLIT = 0.5
#: Decimals and largest magnitude of fitted band weights (they are stored in files).
WEIGHT_DECIMALS = 3
MAX_WEIGHT = 9.999
#: Largest condition number of ``A B`` for which the smooth slice correction is used (``right_inverse``): boxcar
#: slices up to 1.5x as thick as their spacing (gaps included) stay below it (3.7 at 1.5x); at 2x it is 41 and a
#: thin residual is amplified into ringing.
MAX_SMOOTH_CONDITION = 10.0


def check_operator(operator: Operator) -> None:
    """``InputError`` unless ``operator`` is one of :data:`CONSISTENCY_OPERATORS`, or one per axis, each a
    slice model or one of them (``none`` only for every axis at once)."""
    for entry in (operator,) if isinstance(operator, str) else axis_operators(operator):
        if isinstance(entry, str) and entry not in CONSISTENCY_OPERATORS:
            raise InputError(f"unknown consistency operator {entry!r}; known: {', '.join(CONSISTENCY_OPERATORS)}")


def slice_axis(spacing: Sequence[float], in_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """The slice axis of a thick-slice input: coarser than the other two axes, and upsampled."""
    axis = int(np.argmax(spacing))
    finer = all(s * SLICE_AXIS_RATIO < spacing[axis] for d, s in enumerate(spacing) if d != axis)
    if not finer or out_shape[axis] <= in_shape[axis]:
        spacing_text = " x ".join(f"{s:.3g}" for s in spacing)
        raise InputError(f"a slice thickness needs one axis coarser than the other two and upsampled; the input's "
                         f"spacing is {spacing_text} mm, shape {tuple(in_shape)} -> {tuple(out_shape)}")
    return axis


#: Default thick-slice detection: one axis more than this many times coarser than each of the other two.
THICK_SLICE_RATIO = 1.5
#: A scale this close to 1 counts as 1 (a --voxel-size equal to an oblique input's spacing gives 1 + 1e-8).
SCALE_ONE_TOLERANCE = 1e-6


def coarse_axis(spacing: Sequence[float]) -> int | None:
    """The axis more than :data:`THICK_SLICE_RATIO` times coarser than each of the other two, or ``None``."""
    axis = int(np.argmax(spacing))
    coarse = all(spacing[axis] > THICK_SLICE_RATIO * spacing[d] for d in range(3) if d != axis)
    return axis if coarse else None


def thick_slice_axis(spacing: Sequence[float], factors: Sequence[float]) -> int | None:
    """The slice axis of an input that is taken as 2D multi-slice unless told otherwise, or ``None``: its
    :func:`coarse_axis`, when that is the only axis upsampled (scale 1 elsewhere)."""
    axis = coarse_axis(spacing)
    if axis is None or factors[axis] <= 1 + SCALE_ONE_TOLERANCE:
        return None
    return axis if all(abs(factors[d] - 1) <= SCALE_ONE_TOLERANCE for d in range(3) if d != axis) else None


def slice_consistency(
    consistency: str,
    spacing: Sequence[float],
    in_shape: Sequence[int],
    out_shape: Sequence[int],
    thickness: float | str,
    profile: str = "boxcar",
    correction: str = DEFAULT_SLICE_CORRECTION,
) -> tuple[AxisOperator, AxisOperator, AxisOperator]:
    """Per-axis operator for a thick-slice input: its slices along :func:`slice_axis`, ``consistency`` elsewhere.

    ``thickness`` is in mm, or ``"spacing"`` for slices as thick as they are
    spaced (no gaps); on the output grid it is ``thickness / output spacing``
    HR voxels.
    """
    check_operator(consistency)
    if consistency == "none":
        raise InputError("a slice thickness is used by the consistency projection; it cannot go with consistency none")
    axis = slice_axis(spacing, in_shape, out_shape)
    if thickness == "spacing":
        thickness = spacing[axis]
    elif isinstance(thickness, str):
        raise InputError(f"slice thickness must be a number of mm or 'spacing', got {thickness!r}")
    operators: list[AxisOperator] = [consistency] * 3
    operators[axis] = SliceModel.from_mm(thickness, spacing[axis] * in_shape[axis] / out_shape[axis], profile,
                                         correction)
    return operators[0], operators[1], operators[2]


@lru_cache(maxsize=64)
def right_inverse(operator: AxisOperator, n: int, m: int) -> torch.Tensor:
    """``(n, m)`` float64 right inverse of the operator's ``(m, n)`` matrix ``A`` on one axis, which lifts a
    residual to a correction: Moore-Penrose's (the least-squares correction), or for a slice model with
    ``smooth`` correction ``B (A B)^-1``, ``B`` linear interpolation from the slice centres. Both give
    ``A P = I``, hence exact consistency; the second spreads a slice's residual as ramps between slice
    centres instead of a constant over the slice. Slices much thicker than their spacing make ``A B``
    nearly singular (above :data:`MAX_SMOOTH_CONDITION`): those keep the least-squares lift."""
    matrix = axis_matrix(operator, n, m)
    if isinstance(operator, SliceModel) and operator.correction == "smooth" and m < n:
        between = resampling_matrix("linear", m, n)
        square = matrix @ between
        if torch.linalg.cond(square) <= MAX_SMOOTH_CONDITION:
            return between @ torch.linalg.inv(square)
    return torch.linalg.pinv(matrix)


def _slabs(rows: int, voxels_per_row: int):
    step = max(1, SLAB_VOXELS // max(1, voxels_per_row))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def degrade_volume(volume: np.ndarray, lr_shape, operator: Operator) -> np.ndarray:
    """``A y``: the degradation of ``volume`` to ``lr_shape`` (float32), computed slab by slab."""
    y = torch.from_numpy(np.asarray(volume, dtype=np.float32))
    big, small = y.shape, tuple(int(n) for n in lr_shape)
    a0, a1, a2 = (axis_matrix(op, big[d], small[d]) for d, op in enumerate(axis_operators(operator)))
    inner = torch.empty((big[0], small[1], small[2]), dtype=torch.float32)
    for rows in _slabs(big[0], big[1] * big[2]):
        inner[rows] = apply_along_axis(apply_along_axis(y[rows], a2, 2), a1, 1)
    return apply_along_axis(inner, a0, 0).numpy()


def _projection(volume: np.ndarray, lr: np.ndarray, operator: Operator) -> np.ndarray:
    big, small = volume.shape, lr.shape
    residual = torch.from_numpy(lr - degrade_volume(volume, small, operator))
    p0, p1, p2 = (right_inverse(op, big[d], small[d]) for d, op in enumerate(axis_operators(operator)))
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
    operator: Operator = DEFAULT_CONSISTENCY,
    floor: float | None = None,
    iterations: int = FLOOR_ITERATIONS,
) -> np.ndarray:
    """The closest array to ``volume`` (least squares; along a slice axis with ``smooth`` correction, the
    oblique projection of :func:`right_inverse`) whose ``operator`` degradation equals ``lr``.

    ``volume`` is on the output grid of ``lr`` (``arssr.geometry``); both are
    intensities in the same units. With a ``floor`` (0 for MR magnitudes,
    which the ringing of a k-space projection would take below zero),
    projection and clipping alternate (POCS) until clipping moves no voxel by
    more than ``FLOOR_TOLERANCE`` of the input's range or ``iterations`` are
    done, and the result is clipped: it lies above the floor and degrades to
    ``lr`` up to that tolerance. Returns a new float32 array; neither input
    is changed. ``operator="none"`` returns a float32 copy of ``volume``.
    ``operator`` may give one operator per axis (``arssr.degrade.Operator``).
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
    if volume.shape == lr.shape and not any(isinstance(op, SliceModel) for op in axis_operators(operator)):
        # A = I: the input itself, bit for bit
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


def correction_bands(correction: np.ndarray, lr_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``correction`` split at :data:`BAND_SPLIT` of the input's Nyquist frequency (radially, the frequency along
    each axis divided by the input's on that axis); the two float32 bands add up to ``correction``."""
    from scipy import fft

    shape = correction.shape
    spectrum = fft.rfftn(np.asarray(correction, dtype=np.float32))
    radius2 = np.zeros(spectrum.shape, dtype=np.float32)
    for axis, (n, m) in enumerate(zip(shape, lr_shape)):
        freq = fft.rfftfreq(n) if axis == len(shape) - 1 else np.abs(fft.fftfreq(n))
        view = [1] * len(shape)
        view[axis] = -1
        radius2 += ((2 * freq * n / m) ** 2).astype(np.float32).reshape(view)
    spectrum[radius2 >= BAND_SPLIT**2] = 0
    low = fft.irfftn(spectrum, s=shape).astype(np.float32)
    return low, np.asarray(correction, dtype=np.float32) - low


def projection_bands(volume: np.ndarray, lr: np.ndarray, operator: Operator) -> tuple[np.ndarray, np.ndarray]:
    """The correction that projects ``volume`` onto ``lr`` (:func:`project`, no floor), split by
    :func:`correction_bands`."""
    return correction_bands(project(volume, lr, operator) - np.asarray(volume, dtype=np.float32), np.shape(lr))


def sum_of_products(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of ``a * b`` accumulated in float64 one index of axis 0 at a time (no float64 copy of the arrays)."""
    return float(sum(np.dot(x.ravel().astype(np.float64), y.ravel().astype(np.float64)) for x, y in zip(a, b)))


def fit_band_weights(volume: np.ndarray, bands: Sequence[np.ndarray], reference: np.ndarray) -> tuple[float, float]:
    """The weights of :func:`weighted_projection` that bring ``volume`` closest to ``reference`` (least squares,
    before any floor; rounded to :data:`WEIGHT_DECIMALS`, within :data:`MAX_WEIGHT`), ``bands`` being
    :func:`projection_bands` of ``volume``: an encoder that knows the original fits them, and when the input
    carries coding errors they are below 1 where the errors outweigh its information."""
    target = np.asarray(reference, dtype=np.float32) - np.asarray(volume, dtype=np.float32)
    gram = np.array([[sum_of_products(a, b) for b in bands] for a in bands])
    weights = np.linalg.lstsq(gram, np.array([sum_of_products(a, target) for a in bands]), rcond=None)[0]
    low, high = (round(float(np.clip(w, -MAX_WEIGHT, MAX_WEIGHT)), WEIGHT_DECIMALS) for w in weights)
    return low, high


def weighted_projection(volume: np.ndarray, lr: np.ndarray, operator: Operator, weights: Sequence[float],
                        floor: float | None = None) -> np.ndarray:
    """``volume`` plus its projection's correction weighted per band (:func:`projection_bands`: ``weights`` for
    the low and the high band), clipped once at ``floor``.

    Weights ``(1, 1)`` give the projection itself, but with one clipping
    instead of the alternating floor rounds of :func:`project`; smaller
    weights trust the input less than exact consistency does. Returns a new
    float32 array.
    """
    check_operator(operator)
    if operator == "none":
        raise InputError("weighted consistency needs an operator, not 'none'")
    low, high = projection_bands(volume, lr, operator)
    out = np.asarray(volume, dtype=np.float32) + np.float32(weights[0]) * low + np.float32(weights[1]) * high
    return out if floor is None else np.maximum(out, floor, out=out)
