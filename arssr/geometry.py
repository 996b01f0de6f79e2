"""Grid geometry: output shapes, voxel-centre coordinates and resampled affines.

Every resampling in arssr uses one convention (field of view preserved):
for ``n`` input voxels and scale ``k`` on an axis, the output has
``m = round(n * k)`` voxels and output voxel ``i`` (0-based) sits at input
voxel coordinate ``(i + 0.5) * n / m - 0.5``. The outer faces of the first and
last voxels therefore stay where they were in world space.

Normalised coordinates lie in ``[-1, 1]`` and address voxel centres as
``torch.nn.functional.grid_sample(..., align_corners=False)`` does, in the
order of the array axes. :func:`to_grid_sample_order` is the one place that
reverses them for ``grid_sample``.
"""

from __future__ import annotations

import math
from typing import Sequence

import nibabel as nib
import numpy as np
import torch

from arssr.errors import InputError

#: NIfTI-1 stores each dimension as a signed 16-bit integer.
MAX_NIFTI_DIM = 32767

Triple = tuple[float, float, float]


def parse_triple(text: str | float | Sequence[float], name: str) -> Triple:
    """Read ``"3.2"``, ``"2,2,4"`` or a number/sequence as one value per axis."""
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", "").split(",") if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise InputError(f"{name} must be a number or three comma-separated numbers, got {text!r}") from None
    elif isinstance(text, (int, float)):
        values = [float(text)]
    else:
        values = [float(v) for v in text]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"{name} needs 1 or 3 values, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{name} must be finite, got {values}")
    return (values[0], values[1], values[2])


def round_half_up(x: float) -> int:
    """Round to nearest, halves up (Python's ``round`` rounds halves to even)."""
    return int(math.floor(x + 0.5 + 1e-9))


def output_shape(in_shape: Sequence[int], scale: Sequence[float]) -> tuple[int, int, int]:
    """``round(n * k)`` voxels per axis."""
    return tuple(round_half_up(n * k) for n, k in zip(in_shape, scale))  # type: ignore[return-value]


def scale_for_voxel_size(spacing: Sequence[float], voxel_size: Sequence[float]) -> Triple:
    """Scale per axis that brings ``spacing`` (mm) to ``voxel_size`` (mm)."""
    if any(v <= 0 for v in voxel_size):
        raise InputError(f"voxel size must be positive, got {tuple(voxel_size)}")
    return tuple(float(s) / float(v) for s, v in zip(spacing, voxel_size))  # type: ignore[return-value]


def check_scale(scale: Sequence[float]) -> None:
    """Upsampling only: every axis needs a scale of at least 1."""
    if any(k < 1 for k in scale):
        raise InputError(
            f"scale must be >= 1 on every axis (1 keeps an axis as it is), got {tuple(round(k, 6) for k in scale)}"
        )


def check_output_shape(shape: Sequence[int]) -> None:
    if any(m > MAX_NIFTI_DIM for m in shape):
        shown = ", ".join(f"{m}" if m <= MAX_NIFTI_DIM else f"{m:.3g}" for m in shape)
        raise InputError(f"output shape ({shown}) exceeds the NIfTI limit of {MAX_NIFTI_DIM} voxels per axis")


def source_coordinates(n: int, m: int) -> np.ndarray:
    """Input voxel coordinate of each of ``m`` output voxels over ``n`` input voxels."""
    return (np.arange(m, dtype=np.float64) + 0.5) * (n / m) - 0.5


def normalized_centres(m: int) -> np.ndarray:
    """Voxel centres of an ``m``-voxel axis in ``[-1, 1]`` (``align_corners=False``)."""
    return (2.0 * np.arange(m, dtype=np.float64) + 1.0) / m - 1.0


def voxel_to_normalized(coords: np.ndarray | torch.Tensor, n: int):
    """Voxel coordinate on an ``n``-voxel axis -> normalised coordinate."""
    return (2.0 * coords + 1.0) / n - 1.0


def grid_coordinates(shape: Sequence[int]) -> torch.Tensor:
    """Normalised voxel-centre coordinates of a whole grid, shape ``(*shape, 3)``, array-axis order."""
    axes = [torch.from_numpy(normalized_centres(m)).float() for m in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def to_grid_sample_order(coords: torch.Tensor) -> torch.Tensor:
    """Array-axis order ``(d0, d1, d2)`` -> ``grid_sample``'s ``(x, y, z) = (d2, d1, d0)``."""
    return coords.flip(-1)


def resampled_affine(affine: np.ndarray, in_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
    """Affine of the output grid: ``affine @ [[n/m, 0, 0, (n/m - 1)/2], ...]``."""
    step = np.array([n / m for n, m in zip(in_shape, out_shape)], dtype=np.float64)
    voxel_map = np.eye(4)
    voxel_map[:3, :3] = np.diag(step)
    voxel_map[:3, 3] = (step - 1.0) / 2.0
    return np.asarray(affine, dtype=np.float64) @ voxel_map


def spacing_of(affine: np.ndarray) -> Triple:
    """Voxel spacing (mm) along each array axis: column norms of the affine."""
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return (float(norms[0]), float(norms[1]), float(norms[2]))


def ras_orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel's orientation ``(axis, flip)`` per array axis that brings the array closest to RAS."""
    return nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))


def to_ras_order(data: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """The array flipped and transposed to RAS axis order (a view where possible)."""
    return nib.orientations.apply_orientation(data, orientation)


def to_ras_axes(values: Sequence, orientation: np.ndarray) -> tuple:
    """Per-axis values (a shape, scales) of an array's axes, in the order :func:`to_ras_order` gives them."""
    out = [None, None, None]
    for value, (axis, _) in zip(values, orientation):
        out[int(axis)] = value
    return tuple(out)


def from_ras_order(data: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_ras_order`: back to the file's own axis order."""
    ras = nib.orientations.axcodes2ornt("RAS")
    return nib.orientations.apply_orientation(data, nib.orientations.ornt_transform(ras, orientation))
