"""Super-resolution of whole volumes, the library's front door: a volume (or file) and a model in, a volume out.

:func:`upsample` orients the input for the network (``arssr.models.space``), runs the tiling engine
(``arssr.models.tiling``: bounded memory), applies the consistency projection and the detail gain
(``arssr.consistency``, ``arssr.gain``) and returns the result with its geometry (``arssr.geometry``).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from arssr import geometry
from arssr.adapt import AdaptOptions, AdaptReport, adapt_prior_to, adapt_request
from arssr.consistency import degrade_volume, project
from arssr.degrade import Operator
from arssr.device import free_memory_bytes, resolve_device
from arssr.errors import InputError
from arssr.gain import auto_gain, interpolation
from arssr.models import ArSSR
from arssr.models.card import warn_outside_card
from arssr.models.planes import (TRAINED_SPACING, PlanePrior, installed_prior_path, load_prior, shipped_prior,
                                 through_plane)
from arssr.models.tiling import DEFAULT_CHUNK, super_resolve
from arssr.protocol import DEFAULT_CONSISTENCY, DEFAULT_GAIN, DEFAULT_PRIOR_MIRRORS, DEFAULT_SLICE_CORRECTION
from arssr.request import Request, prepare
from arssr.volume import Volume

#: Share of the intensity window around its low end that still counts as empty background.
EMPTY_TOLERANCE = 0.01


def check_memory(out_shape: Sequence[int]) -> None:
    """Refuse outputs whose float32 array would not fit in the free RAM."""
    geometry.check_output_shape(out_shape)
    need = 4 * math.prod(out_shape)
    free = free_memory_bytes(torch.device("cpu"))
    if need > free:
        raise InputError(
            f"output {tuple(out_shape)} needs {need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB of memory is free; "
            "use a smaller scale or a larger voxel size"
        )


@dataclass(frozen=True)
class Upsampled:
    """What :func:`upsample` made and used: the ``volume``; the detail ``gain`` applied (``None`` without
    consistency); the consistency ``residual`` before the projection, the input minus the degradation of the
    output that was projected (the input's grid and axes, intensity units: where the estimate disagreed with
    the input; ``None`` without consistency); the ``estimator`` of the detail (``model``, ``plane prior``, or
    ``none`` for a constant input); the consistency ``operator`` projected onto, in the file's axis order
    (``arssr.degrade.Operator``: a name, or per axis with the slice model along thick slices); with
    adaptation, its ``adaptation`` report and the estimator it ``adapted`` (the fine-tuned copy when kept,
    else the one given)."""

    volume: Volume
    gain: float | None
    residual: np.ndarray | None
    estimator: str
    operator: Operator
    adaptation: AdaptReport | None = None
    adapted: ArSSR | PlanePrior | None = None


def upsample(
    volume: Volume | str | os.PathLike,
    model: ArSSR | str | os.PathLike | None = None,
    scale: float | str | Sequence[float] | None = None,
    voxel_size: float | str | Sequence[float] | None = None,
    tile: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
    consistency: str = DEFAULT_CONSISTENCY,
    gain: float | str = DEFAULT_GAIN,
    slice_thickness: float | str | None = None,
    slice_profile: str = "boxcar",
    slice_correction: str = DEFAULT_SLICE_CORRECTION,
    details: bool = False,
    plane_prior: PlanePrior | str | os.PathLike | None = "auto",
    adapt: AdaptOptions | None = None,
    prior_mirrors: int = DEFAULT_PRIOR_MIRRORS,
) -> Volume | Upsampled:
    """Super-resolve a volume by ``scale`` (per axis allowed) or to ``voxel_size`` mm.

    The field of view is preserved (see ``arssr.geometry``); the result has
    the input's header codes, as float32. The network sees the array in RAS
    axis order whatever the file's orientation, so every orientation of one
    volume gives the same result in world space. ``consistency`` names the
    degradation that the output is projected onto (``arssr.consistency``;
    kept non-negative when the input is); ``none`` keeps the network's
    output, clipped to the input's intensity range. ``slice_thickness`` (mm,
    or ``"spacing"``) declares a 2D multi-slice input: along its coarsest
    axis the projection uses the slice model (``slice_profile``: ``boxcar``
    or ``gaussian``, ``arssr.degrade.SliceModel``) instead of ``consistency``, its residual spread as
    ``slice_correction`` says (``arssr.protocol.SLICE_CORRECTIONS``: ``smooth`` leaves no steps at slice
    boundaries). Where thick slices are the only axis upsampled, ``plane_prior`` (``auto``: the shipped one;
    ``None``: none) makes the estimate instead of the model, as the mean over ``prior_mirrors`` mirrored
    copies (:func:`arssr.models.planes.through_plane`).
    ``gain`` scales the detail that the network adds to the interpolation
    that matches the consistency operator (``arssr.gain.interpolation``: zero-filled
    k-space for ``kspace``); ``auto`` (the default) fits it on the input
    itself (``arssr.gain.detail_gain``, from in-plane examples with a slice
    model), or, with ``cubic`` consistency and no thick slices, takes
    ``arssr.protocol.CUBIC_GAIN`` (``arssr.gain.auto_gain``).
    Without consistency it plays no part. ``adapt`` first fine-tunes a copy of whichever estimator is used
    to the input (``arssr.adapt``), kept only if it scores better on held-out data (a constant input is
    returned as it is, unadapted). With ``details``,
    returns an :class:`Upsampled`: the volume with what was used.
    """
    request = prepare(volume, model, scale, voxel_size, consistency, slice_thickness, slice_profile,
                      slice_correction)
    return upsample_request(request, tile=tile, device=device, precision=precision, chunk=chunk,
                            progress=progress, gain=gain, details=details, plane_prior=plane_prior, adapt=adapt,
                            prior_mirrors=prior_mirrors)


def upsample_request(
    request: Request,
    tile: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
    gain: float | str = DEFAULT_GAIN,
    details: bool = False,
    plane_prior: PlanePrior | str | os.PathLike | None = "auto",
    adapt: AdaptOptions | None = None,
    prior_mirrors: int = DEFAULT_PRIOR_MIRRORS,
) -> Volume | Upsampled:
    """:func:`upsample` of a request made once by :func:`arssr.request.prepare`."""
    volume, space, lr, consistency = request.volume, request.space, request.lr, request.consistency
    out_shape = request.out_shape
    check_memory(out_shape)
    device = resolve_device(device)

    affine = geometry.resampled_affine(volume.affine, volume.shape, out_shape)
    low, high = request.range
    residual = None if consistency == "none" else np.zeros(volume.shape, dtype=np.float32)
    if request.constant:  # a constant volume has nothing to resolve, and every projection keeps it
        constant = Volume(np.full(out_shape, low, dtype=np.float32), affine, volume.header)
        return (Upsampled(constant, None if consistency == "none" else 1.0, residual, "none", request.operator)
                if details else constant)
    operator = request.model_operator
    prior = plane_prior_for(request, plane_prior)
    model, adaptation, adapted = request.model, None, None
    base = None  # the interpolation that a detail gain of 0 gives, once made
    if prior is not None:
        if adapt is not None:
            prior, adaptation = adapt_prior_to(request, prior, adapt)
            adapted = prior
        result, base = prior_estimate(request, prior, prior_mirrors)
        gain, estimator = (1.0 if gain == "auto" else gain), "plane prior"
    else:
        if adapt is not None:
            model, adaptation = adapt_request(request, adapt, device, progress)
            adapted = model
        estimator = "model"
        warn_outside_card(model, volume.spacing, request.factors)
        result = super_resolve(lr, model, space.axes(out_shape), tile=tile, device=device, precision=precision,
                               chunk=chunk, progress=progress)
    result[empty_background(lr, result.shape)] = 0.0
    if consistency == "none":
        data, gain = space.from_model(result, clip=(low, high)), None
    else:
        if gain == "auto":
            gain = auto_gain(model, lr, space.axes(request.factors), operator, device, consistency,
                             request.slice_thickness)
        if gain != 1:
            base = interpolation(lr, result.shape, operator) if base is None else base
            result -= base  # in place: base + gain (result - base) with one output-sized array more
            result *= float(gain)
            result += base
        floor = space.intensity(0.0) if low >= 0 else None
        if details:
            width = space.window[1] - space.window[0]
            residual = space.from_model_axes((lr - degrade_volume(result, lr.shape, operator)) * np.float32(width))
        data = space.from_model(project(result, lr, operator, floor))
    result = Volume(data, affine, volume.header)
    return (Upsampled(result, None if gain is None else float(gain), residual, estimator, request.operator,
                      adaptation, adapted)
            if details else result)


def prior_estimate(request: Request, prior: PlanePrior,
                   mirrors: int = DEFAULT_PRIOR_MIRRORS) -> tuple[np.ndarray, np.ndarray]:
    """``(estimate, interpolation)`` in model space: the plane prior's estimate of a request whose thick
    slices are the only axis upsampled (over ``mirrors`` mirrored copies), and the interpolation along the
    slices that it restores."""
    lr, operator, axis = request.lr, request.model_operator, request.slice_axis()
    axes = request.space.axes(request.out_shape)
    spacing = axes[axis] / lr.shape[axis]
    low_spacing, high_spacing = TRAINED_SPACING
    if not 0.95 * low_spacing <= spacing <= 1.05 * high_spacing:
        warnings.warn(f"slice spacing of {spacing:.3g} output voxels is outside the {low_spacing:g}-"
                      f"{high_spacing:g} the plane prior was trained on; results may be poor", stacklevel=3)
    base = interpolation(lr, axes, operator)
    return through_plane(prior, base, axis, spacing, operator[axis].thickness, mirrors), base


def resolve_plane_prior(plane_prior: PlanePrior | str | os.PathLike | None) -> PlanePrior | None:
    """The prior that ``plane_prior`` names: itself, the file's, or for ``auto`` the shipped one (``None`` when it
    is not installed)."""
    if plane_prior is None or isinstance(plane_prior, PlanePrior):
        return plane_prior
    if plane_prior == "auto":
        return shipped_prior() if installed_prior_path() is not None else None
    return load_prior(plane_prior)


def plane_prior_for(request: Request, plane_prior: PlanePrior | str | os.PathLike | None = "auto") -> PlanePrior | None:
    """The prior that makes :func:`upsample`'s estimate for ``request``, or ``None`` (the model makes it): one
    where thick slices are the only axis upsampled and ``plane_prior`` names one (``auto``: the shipped one,
    when installed)."""
    if plane_prior is None or request.slice_axis() is None:
        return None
    return resolve_plane_prior(plane_prior)


def fitted_gain(
    volume: Volume | str | os.PathLike,
    model: ArSSR | str | os.PathLike | None = None,
    scale: float | str | Sequence[float] | None = None,
    voxel_size: float | str | Sequence[float] | None = None,
    consistency: str = DEFAULT_CONSISTENCY,
    slice_thickness: float | str | None = None,
    slice_profile: str = "boxcar",
    device: str | torch.device = "auto",
    slice_correction: str = DEFAULT_SLICE_CORRECTION,
    plane_prior: PlanePrior | str | os.PathLike | None = "auto",
) -> float:
    """The detail gain that :func:`upsample` uses with ``gain="auto"`` and the same arguments
    (``arssr.gain.auto_gain``); 1 for a constant volume and where the plane prior makes the estimate. Pass it
    as ``gain`` to upsample parts of a volume (or several times) with the whole volume's gain."""
    request = prepare(volume, model, scale, voxel_size, consistency, slice_thickness, slice_profile,
                      slice_correction)
    if consistency == "none":
        raise InputError("a detail gain needs a consistency operator, not none")
    if request.constant or plane_prior_for(request, plane_prior) is not None:
        return 1.0
    return auto_gain(request.model, request.lr, request.space.axes(request.factors), request.model_operator,
                     resolve_device(device), consistency, slice_thickness)


def empty_background(lr: np.ndarray, out_shape: Sequence[int]) -> np.ndarray:
    """Output voxels whose nearest input voxel and its 26 neighbours are all within :data:`EMPTY_TOLERANCE` of
    the intensity window's low end (``lr`` in model space, where the window spans 0 to 1).

    Outside the anatomy of a brain-extracted or defaced input, only the
    input's own faint ringing remains; the network (a residual one above all)
    would add structure there, so the output is set to the window's low end
    before the consistency projection, which restores what the input holds.
    """
    from scipy import ndimage

    near_low = np.abs(lr) <= EMPTY_TOLERANCE
    empty = ndimage.binary_erosion(near_low, np.ones((3, 3, 3), dtype=bool), border_value=1)
    nearest = [np.minimum((np.arange(n) + 0.5) * m / n, m - 1).astype(np.intp) for n, m in zip(out_shape, lr.shape)]
    return empty[np.ix_(*nearest)]


def example_volume_path() -> Path:
    """The sample LR volume shipped with the package (MNI152 2009a T1 at 3 mm; see its NOTICE)."""
    from importlib import resources

    return Path(str(resources.files("arssr.data"))) / "mni152_t1_3mm.nii.gz"
