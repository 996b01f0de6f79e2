"""Self-adaptation: fine-tune a copy of a model on examples made from the input volume alone.

Internal learning in the manner of ZSSR: crops of the LR input are degraded
further by the same scale and operator, and a copy of the model (warm-started
from the given weights) learns to give the crops back. A slab across the
middle of the input's longest axis is never trained on: before and after,
the whole input is degraded, super-resolved and projected onto consistency,
exactly as ``arssr upsample`` would treat an input, and the slab is scored
against itself (PSNR in the model's normalised units). Scoring the slab
inside the whole volume, not cut out, gives it its real neighbourhood, so a
thin slab at a large scale is judged as fairly as a thick one. The adapted
copy is kept only when that score improves; the caller's model is never
changed.

For a thick-slice input (a :class:`~arssr.degrade.SliceModel` on one axis)
the slices cannot be thinned once more; the examples are made in-plane
instead, in the manner of SMORE: each in-plane axis in turn is swapped with
the slice axis and degraded to the slices' profile and scale, so the input's
own fine in-plane detail teaches the model what to restore through the
slices, along the axis where it will. The held-out score is then the mean
over both in-plane axes.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from arssr import geometry
from arssr.consistency import project
from arssr.degrade import DEGRADATIONS, Operator, SliceModel
from arssr.device import resolve_device
from arssr.errors import InputError
from arssr.gain import self_example, self_views
from arssr.models.tiling import super_resolve
from arssr.models import ArSSR
from arssr.models.planes import PlanePrior
from arssr.pairs import Example, PairOptions, make_pairs
from arssr.protocol import DEFAULT_SLICE_CORRECTION
from arssr.request import Request, prepare
from arssr.training import planes
from arssr.volume import Volume


@dataclass(frozen=True)
class AdaptOptions:
    """How a model adapts to one input.

    ``seconds`` and ``steps`` bound the fine-tuning (either may be ``None``,
    not both); ``operator`` makes the examples (a degradation of
    ``arssr.degrade``); ``learning_rate`` for Adam; each step uses ``batch``
    crops whose LR patches have ``lr_size`` voxels per axis (fewer when the
    input is small) and ``samples`` target voxels each; ``holdout`` is the
    share of the longest axis held out for the keep-or-drop score.
    """

    seconds: float | None = 60.0
    steps: int | None = None
    operator: str = "kspace"
    learning_rate: float = 5e-5
    batch: int = 4
    lr_size: int = 12
    samples: int = 4000
    holdout: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seconds is None and self.steps is None:
            raise InputError("adaptation needs a time budget (seconds) or a number of steps")
        if (self.seconds is not None and not self.seconds > 0) or (self.steps is not None and self.steps < 1):
            raise InputError(f"adaptation seconds must be > 0 and steps >= 1, got {self.seconds} and {self.steps}")
        if self.operator not in DEGRADATIONS:
            raise InputError(f"unknown adaptation operator {self.operator!r}; known: {', '.join(DEGRADATIONS)}")
        if not 0 < self.holdout < 0.5 or self.batch < 1 or self.lr_size < 2 or self.samples < 1:
            raise InputError("holdout must be in (0, 0.5), batch >= 1, lr_size >= 2 and samples >= 1")


@dataclass(frozen=True)
class AdaptReport:
    """What adaptation did: held-out PSNR (dB) before and after, whether the copy was kept, steps and seconds."""

    before: float
    after: float
    kept: bool
    steps: int
    seconds: float

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _holdout(shape: Sequence[int], share: float, axis: int | None = None) -> tuple[int, int, int]:
    """``(axis, start, stop)`` of the held-out slab: the middle ``share`` of ``axis`` (default: the longest)."""
    axis = int(np.argmax(shape)) if axis is None else axis
    width = max(1, round(share * shape[axis]))
    start = (shape[axis] - width) // 2
    return axis, start, start + width


def _held_out_psnr(model: ArSSR, examples: Sequence[tuple[np.ndarray, np.ndarray, Operator, tuple[int, int, int]]],
                   device: torch.device) -> float:
    """PSNR, over each ``(image, low, operator, slab)``'s ``(axis, start, stop)`` slab, of ``low`` (``image``
    degraded once more) super-resolved back to ``image``'s grid and projected, the squared error averaged."""
    errors = []
    for image, low, operator, (axis, start, stop) in examples:
        estimate = project(super_resolve(low, model, image.shape, device=device), low, operator)
        errors.append(np.mean(np.take(estimate.astype(np.float64) - image, range(start, stop), axis=axis) ** 2))
    return 10 * math.log10(1.0 / max(float(np.mean(errors)), 1e-12))


def adapt(
    model: ArSSR,
    lr: np.ndarray,
    scale: Sequence[float],
    options: AdaptOptions = AdaptOptions(),
    device: torch.device = torch.device("cpu"),
    progress: bool = False,
    operator: Operator | None = None,
) -> tuple[ArSSR, AdaptReport]:
    """``(model to use, report)`` for the normalised LR array ``lr`` (model axis order) at per-axis ``scale``.

    ``operator`` is the input's degradation in model axis order when it is
    not ``options.operator`` (a thick-slice one, see :func:`self_views`). The
    returned model is an adapted copy when the held-out score improved, else
    ``model`` itself.
    """
    from tqdm.auto import tqdm

    axis, start, stop = _holdout(lr.shape, options.holdout)
    views = self_views(scale, options.operator if operator is None else operator)
    images = [np.ascontiguousarray(lr.transpose(view.order)) for view in views]
    slabs = [(view.order.index(axis), start, stop) for view in views]
    # Every crop lies on one side of the slab: the widest side bounds the crop on that axis.
    size = min(options.lr_size, *(
        math.floor((n if a != slab[0] else max(start, n - stop)) / k)
        for view, image, slab in zip(views, images, slabs) for a, (n, k) in enumerate(zip(image.shape, view.scale))
    ))
    lows = [self_example(image, view.scale, view.operator) for view, image in zip(views, images)]
    if size < 2 or any(low is None for low in lows):
        raise InputError(f"input {tuple(lr.shape)} is too small to adapt to at scale {tuple(scale)}")
    held_out = [(image, low, view.operator, slab) for view, image, low, slab in zip(views, images, lows, slabs)]
    hr_shapes = [geometry.output_shape((size,) * 3, view.scale) for view in views]
    pairs = PairOptions(lr_size=size, samples=options.samples)
    generator = torch.Generator().manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)

    tuned = copy.deepcopy(model).to(device).train()
    before = _held_out_psnr(model, held_out, device)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=options.learning_rate)
    bar = tqdm(total=options.steps, disable=not progress, leave=False, unit="step", desc="adapting")
    began, steps = time.perf_counter(), 0
    while (options.steps is None or steps < options.steps) and (
        options.seconds is None or time.perf_counter() - began < options.seconds
    ):
        v = int(rng.integers(len(views))) if len(views) > 1 else 0  # one view keeps the seeded stream
        hr_shape = hr_shapes[v]
        crops = torch.stack([torch.from_numpy(_crop(images[v], hr_shape, *slabs[v], rng)) for _ in range(options.batch)])
        examples = [
            Example(hr_shape, views[v].operator, 0.0, 0.0, 0,
                    torch.randint(math.prod(hr_shape), (options.samples,), generator=generator))
            for _ in range(options.batch)
        ]
        inputs, coords, target = make_pairs(crops, examples, pairs, device)
        loss = (tuned(inputs, coords) - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        bar.update()
    bar.close()
    seconds = time.perf_counter() - began
    tuned.eval()
    after = _held_out_psnr(tuned, held_out, device)
    kept = after > before
    return (tuned if kept else model), AdaptReport(before, after, kept, steps, seconds)


#: Share of the input's slices (the middle ones) whose planes self-adaptation holds out for its score.
ADAPT_HOLDOUT = 0.2
#: Held-out examples that score self-adaptation.
ADAPT_HELD_OUT_EXAMPLES = 32
#: Adam's learning rate when the plane prior adapts to an input.
PRIOR_LEARNING_RATE = 1e-4


def adapt_prior(prior: PlanePrior, lr: np.ndarray, axis: int, spacing_mm: float, thickness_mm: float,
                in_plane_mm: Sequence[float], profile: str = "boxcar", seconds: float = 60.0,
                steps: int | None = None, learning_rate: float = PRIOR_LEARNING_RATE, batch: int = 8, seed: int = 0):
    """``(prior to use, arssr.adapt.AdaptReport)``: a copy of ``prior`` fine-tuned on the thick-slice input
    ``lr`` itself (normalised, slices along ``axis``, in-plane spacings ``in_plane_mm`` of the two other
    axes in order), SMORE's way: each in-plane axis thinned to slices ``spacing_mm`` apart and
    ``thickness_mm`` thick (in its own voxels) is restored. The planes of the middle :data:`ADAPT_HOLDOUT` of
    the slices are never trained on; the copy is kept only when its PSNR on examples from them improves,
    else ``prior`` itself is returned. Neither ``prior`` nor any global RNG is changed."""
    in_plane = [a for a in range(3) if a != axis]
    size = min(64, *(lr.shape[a] for a in in_plane)) // prior.multiple * prior.multiple
    if size < prior.multiple:
        raise InputError(f"input {tuple(lr.shape)} is too small to adapt the plane prior to: its in-plane axes "
                         f"need at least {prior.multiple} voxels")
    draws = planes.PlaneDraws(size=size, noise_share=0.0, slice_gain_share=0.0, invert_share=0.0)
    rng = np.random.default_rng(seed)
    _, start, stop = _holdout(lr.shape, ADAPT_HOLDOUT, axis)
    centres = planes.foreground_sample(lr, rng)
    held = (centres[:, axis] >= start) & (centres[:, axis] < stop)
    if not held.any() or held.all():
        centres = np.argwhere(np.ones(lr.shape, dtype=bool))
        held = (centres[:, axis] >= start) & (centres[:, axis] < stop)

    def example(k: int, pool: np.ndarray):
        rows, cols = (in_plane[k], in_plane[1 - k])
        return planes.draw_example(lr, draws, rng, axes=(rows, cols), spacing=spacing_mm / in_plane_mm[k],
                                   thickness=thickness_mm / in_plane_mm[k], profile=profile, centres=pool)

    held_out = planes.batch_of([example(k % 2, centres[held]) for k in range(ADAPT_HELD_OUT_EXAMPLES)])
    tuned = copy.deepcopy(prior).train()
    before = _prior_psnr(prior, held_out)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=learning_rate)
    began, done = time.perf_counter(), 0
    while (steps is None or done < steps) and (seconds is None or time.perf_counter() - began < seconds):
        inputs, target, *conditions = planes.batch_of([example(int(rng.integers(2)), centres[~held])
                                                       for _ in range(batch)])
        loss = planes.plane_loss(tuned(inputs, *conditions), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
    tuned.eval()
    after = _prior_psnr(tuned, held_out)
    report = AdaptReport(before, after, after > before, done, time.perf_counter() - began)
    return (tuned if report.kept else prior), report


def adapt_prior_to(request: Request, prior: PlanePrior, options: AdaptOptions | None = None,
                   learning_rate: float = PRIOR_LEARNING_RATE) -> tuple[PlanePrior, AdaptReport]:
    """:func:`adapt_prior` for a thick-slice request as :func:`arssr.inference.upsample` sees it (the model's
    space and window, only the slice axis upsampled), with the time, steps and seed of ``options`` (its
    learning rate is the 3D model's: the prior's is ``learning_rate``)."""
    options = options or AdaptOptions()
    axis = request.slice_axis()
    if axis is None:
        raise InputError("the plane prior adapts to thick slices upsampled along their slice axis only")
    spacing = request.space.axes(request.volume.spacing)
    thickness = spacing[axis] if request.slice_thickness == "spacing" else float(request.slice_thickness)
    in_plane = [spacing[a] for a in range(3) if a != axis]
    return adapt_prior(prior, request.lr, axis, spacing[axis], thickness, in_plane,
                       request.model_operator[axis].profile, options.seconds, options.steps, learning_rate,
                       seed=options.seed)


@torch.no_grad()
def _prior_psnr(prior: PlanePrior, examples: tuple[torch.Tensor, ...]) -> float:
    planes, target, *conditions = examples
    error = float(torch.mean((prior(planes, *conditions) - target) ** 2))
    return 10 * math.log10(1.0 / max(error, 1e-12))


def _crop(lr: np.ndarray, shape: Sequence[int], axis: int, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``shape`` crop of ``lr`` that does not touch the held-out range ``[start, stop)`` of ``axis``."""
    origin = []
    for a, (n, s) in enumerate(zip(lr.shape, shape)):
        if a != axis:
            origin.append(int(rng.integers(0, n - s + 1)))
            continue
        sides = [(0, start - s), (stop, n - s)]  # origin ranges before and after the slab
        sides = [(lo, hi) for lo, hi in sides if hi >= lo]
        lo, hi = sides[int(rng.integers(len(sides)))]
        origin.append(int(rng.integers(lo, hi + 1)))
    region = tuple(slice(o, o + s) for o, s in zip(origin, shape))
    return np.ascontiguousarray(lr[region], dtype=np.float32)


def adapt_to(
    volume: Volume | str | os.PathLike,
    model: ArSSR | str | os.PathLike | None = None,
    scale: float | str | Sequence[float] | None = None,
    voxel_size: float | str | Sequence[float] | None = None,
    options: AdaptOptions | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    slice_thickness: float | str | None = None,
    slice_profile: str = "boxcar",
    slice_correction: str = DEFAULT_SLICE_CORRECTION,
) -> tuple[ArSSR, AdaptReport]:
    """``(model, report)``: ``model`` adapted to ``volume`` (:func:`adapt`), or itself when that did not help.

    ``slice_thickness``, ``slice_profile`` and ``slice_correction`` declare a thick-slice input as
    in :func:`arssr.inference.upsample` (in-plane examples, held-out scores projected as it projects). Pass the
    returned model to :func:`arssr.inference.upsample` with the same scale,
    or give that its ``adapt`` options to do both on one prepared request.
    """
    request = prepare(volume, model, scale, voxel_size, slice_thickness=slice_thickness, slice_profile=slice_profile,
                      slice_correction=slice_correction)
    return adapt_request(request, options, device, progress)


def adapt_request(request: Request, options: AdaptOptions | None = None, device: str | torch.device = "auto",
                  progress: bool = False) -> tuple[ArSSR, AdaptReport]:
    """:func:`adapt_to` of a request made once by :func:`arssr.request.prepare`: examples made with
    ``options.operator``, and with the request's slice model along thick slices."""
    options = options or AdaptOptions()
    operator = None
    if not isinstance(request.operator, str):
        operator = request.space.axes(tuple(entry if isinstance(entry, SliceModel) else options.operator
                                            for entry in request.operator))
    return adapt(request.model, request.lr, request.space.axes(request.factors), options, resolve_device(device),
                 progress, operator)
