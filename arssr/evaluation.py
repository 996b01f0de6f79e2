"""Simulated-LR evaluation: degrade a ground truth, upsample it back with each method, score it.

Every method returns a volume on the ground truth's own grid: an LR volume of
``m = round(n / k)`` voxels is upsampled by ``n / m`` per axis, so the
geometry of SPEC section 4 holds in both directions and no method is
compared on a shifted grid. A method is a callable ``(lr: Volume, hr_shape)
-> array``; :func:`method` builds one from a name or a weights file. On
thick-slice cases it is called with a third argument, the acquisition
(:class:`ThickSlices`) that made ``lr``, for the methods that model it
(``+dc:slice``).

Thick-slice protocol (:func:`simulate_thick_slices`): the ground truth's
slices along one axis, ``thickness`` mm thick, spaced ``n / m`` HR voxels
with ``m = round(n / thickness in voxels)``; the other axes untouched.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from arssr import geometry
from arssr.degrade import SliceModel, degrade, resample
from arssr.errors import InputError
from arssr.adapt import AdaptOptions
from arssr.consistency import project, slice_consistency
from arssr.inference import adapt_to, upsample
from arssr.metrics import brain_mask, dice, psnr, ssim
from arssr.models import ArSSR, load_model
from arssr.protocol import (
    BASELINES, CONSISTENCY_OPERATORS, DEFAULT_CONSISTENCY, DEFAULT_DEGRADATIONS, DEFAULT_SCALES, METHODS,
    SLICE_CONSISTENCY,
)
from arssr.volume import Volume

Method = Callable[..., np.ndarray]
#: Self-adaptation time of ``+adapt`` without a value.
DEFAULT_ADAPT_SECONDS = 60.0


def simulate_lr(hr: Volume, scale: float | Sequence[float], degradation: str) -> Volume:
    """Low-resolution version of ``hr`` with ``round(n / k)`` voxels per axis, on the FOV-preserving grid."""
    factors = geometry.parse_triple(scale if not isinstance(scale, (int, float)) else float(scale), "scale")
    shape = geometry.output_shape(hr.shape, [1.0 / k for k in factors])
    lr = degrade(torch.from_numpy(np.asarray(hr.data, dtype=np.float64)), shape, degradation)
    return Volume(lr.numpy().astype(np.float32), geometry.resampled_affine(hr.affine, hr.shape, shape))


@dataclass(frozen=True)
class ThickSlices:
    """A 2D multi-slice acquisition: slices ``thickness`` mm thick along array axis ``axis``, ``profile``."""

    thickness: float
    axis: int
    profile: str = "boxcar"

    @property
    def degradation(self) -> str:
        """The name records carry as their degradation: ``slices-boxcar``, ``slices-gaussian``."""
        return f"slices-{self.profile}"


def simulate_thick_slices(hr: Volume, slices: ThickSlices) -> Volume:
    """``hr``'s slices along ``slices.axis`` (the slice model of ``arssr.degrade``), on the FOV-preserving grid."""
    spacing = hr.spacing[slices.axis]
    model = SliceModel.from_mm(slices.thickness, spacing, slices.profile)
    shape = list(hr.shape)
    shape[slices.axis] = max(1, geometry.round_half_up(hr.shape[slices.axis] / model.thickness))
    operator = tuple(model if axis == slices.axis else "kspace" for axis in range(3))  # kspace: m == n, identity
    lr = degrade(torch.from_numpy(np.asarray(hr.data, dtype=np.float64)), shape, operator)
    return Volume(lr.numpy().astype(np.float32), geometry.resampled_affine(hr.affine, hr.shape, shape))


def baseline(name: str) -> Method:
    """Interpolation back to ``hr_shape`` (:data:`BASELINES`), clipped to the LR's intensity range.

    Per axis, so along the slice axis only for thick slices; ``slices`` is not needed.
    """
    kind = BASELINES[name]

    def run(lr: Volume, hr_shape: tuple[int, int, int], slices: ThickSlices | None = None) -> np.ndarray:
        out = resample(torch.from_numpy(np.asarray(lr.data, dtype=np.float64)), hr_shape, kind).numpy()
        return np.clip(out, lr.data.min(), lr.data.max()).astype(np.float32)

    return run


def consistent(run: Method, consistency: str) -> Method:
    """``run``'s output projected onto its LR input through ``consistency`` (``arssr.consistency``; non-negative
    when the LR is), or, for ``slice``, through the slice model of the case's thick slices."""
    def projected(lr: Volume, hr_shape: tuple[int, int, int], slices: ThickSlices | None = None) -> np.ndarray:
        if consistency != SLICE_CONSISTENCY:
            operator = consistency
        elif slices is None:
            raise InputError(f"+dc:{SLICE_CONSISTENCY} needs thick-slice inputs (a slice thickness)")
        else:
            operator = slice_consistency(DEFAULT_CONSISTENCY, lr.spacing, lr.shape, hr_shape, slices.thickness,
                                         slices.profile)
        floor = 0.0 if lr.data.min() >= 0 else None
        return project(run(lr, hr_shape), lr.data, operator, floor)

    return projected


def ants_bspline(lr: Volume, hr_shape: tuple[int, int, int], slices: ThickSlices | None = None) -> np.ndarray:
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
    return np.clip(out, lr.data.min(), lr.data.max()).astype(np.float32)


def model_method(
    model: ArSSR, device: str = "auto", tile: int | None = None, consistency: str = "none",
    adapt: float | None = None, gain: float | str = 1.0,
) -> Method:
    """The model through :func:`arssr.inference.upsample` with the given consistency projection and detail
    gain, after ``adapt`` seconds of self-adaptation to each input when given. ``consistency="slice"`` projects
    onto the slice model of the case's thick slices (and k-space truncation on the other axes)."""
    def run(lr: Volume, hr_shape: tuple[int, int, int], slices: ThickSlices | None = None) -> np.ndarray:
        options: dict = {"consistency": consistency, "gain": gain}
        if consistency == SLICE_CONSISTENCY:
            if slices is None:
                raise InputError(f"+dc:{SLICE_CONSISTENCY} needs thick-slice inputs (a slice thickness)")
            options.update(consistency=DEFAULT_CONSISTENCY, slice_thickness=slices.thickness,
                           slice_profile=slices.profile)
        scale = tuple(n / m for n, m in zip(hr_shape, lr.shape))
        used = model
        if adapt is not None:
            operator = options["consistency"] if options["consistency"] != "none" else DEFAULT_CONSISTENCY
            used, _ = adapt_to(lr, model, scale, options=AdaptOptions(seconds=adapt, operator=operator), device=device)
        return upsample(lr, used, scale=scale, device=device, tile=tile, **options).data

    return run


def model_options(suffixes: Sequence[str], spec: str) -> dict:
    """Keyword arguments of :func:`model_method` from a spec's ``+`` suffixes: ``dc``, ``dc:OPERATOR``,
    ``dc:slice``, ``adapt`` (60 s), ``adapt:SECONDS``, ``gain`` (fitted on the input), ``gain:VALUE``."""
    options = {}
    for suffix in suffixes:
        kind, _, value = suffix.partition(":")
        if kind == "dc" and value in ("", *CONSISTENCY_OPERATORS, SLICE_CONSISTENCY):
            options["consistency"] = value or DEFAULT_CONSISTENCY
        elif kind == "adapt" and (not value or _positive(value)):
            options["adapt"] = float(value or DEFAULT_ADAPT_SECONDS)
        elif kind == "gain" and (not value or _positive(value)):
            options["gain"] = float(value) if value else "auto"
        else:
            raise InputError(f"unknown method option {suffix!r} in {spec!r} (use +dc, +dc:OPERATOR with OPERATOR "
                             f"one of {', '.join((*CONSISTENCY_OPERATORS, SLICE_CONSISTENCY))}, +adapt, "
                             "+adapt:SECONDS, +gain or +gain:VALUE)")
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
    return label, model_method(load_model(path), device, tile, **options)


@dataclass
class Subject:
    """One ground truth, its foreground mask, an optional atlas on its grid, and an optional given LR input."""

    name: str
    gt: Volume
    mask: np.ndarray
    atlas: np.ndarray | None = None
    lr: Volume | None = None

    @classmethod
    def from_volumes(cls, name: str, gt: Volume, atlas: Volume | None = None, lr: Volume | None = None) -> "Subject":
        if atlas is not None and atlas.shape != gt.shape:
            raise InputError(f"{name}: atlas shape {atlas.shape} does not match the ground truth's {gt.shape}")
        if lr is not None and any(m > n for m, n in zip(lr.shape, gt.shape)):
            raise InputError(f"{name}: the LR input {lr.shape} is larger than the ground truth {gt.shape}")
        return cls(name, gt, brain_mask(gt.data), None if atlas is None else np.rint(atlas.data).astype(np.int32), lr)


@dataclass
class Record:
    method: str
    scale: float | list[float]
    degradation: str
    subject: str
    psnr: float
    psnr_mask: float
    ssim: float
    lpips: float | None
    psi: float | None = None
    dice: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    slice_axis: int | None = None
    slice_thickness: float | None = None

    def as_dict(self) -> dict:
        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return None if isinstance(value, float) and math.isnan(value) else value

        return {key: clean(value) for key, value in self.__dict__.items()}


@dataclass
class Scorer:
    """What every estimate is scored with; ``lpips``, ``sharpness`` and ``segment`` are optional (``None``)."""

    lpips: Callable[[np.ndarray, np.ndarray], float] | None = None
    sharpness: Callable[[np.ndarray], float] | None = None
    segment: Callable[[Subject, np.ndarray], np.ndarray] | None = None
    classes: dict[str, int] = field(default_factory=dict)


def scale_label(scale: float | list[float]) -> str:
    """``x2.5`` for an isotropic scale, ``x1x1x4`` for per-axis scales."""
    return f"x{scale:g}" if isinstance(scale, (int, float)) else "x" + "x".join(f"{s:g}" for s in scale)


def _ratios(hr_shape: Sequence[int], lr_shape: Sequence[int]) -> float | list[float]:
    ratios = [round(n / m, 4) for n, m in zip(hr_shape, lr_shape)]
    return ratios[0] if len(set(ratios)) == 1 else ratios


def lr_inputs(
    subject: Subject, scales: Sequence[float], degradations: Sequence[str], slices: Sequence[ThickSlices] = ()
) -> Iterator[tuple]:
    """``(lr, degradation, scale, slices)`` per case: the given LR, else one thick-slice simulation per
    entry of ``slices``, else one simulation per degradation and scale (``slices`` is ``None`` but for thick
    slices)."""
    if subject.lr is not None:
        yield subject.lr, "given", _ratios(subject.gt.shape, subject.lr.shape), None
        return
    for thick in slices:
        lr = simulate_thick_slices(subject.gt, thick)
        yield lr, thick.degradation, _ratios(subject.gt.shape, lr.shape), thick
    for degradation in degradations if not slices else ():
        for scale in scales:
            yield simulate_lr(subject.gt, scale, degradation), degradation, float(scale), None


def evaluate(
    subjects: Sequence[Subject],
    methods: dict[str, Method],
    scales: Sequence[float] = DEFAULT_SCALES,
    degradations: Sequence[str] = DEFAULT_DEGRADATIONS,
    scorer: Scorer | None = None,
    on_case: Callable[[Subject, Volume, str, float, dict[str, np.ndarray]], None] | None = None,
    log: Callable[[str], None] | None = None,
    slices: Sequence[ThickSlices] = (),
) -> list[Record]:
    """Score every method on every LR input of every subject; ``on_case`` sees each case's outputs (figures).

    With ``slices`` the cases are those thick-slice simulations instead of ``scales`` x ``degradations``.
    """
    scorer = scorer or Scorer()
    records = []
    for subject in subjects:
        gt = subject.gt.data
        reference_labels = scorer.segment(subject, gt) if scorer.segment else None
        for lr, degradation, scale, thick in lr_inputs(subject, scales, degradations, slices):
            outputs = {}
            for name, run in methods.items():
                start = time.perf_counter()
                estimate = run(lr, subject.gt.shape) if thick is None else run(lr, subject.gt.shape, thick)
                seconds = time.perf_counter() - start
                if estimate.shape != subject.gt.shape:
                    raise InputError(f"method {name} returned shape {estimate.shape}, "
                                     f"the ground truth has {subject.gt.shape}")
                labels = scorer.segment(subject, estimate) if scorer.segment else None
                record = Record(
                    method=name, scale=scale, degradation=degradation, subject=subject.name,
                    psnr=psnr(estimate, gt), psnr_mask=psnr(estimate, gt, subject.mask), ssim=ssim(estimate, gt),
                    lpips=scorer.lpips(estimate, gt) if scorer.lpips else None,
                    psi=scorer.sharpness(estimate) if scorer.sharpness else None,
                    dice=dice(labels, reference_labels, scorer.classes) if labels is not None else {},
                    seconds=seconds,
                    slice_axis=None if thick is None else thick.axis,
                    slice_thickness=None if thick is None else thick.thickness,
                )
                records.append(record)
                outputs[name] = estimate
                if log:
                    extra = f"  LPIPS {record.lpips:.4f}" if record.lpips is not None else ""
                    if record.psi is not None:
                        extra += f"  PSI {record.psi:.4f}"
                    if record.dice:
                        extra += f"  Dice {np.nanmean(list(record.dice.values())):.4f}"
                    log(f"{subject.name} {degradation:7s} {scale_label(scale):6s} {name:10s} PSNR {record.psnr:6.2f} dB "
                        f"(mask {record.psnr_mask:6.2f})  SSIM {record.ssim:.4f}{extra}  ({seconds:.1f} s)")
            if on_case:
                on_case(subject, lr, degradation, scale, outputs)
    return records
