"""Simulated-LR evaluation: degrade a ground truth, upsample it back with each method, score it.

Every method returns a volume on the ground truth's own grid: an LR volume of
``m = round(n / k)`` voxels is upsampled by ``n / m`` per axis, so the
geometry of SPEC section 4 holds in both directions and no method is
compared on a shifted grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from arssr import geometry
from arssr.degrade import degrade, resample
from arssr.inference import upsample
from arssr.metrics import psnr, ssim
from arssr.models import ArSSR
from arssr.volume import Volume

#: Interpolation baselines (``arssr.degrade.resample`` methods): ``kspace`` is zero-filled k-space interpolation.
BASELINES = ("nearest", "linear", "cubic", "lanczos", "kspace")


def simulate_lr(hr: np.ndarray, scale: float | Sequence[float], degradation: str) -> np.ndarray:
    """Low-resolution version of ``hr`` with ``round(n / k)`` voxels per axis."""
    factors = geometry.parse_triple(scale if not isinstance(scale, (int, float)) else float(scale), "scale")
    shape = geometry.output_shape(hr.shape, [1.0 / k for k in factors])
    lr = degrade(torch.from_numpy(np.asarray(hr, dtype=np.float64)), shape, degradation)
    return lr.numpy().astype(np.float32)


def baseline(method: str) -> Callable[[np.ndarray, tuple[int, int, int]], np.ndarray]:
    def run(lr: np.ndarray, hr_shape: tuple[int, int, int]) -> np.ndarray:
        out = resample(torch.from_numpy(np.asarray(lr, dtype=np.float64)), hr_shape, method).numpy()
        return np.clip(out, lr.min(), lr.max()).astype(np.float32)

    return run


def model_method(model: ArSSR, device: str = "auto", tile: int | None = None):
    def run(lr: np.ndarray, hr_shape: tuple[int, int, int]) -> np.ndarray:
        scale = tuple(n / m for n, m in zip(hr_shape, lr.shape))
        lr_affine = np.diag([*scale, 1.0])  # ground-truth voxels of 1 mm: the LR spacing is the scale
        result = upsample(Volume(lr, lr_affine), model, scale=scale, device=device, tile=tile)
        return result.data

    return run


@dataclass
class Record:
    method: str
    scale: float
    degradation: str
    subject: str
    psnr: float
    psnr_mask: float
    ssim: float
    seconds: float

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def evaluate(
    gt: np.ndarray,
    methods: dict[str, Callable[[np.ndarray, tuple[int, int, int]], np.ndarray]],
    scales: Sequence[float],
    degradations: Sequence[str],
    subject: str = "subject",
    mask: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Record]:
    """Score every method at every scale and degradation on one ground truth."""
    import time

    records = []
    for degradation in degradations:
        for scale in scales:
            lr = simulate_lr(gt, scale, degradation)
            for name, method in methods.items():
                start = time.perf_counter()
                estimate = method(lr, gt.shape)
                seconds = time.perf_counter() - start
                record = Record(
                    method=name, scale=float(scale), degradation=degradation, subject=subject,
                    psnr=psnr(estimate, gt), psnr_mask=psnr(estimate, gt, mask) if mask is not None else float("nan"),
                    ssim=ssim(estimate, gt), seconds=seconds,
                )
                records.append(record)
                if log:
                    log(f"{degradation:8s} x{scale:<4g} {name:12s} PSNR {record.psnr:6.2f} dB  "
                        f"SSIM {record.ssim:.4f}  ({seconds:.1f} s)")
    return records


def markdown_table(records: list[Record], metric: str = "psnr") -> str:
    """Method x scale table of ``metric``, one block per degradation."""
    lines = []
    for degradation in dict.fromkeys(r.degradation for r in records):
        rows = [r for r in records if r.degradation == degradation]
        scales = list(dict.fromkeys(r.scale for r in rows))
        lines.append(f"| {metric} ({degradation}) | " + " | ".join(f"x{s:g}" for s in scales) + " |")
        lines.append("|---" * (len(scales) + 1) + "|")
        for method in dict.fromkeys(r.method for r in rows):
            values = {r.scale: getattr(r, metric) for r in rows if r.method == method}
            fmt = "{:.2f}" if metric.startswith("psnr") else "{:.4f}"
            lines.append(f"| {method} | " + " | ".join(fmt.format(values[s]) for s in scales) + " |")
        lines.append("")
    return "\n".join(lines)
