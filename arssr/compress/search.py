"""One LR codec's file within a target: for a SIREN, its width (and scale) chosen for the target; for another
LR codec (``arssr.compress.lr_codec``), its stream within the bytes the target bpp leaves, :func:`compress_lr`."""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import replace

import torch

from arssr.compress import container, lr_codec
from arssr.compress.codec import encode, prepare
from arssr.compress.config import CompressionConfig
from arssr.compress.finetune import finetuned_parameters
from arssr.compress.rate import measure, width_for_budget
from arssr.errors import InputError
from arssr.volume import Volume

#: SIREN widths tried, smallest first, when a target PSNR chooses the size.
WIDTH_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256)
#: Metadata that only a SIREN LR has.
SIREN_KEYS = ("siren", "quant", "codec")


def check_options(config: CompressionConfig, target_bpp: float | None, target_psnr: float | None,
                  auto: bool = False) -> None:
    """``InputError`` for options that cannot work whatever the volume: another LR codec than the SIREN, and
    ``--auto``, are sized by a target bpp only; ``--auto`` tries SIRENs without SR model fine-tuning."""
    what = "--auto" if auto else f"the {config.lr_codec} LR codec"
    if target_bpp is None or target_psnr is not None:
        raise InputError(f"{what} needs --target-bpp (it is sized by the file's bytes), not --target-psnr")
    if auto and config.finetune != "none":
        raise InputError("--auto does not combine with SR model fine-tuning")


def budget_bytes(volume: Volume, target_bpp: float) -> int:
    """The largest file, in bytes, that ``target_bpp`` allows for ``volume``."""
    if not (math.isfinite(target_bpp) and target_bpp > 0):
        raise InputError(f"target bpp must be positive, got {target_bpp}")
    return math.floor(target_bpp * math.prod(volume.shape) / 8 + 1e-9)


def encode_lr(volume: Volume, config: CompressionConfig, sr_model: str | os.PathLike | None,
              budget: int) -> tuple[dict, bytes]:
    """``(meta, payload)`` of ``volume`` with its LR coded by ``config.lr_codec`` (not the SIREN) into a file of
    at most ``budget`` bytes."""
    meta, lr, model = prepare(volume, config, sr_model)
    meta = {key: value for key, value in meta.items() if key not in SIREN_KEYS}
    meta["lr_codec"] = config.lr_codec
    if model is not None:
        meta["consistency"] = config.method  # decoding makes the SR result consistent with the decoded LR
    room = budget - len(container.pack(meta, b""))  # the stream's bytes add to the file's one for one
    if room <= 0:
        raise InputError(f"a budget of {budget} bytes is below the smallest possible file for this volume")
    stream = lr_codec.fit_stream(lr, meta, room)
    if stream is None:
        raise InputError(f"a budget of {budget} bytes is below the smallest {config.lr_codec.upper()} file for "
                         "this volume")
    return meta, stream


def compress_lr(volume: Volume, config: CompressionConfig, sr_model: str | os.PathLike | None,
                target_bpp: float | None, target_psnr: float | None, device: torch.device,
                progress: bool = False) -> tuple[bytes, dict]:
    """``(file bytes, report)`` of ``volume`` with the LR codec ``config.lr_codec`` (not the SIREN) within
    ``target_bpp`` (``progress``: a progress bar over the SR pass that measures it)."""
    check_options(config, target_bpp, target_psnr)
    budget = budget_bytes(volume, target_bpp)
    start = time.perf_counter()
    meta, payload = encode_lr(volume, config, sr_model, budget)
    encode_s = time.perf_counter() - start
    blob, report = measure(meta, payload, config, volume, sr_model, device, progress)
    return blob, {**report, "encode_s": encode_s, "lr_bpp": 8 * len(payload) / math.prod(meta["lr_shape"])}


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
