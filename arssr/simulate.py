"""Simulated LR inputs of a ground truth, on the FOV-preserving grid of ``arssr.geometry``.

Thick-slice protocol (:func:`simulate_thick_slices`): the ground truth's
slices along one axis, ``thickness`` mm thick, spaced ``n / m`` HR voxels
with ``m = round(n / thickness in voxels)``; the other axes untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from arssr import geometry
from arssr.degrade import SliceModel, degrade
from arssr.volume import Volume


def simulate_lr(hr: Volume, scale: float | Sequence[float], degradation: str) -> Volume:
    """Low-resolution version of ``hr`` with ``round(n / k)`` voxels per axis, on the FOV-preserving grid."""
    factors = geometry.parse_triple(scale if not isinstance(scale, (int, float)) else float(scale), "scale")
    shape = geometry.output_shape(hr.shape, [1.0 / k for k in factors])
    lr = degrade(torch.from_numpy(np.asarray(hr.data, dtype=np.float64)), shape, degradation)
    return Volume(lr.numpy().astype(np.float32), geometry.resampled_affine(hr.affine, hr.shape, shape))


@dataclass(frozen=True)
class ThickSlices:
    """A 2D multi-slice acquisition: slices ``thickness`` mm thick along array axis ``axis``, ``profile``,
    ``gap`` mm apart (slice spacing ``thickness + gap``)."""

    thickness: float
    axis: int
    profile: str = "boxcar"
    gap: float = 0.0

    @property
    def degradation(self) -> str:
        """The name records carry as their degradation: ``slices-boxcar``, ``slices-gaussian``."""
        return f"slices-{self.profile}"


def simulate_thick_slices(hr: Volume, slices: ThickSlices) -> Volume:
    """``hr``'s slices along ``slices.axis`` (the slice model of ``arssr.degrade``), on the FOV-preserving grid."""
    spacing = hr.spacing[slices.axis]
    model = SliceModel.from_mm(slices.thickness, spacing, slices.profile)
    shape = list(hr.shape)
    step = (slices.thickness + slices.gap) / spacing  # slice spacing in HR voxels
    shape[slices.axis] = max(1, geometry.round_half_up(hr.shape[slices.axis] / step))
    operator = tuple(model if axis == slices.axis else "kspace" for axis in range(3))  # kspace: m == n, identity
    lr = degrade(torch.from_numpy(np.asarray(hr.data, dtype=np.float64)), shape, operator)
    return Volume(lr.numpy().astype(np.float32), geometry.resampled_affine(hr.affine, hr.shape, shape))
