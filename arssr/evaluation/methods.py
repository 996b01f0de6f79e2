"""The methods an evaluation compares: interpolation baselines, ANTs B-splines and SR models.

A method is a callable ``(lr: Volume, hr_shape) -> Volume`` that upsamples
an LR volume of ``m = round(n / k)`` voxels by ``n / m`` per axis, onto the
ground truth's own grid (docs/explanation/geometry.md), so no method is
compared on a shifted grid. On thick-slice cases it is called with a third
argument, the acquisition (:class:`arssr.simulate.ThickSlices`) that made
``lr``, for the methods that model it (``+dc:slice``). :func:`method` builds
one from a name or a weights file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from arssr import geometry
from arssr.adapt import AdaptOptions
from arssr.consistency import project, slice_consistency
from arssr.degrade import resample
from arssr.errors import InputError
from arssr.inference import upsample
from arssr.models import ArSSR, load_model
from arssr.protocol import (BASELINES, CONSISTENCY_OPERATORS, DEFAULT_CONSISTENCY, DEFAULT_PRIOR_MIRRORS,
                            DEFAULT_SLICE_CORRECTION, METHODS, SLICE_CONSISTENCY, SLICE_CORRECTIONS)
from arssr.simulate import ThickSlices
from arssr.volume import Volume

Method = Callable[..., Volume]
#: Self-adaptation time of ``+adapt`` without a value.
DEFAULT_ADAPT_SECONDS = 60.0


def on_hr_grid(lr: Volume, data: np.ndarray) -> Volume:
    """``data``, an upsampling of ``lr`` to its shape, as a volume on the FOV-preserving grid of ``lr``."""
    return Volume(data, geometry.resampled_affine(lr.affine, lr.shape, data.shape), lr.header)


def baseline(name: str) -> Method:
    """Interpolation back to ``hr_shape`` (:data:`BASELINES`), clipped to the LR's intensity range.

    Per axis, so along the slice axis only for thick slices; ``slices`` is not needed.
    """
    kind = BASELINES[name]

    def run(lr: Volume, hr_shape: tuple[int, int, int], slices: ThickSlices | None = None) -> Volume:
        out = resample(torch.from_numpy(np.asarray(lr.data, dtype=np.float64)), hr_shape, kind).numpy()
        return on_hr_grid(lr, np.clip(out, lr.data.min(), lr.data.max()).astype(np.float32))

    return run


def consistent(run: Method, consistency: str) -> Method:
    """``run``'s output projected onto its LR input through ``consistency`` (``arssr.consistency``; non-negative
    when the LR is), or, for ``slice``, through the slice model of the case's thick slices."""
    def projected(lr: Volume, hr_shape: tuple[int, int, int], slices: ThickSlices | None = None) -> Volume:
        if consistency != SLICE_CONSISTENCY:
            operator = consistency
        elif slices is None:
            raise InputError(f"+dc:{SLICE_CONSISTENCY} needs thick-slice inputs (a slice thickness)")
        else:
            operator = slice_consistency(DEFAULT_CONSISTENCY, lr.spacing, lr.shape, hr_shape, slices.thickness,
                                         slices.profile, "orthogonal")  # the least-squares baseline
        floor = 0.0 if lr.data.min() >= 0 else None
        return on_hr_grid(lr, project(run(lr, hr_shape).data, lr.data, operator, floor))

    return projected


def ants_bspline(lr: Volume, hr_shape: tuple[int, int, int], slices: ThickSlices | None = None) -> Volume:
    """ANTs cubic B-spline resampling (``resample_image_to_target``) onto the aligned grid.

    The LR image is placed in HR voxel units: spacing ``n / m`` and origin
    ``(n / m - 1) / 2``, so LR voxel ``j`` sits at HR coordinate ``(j + 0.5) n / m - 0.5``.
    """
    import ants

    step = tuple(n / m for n, m in zip(hr_shape, lr.shape))
    source = ants.from_numpy(np.asarray(lr.data, dtype=np.float32), origin=tuple((s - 1) / 2 for s in step),
                             spacing=step)
    target = ants.from_numpy(np.zeros(hr_shape, dtype=np.float32))
    out = ants.resample_image_to_target(source, target, interp_type="bSpline").numpy()
    return on_hr_grid(lr, np.clip(out, lr.data.min(), lr.data.max()).astype(np.float32))


def model_method(
    model: ArSSR, device: str = "auto", tile: int | None = None, consistency: str = "none",
    adapt: float | None = None, gain: float | str = 1.0, slice_correction: str = DEFAULT_SLICE_CORRECTION,
    plane_prior="auto", prior_mirrors: int = DEFAULT_PRIOR_MIRRORS,
) -> Method:
    """The model through :func:`arssr.inference.upsample` with the given consistency projection and detail
    gain, after ``adapt`` seconds of self-adaptation to each input when given. ``consistency="slice"`` projects
    onto the slice model of the case's thick slices (and k-space truncation on the other axes), spreading
    each slice's residual as ``slice_correction`` says; a ``plane_prior`` (``auto``: the shipped one, ``None``:
    none) replaces the model there (``arssr.inference.upsample``, with ``prior_mirrors``), and is what adapts to
    the input."""
    def run(lr: Volume, hr_shape: tuple[int, int, int], slices: ThickSlices | None = None) -> Volume:
        options: dict = {"consistency": consistency, "gain": gain}
        if consistency == SLICE_CONSISTENCY:
            if slices is None:
                raise InputError(f"+dc:{SLICE_CONSISTENCY} needs thick-slice inputs (a slice thickness)")
            options.update(consistency=DEFAULT_CONSISTENCY, slice_thickness=slices.thickness,
                           slice_profile=slices.profile, slice_correction=slice_correction, plane_prior=plane_prior,
                           prior_mirrors=prior_mirrors)
        scale = tuple(n / m for n, m in zip(hr_shape, lr.shape))
        operator = options["consistency"] if options["consistency"] != "none" else DEFAULT_CONSISTENCY
        adapted = None if adapt is None else AdaptOptions(seconds=adapt, operator=operator)
        return upsample(lr, model, scale=scale, device=device, tile=tile, adapt=adapted, **options)

    return run


def model_options(suffixes: Sequence[str], spec: str) -> dict:
    """Keyword arguments of :func:`model_method` from a spec's ``+`` suffixes: ``dc``, ``dc:OPERATOR``,
    ``dc:slice``, ``adapt`` (60 s), ``adapt:SECONDS``, ``gain`` (``auto``: fitted on the input, or
    ``arssr.protocol.CUBIC_GAIN`` with ``dc:cubic``), ``gain:VALUE``, ``correction:orthogonal|smooth`` (with
    ``dc:slice``)."""
    options = {}
    for suffix in suffixes:
        kind, _, value = suffix.partition(":")
        if kind == "dc" and value in ("", *CONSISTENCY_OPERATORS, SLICE_CONSISTENCY):
            options["consistency"] = value or DEFAULT_CONSISTENCY
        elif kind == "adapt" and (not value or _positive(value)):
            options["adapt"] = float(value or DEFAULT_ADAPT_SECONDS)
        elif kind == "gain" and (not value or _positive(value)):
            options["gain"] = float(value) if value else "auto"
        elif kind == "correction" and value in SLICE_CORRECTIONS:
            options["slice_correction"] = value
        else:
            raise InputError(f"unknown method option {suffix!r} in {spec!r} (use +dc, +dc:OPERATOR with OPERATOR "
                             f"one of {', '.join((*CONSISTENCY_OPERATORS, SLICE_CONSISTENCY))}, +adapt, "
                             "+adapt:SECONDS, +gain, +gain:VALUE or +correction:orthogonal|smooth)")
    return options


def _positive(text: str) -> bool:
    try:
        return 0 < float(text) < math.inf
    except ValueError:
        return False


def method(spec: str, device: str = "auto", tile: int | None = None) -> tuple[str, Method]:
    """``(name, method)`` from a name in :data:`METHODS`, a weights file, or ``NAME=FILE``.

    A model may carry options after ``+``: ``arssr+dc`` projects its output
    onto the default consistency operator, ``arssr+dc:cubic`` onto another,
    ``arssr+dc:slice`` onto the slice model of thick-slice inputs; ``+adapt``
    (``+adapt:SECONDS``) adapts it to each input first. A baseline may carry
    ``+dc`` options too (``cubic+dc:slice``): the same projection of its
    output, which tells the projection's share of a gain from the model's.
    """
    if spec in BASELINES:
        return spec, baseline(spec)
    if spec == "bspline":
        return spec, ants_bspline
    base, *suffixes = spec.split("+")
    options = model_options(suffixes, spec)
    if base in BASELINES and set(options) == {"consistency"}:
        return spec, consistent(baseline(base), options["consistency"])
    if base == "arssr":
        return spec, model_method(load_model(None), device, tile, **options)
    name, _, path = base.rpartition("=")
    if not Path(path).is_file():
        raise InputError(f"unknown method {spec!r}: not one of {', '.join(METHODS)} nor a weights file")
    label = (name or Path(path).name.split(".")[0]) + "".join("+" + s for s in suffixes)
    return label, model_method(load_model(path), device, tile, plane_prior=None, **options)
