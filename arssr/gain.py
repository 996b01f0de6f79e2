"""The detail gain: how much of the network's detail over the interpolation that matches the consistency
operator the output keeps, fitted on examples the input makes of itself (also those of self-adaptation).

``arssr.inference.upsample`` applies it; ``arssr.adapt`` trains on the same self-examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from arssr import geometry
from arssr.consistency import project
from arssr.degrade import Operator, SliceModel, axis_operators, resample
from arssr.errors import InputError
from arssr.models import ArSSR
from arssr.models.tiling import super_resolve
from arssr.protocol import CUBIC_GAIN, DEGRADATION_INTERPOLATIONS

#: Largest detail gain that ``gain="auto"`` chooses.
MAX_GAIN = 2.0
#: Largest scale by which the detail gain's self-example degrades the input: at the input's own x3.2 the fit
#: overshot on the macaque (gain 0.84 where 0.25 was best; 1.5 gave 0.41, docs/history.md).
GAIN_SELF_SCALE = 1.5


def fits_gain(consistency: str, slice_thickness: float | str | None) -> bool:
    """Whether ``gain="auto"`` fits the gain on the input: with any consistency operator but ``none``, and
    with ``cubic`` only for thick slices (their in-plane examples are not sampled once more); otherwise
    it is :data:`CUBIC_GAIN`."""
    return consistency != "none" and (consistency != "cubic" or slice_thickness is not None)


def auto_gain(model: ArSSR, lr: np.ndarray, scale: Sequence[float], operator: Operator, device: torch.device,
              consistency: str, slice_thickness: float | str | None) -> float:
    """``gain="auto"`` on ``lr`` (model space): :func:`detail_gain`, or :data:`CUBIC_GAIN` where
    :func:`fits_gain` is false."""
    if not fits_gain(consistency, slice_thickness):
        return CUBIC_GAIN
    return detail_gain(model, lr, scale, operator, device)


def self_example(lr: np.ndarray, scale: Sequence[float], operator: Operator) -> np.ndarray | None:
    """``lr`` degraded once more by ``scale`` with ``operator`` (float32), or ``None`` when too small for it."""
    from arssr.degrade import degrade

    small = geometry.output_shape(lr.shape, [1 / k for k in scale])
    if min(small) < 2:
        return None
    return degrade(torch.from_numpy(np.asarray(lr, dtype=np.float64)), small, operator).numpy().astype(np.float32)


@dataclass(frozen=True)
class SelfView:
    """One way of making examples from the input: its axes in ``order`` (``lr.transpose(order)``), degraded
    once more by ``scale`` with ``operator`` (both in that order)."""

    order: tuple[int, int, int]
    scale: tuple[float, float, float]
    operator: Operator


def self_views(scale: Sequence[float], operator: Operator) -> list[SelfView]:
    """The views that make examples from the input (model axis order).

    The input's own degradation applied once more (ZSSR); for thick slices,
    each in-plane axis in turn swapped with the slice axis and degraded by
    the slice model at the slice axis' scale, the other axes kept (SMORE), so
    the examples are thinned along the same model axis as the input's slices.
    """
    per_axis = axis_operators(operator)
    thick = [a for a, entry in enumerate(per_axis) if isinstance(entry, SliceModel)]
    if not thick:
        return [SelfView((0, 1, 2), tuple(float(k) for k in scale), operator)]
    axis = thick[0]
    views = []
    for plane in (a for a in range(3) if a != axis):
        order = [0, 1, 2]
        order[plane], order[axis] = axis, plane
        views.append(SelfView(tuple(order), tuple(float(scale[axis]) if a == axis else 1.0 for a in range(3)),
                              operator))
    return views


def interpolation(lr: np.ndarray, shape: Sequence[int], operator: Operator) -> np.ndarray:
    """``lr`` upsampled to ``shape`` (float32) by the interpolation that matches the consistency ``operator``
    (:data:`arssr.protocol.DEGRADATION_INTERPOLATIONS`; cubic along thick slices): what a detail gain of 0
    gives, once projected."""
    operators = (operator,) * 3 if isinstance(operator, str) else axis_operators(operator)
    for entry in operators:
        if isinstance(entry, str) and entry not in DEGRADATION_INTERPOLATIONS:
            raise InputError(f"no interpolation matches the consistency operator {entry!r}; known: "
                             f"{', '.join(DEGRADATION_INTERPOLATIONS)}")
    per_axis = tuple(DEGRADATION_INTERPOLATIONS[entry] if isinstance(entry, str) else "cubic" for entry in operators)
    return resample(torch.from_numpy(np.asarray(lr, dtype=np.float32)), tuple(shape), per_axis).numpy()


def detail_gain(model: ArSSR, lr: np.ndarray, scale: Sequence[float], operator: Operator, device: torch.device,
                self_scale: float = GAIN_SELF_SCALE) -> float:
    """Least-squares gain of the network's detail, fitted on the input itself (model space).

    The input, degraded once more by ``scale`` but at most by ``self_scale``
    per axis, is super-resolved back to the input's
    grid and projected; the gain ``g`` that makes ``b + g d`` closest to the
    input (``b``: the projected :func:`interpolation` of the degraded input,
    ``d``: what the projection keeps of the network's output minus ``b``) is
    returned, clipped to ``[0, MAX_GAIN]``; 1 when the input is too small to
    degrade. Costs one SR of a volume up to ``self_scale^3`` times smaller
    than the input. For thick slices the examples are the in-plane views of
    :func:`self_views` at the slices' own scale, pooled: two SRs of the
    input's size.
    """

    views = self_views(scale, operator)
    if len(views) == 1:
        views = [SelfView(views[0].order, tuple(min(k, self_scale) for k in scale), operator)]
    product = energy = 0.0
    for view in views:
        image = np.ascontiguousarray(lr.transpose(view.order))
        low = self_example(image, view.scale, view.operator)
        if low is None:
            return 1.0
        estimate = super_resolve(low, model, image.shape, device=device)
        base = project(interpolation(low, image.shape, view.operator), low, view.operator)
        detail = project(estimate, low, view.operator) - base
        product += float(np.sum(detail * (image - base), dtype=np.float64))
        energy += float(np.sum(detail.astype(np.float64) ** 2))
    if energy == 0:
        return 1.0
    return float(np.clip(product / energy, 0.0, MAX_GAIN))
