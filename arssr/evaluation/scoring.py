"""Scoring: every method on every LR input of every subject, against the ground truth."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from arssr import geometry
from arssr.errors import InputError
from arssr.evaluation.methods import Method
from arssr.metrics import brain_mask, dice, psnr, slice_steps, ssim
from arssr.protocol import DEFAULT_DEGRADATIONS, DEFAULT_SCALES
from arssr.simulate import ThickSlices, simulate_lr, simulate_thick_slices
from arssr.volume import Volume

#: Largest difference (mm) between a given LR's affine and the one the FOV-preserving grid gives it.
GRID_TOLERANCE_MM = 1e-3


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
        if lr is not None and not np.allclose(geometry.resampled_affine(gt.affine, gt.shape, lr.shape), lr.affine,
                                              rtol=0, atol=GRID_TOLERANCE_MM):
            raise InputError(f"{name}: the LR input is not on the ground truth's FOV-preserving grid (its affine is "
                             "not the one arssr.geometry gives that shape); resample it onto that grid")
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
    slice_gap: float | None = None
    steps: float | None = None

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
                result = run(lr, subject.gt.shape) if thick is None else run(lr, subject.gt.shape, thick)
                seconds = time.perf_counter() - start
                if result.shape != subject.gt.shape:
                    raise InputError(f"method {name} returned shape {result.shape}, "
                                     f"the ground truth has {subject.gt.shape}")
                estimate = result.data
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
                    slice_gap=None if thick is None else thick.gap,
                    steps=None if thick is None else slice_steps(estimate, thick.axis, subject.mask),
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
