"""One LR codec's file within a target: for a SIREN, its width (and scale) chosen for the target; for another
LR codec, :func:`arssr.compress.lr_codec.compress_lr`."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import replace

import torch

from arssr.compress.codec import encode, prepare
from arssr.compress.config import CompressionConfig
from arssr.compress.finetune import finetuned_parameters
from arssr.compress.lr_codec import budget_bytes, compress_lr
from arssr.compress.rate import measure, width_for_budget
from arssr.volume import Volume

#: SIREN widths tried, smallest first, when a target PSNR chooses the size.
WIDTH_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256)


def compress_with_codec(
    volume: Volume,
    config: CompressionConfig,
    sr_model: str | os.PathLike | None,
    target_bpp: float | None,
    target_psnr: float | None,
    time_budget: float | None,
    device: torch.device,
    progress: bool = False,
    search_scale: bool = False,
) -> tuple[bytes, dict]:
    """``(file bytes, report)`` of ``volume`` with the LR codec ``config.lr_codec`` (for
    :func:`arssr.compress.compress_volume`, which checks the volume and the targets first)."""
    if config.lr_codec != "siren":  # the LR coded by another codec
        return compress_lr(volume, config, sr_model, target_bpp, target_psnr, device, progress)
    if target_bpp is not None:
        budget = budget_bytes(volume, target_bpp)
        meta, _, model = prepare(volume, config, sr_model)
        extra = finetuned_parameters(model) if config.finetune != "none" else []
        config = replace(config, width=width_for_budget(volume, config, budget, meta, extra))
    if target_psnr is None:
        trials = [config]
    else:
        scales = [config.scale] + ([1.0] if search_scale and config.scale != 1 else [])
        trials = [replace(config, width=w, scale=s) for w in WIDTH_LADDER for s in scales]
    best = None
    for trial in trials:
        start = time.perf_counter()
        candidates = encode(volume, trial, sr_model, device, target_psnr, time_budget, progress)
        encode_s = time.perf_counter() - start
        reports = []
        for meta, payload in candidates:
            blob, report = measure(meta, payload, trial, volume, sr_model, device, progress)
            if trial.finetune != "none":
                report["finetune_kept"] = "finetune" in meta
            reports.append((blob, report))
        # Choosing between candidates is part of encoding: their decodes count in its time.
        encode_s += sum(report["decode_s"] for _, report in reports) if len(reports) > 1 else 0.0
        for blob, report in reports:
            report["encode_s"] = encode_s
            if best is None or report["psnr"] > best[1]["psnr"]:
                best = (blob, report)
        if target_psnr is None or best[1]["psnr"] >= target_psnr:
            return best
    warnings.warn(f"no tried setting reached {target_psnr} dB; kept the best ({best[1]['psnr']:.2f} dB)", stacklevel=3)
    return best
