"""One upsampling request, resolved once from the user's arguments.

:func:`prepare` loads and checks what :func:`arssr.inference.upsample`, the detail-gain fit
(:func:`arssr.inference.fitted_gain`) and self-adaptation (``arssr.adapt``) all need: the volume and the
model, the per-axis scale, the consistency operator (with the slice model along thick slices), and the
input brought to the model's space (RAS, the model's axis order and intensity window) once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from arssr import geometry
from arssr.consistency import check_operator, slice_consistency
from arssr.degrade import Operator, SliceModel
from arssr.errors import InputError
from arssr.models import ArSSR, load_model
from arssr.models.space import ModelSpace
from arssr.protocol import DEFAULT_CONSISTENCY, DEFAULT_SLICE_CORRECTION
from arssr.volume import Volume, load_volume


def resolve_scale(volume: Volume, scale=None, voxel_size=None) -> geometry.Triple:
    """The per-axis scale from exactly one of ``scale`` and ``voxel_size`` (mm); each must be >= 1."""
    if (scale is None) == (voxel_size is None):
        raise InputError("give exactly one of scale and voxel_size")
    if scale is not None:
        factors = geometry.parse_triple(scale, "scale")
    else:
        factors = geometry.scale_for_voxel_size(volume.spacing, geometry.parse_triple(voxel_size, "voxel size"))
    geometry.check_scale(factors)
    return factors


@dataclass(frozen=True, eq=False)
class Request:
    """A checked request: the ``volume`` and ``model``, the per-axis scale ``factors`` (file axes), the
    ``consistency`` named and the ``operator`` made of it (file axis order; with a
    :class:`~arssr.degrade.SliceModel` along the slice axis when ``slice_thickness`` declares thick slices),
    the model ``space`` and the input in it (``lr``: normalised, model axis order), and the input's intensity
    ``range``."""

    volume: Volume
    model: ArSSR
    factors: geometry.Triple
    consistency: str
    operator: Operator
    slice_thickness: float | str | None
    space: ModelSpace
    lr: np.ndarray
    range: tuple[float, float]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """The output grid (file axes)."""
        return geometry.output_shape(self.volume.shape, self.factors)

    @property
    def model_operator(self) -> Operator:
        """:attr:`operator` in model axis order."""
        return self.operator if isinstance(self.operator, str) else self.space.axes(self.operator)

    @property
    def constant(self) -> bool:
        """Whether the input holds one value only (nothing to resolve)."""
        return self.range[0] == self.range[1]

    def slice_axis(self) -> int | None:
        """The model-space axis of thick slices when it is the only axis that changes size, else ``None``."""
        operator = self.model_operator
        if isinstance(operator, str):
            return None
        thick = [a for a, entry in enumerate(operator) if isinstance(entry, SliceModel)]
        upsampled = [a for a, (n, m) in enumerate(zip(self.lr.shape, self.space.axes(self.out_shape))) if n != m]
        return thick[0] if len(thick) == 1 and upsampled == thick else None


def prepare(
    volume: Volume | str | os.PathLike,
    model: ArSSR | str | os.PathLike | None = None,
    scale: float | str | Sequence[float] | None = None,
    voxel_size: float | str | Sequence[float] | None = None,
    consistency: str = DEFAULT_CONSISTENCY,
    slice_thickness: float | str | None = None,
    slice_profile: str = "boxcar",
    slice_correction: str = DEFAULT_SLICE_CORRECTION,
) -> Request:
    """The :class:`Request` of :func:`arssr.inference.upsample`'s arguments (the same meanings), loaded and
    checked; ``model=None`` is the shipped default."""
    if not isinstance(volume, Volume):
        volume = load_volume(volume)
    if not isinstance(model, ArSSR):
        model = load_model(model)
    check_operator(consistency)
    factors = resolve_scale(volume, scale, voxel_size)
    operator: Operator = consistency
    if slice_thickness is not None:
        operator = slice_consistency(consistency, volume.spacing, volume.shape,
                                     geometry.output_shape(volume.shape, factors), slice_thickness, slice_profile,
                                     slice_correction)
    space = ModelSpace.of(volume.data, volume.affine, model)
    return Request(volume, model, factors, consistency, operator, slice_thickness, space,
                   space.to_model(volume.data), (float(volume.data.min()), float(volume.data.max())))
