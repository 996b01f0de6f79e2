"""Compress a volume into an ``.arssr`` file and decompress one: the public entry points."""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch

from arssr.compress import container
from arssr.compress.codec import decode, encode, prepare
from arssr.compress.config import CompressionConfig, make_config
from arssr.compress.finetune import finetuned_parameters
from arssr.compress.rate import rate, width_for_budget
from arssr.device import resolve_device
from arssr.errors import InputError
from arssr.files import refuse_existing
from arssr.volume import Volume, load_volume, save_volume

#: SIREN widths tried, smallest first, when a target PSNR chooses the size.
WIDTH_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256)


def _quality(decoded: Volume, original: Volume) -> dict:
    from arssr.metrics import SSIM_WINDOW, psnr, ssim

    small = min(original.shape) < SSIM_WINDOW  # SSIM is undefined there
    return {"psnr": psnr(decoded.data, original.data), "ssim": None if small else ssim(decoded.data, original.data)}


def compress_volume(
    volume: Volume,
    config: CompressionConfig,
    sr_model: str | os.PathLike | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    time_budget: float | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    search_scale: bool = False,
) -> tuple[bytes, dict]:
    """``(file bytes, report)``. ``target_bpp`` sets the SIREN width so the file stays within it;
    ``target_psnr`` tries widths (and scale 1 after ``config.scale`` when ``search_scale``), smallest
    first, until the decoded volume reaches it, else keeps the best."""
    if target_bpp is not None and target_psnr is not None:
        raise InputError("give at most one of target_bpp and target_psnr")
    low, high = float(volume.data.min()), float(volume.data.max())
    if low == high:
        raise InputError(f"the volume is constant ({low:g} everywhere): nothing to compress")
    device = resolve_device(device)
    if target_bpp is not None:
        if not target_bpp > 0:
            raise InputError(f"target bpp must be positive, got {target_bpp}")
        meta, _, model = prepare(volume, config, sr_model)
        extra = finetuned_parameters(model) if config.finetune != "none" else []
        budget = target_bpp * math.prod(volume.shape) / 8
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
            blob = container.pack(meta, payload)
            start = time.perf_counter()
            quality = _quality(decode(meta, payload, sr_model, device), volume)
            report = {**rate(meta, len(blob)), **quality, "decode_s": time.perf_counter() - start,
                      "config": asdict(trial)}
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
    warnings.warn(f"no tried setting reached {target_psnr} dB; kept the best ({best[1]['psnr']:.2f} dB)", stacklevel=2)
    return best


def compress(
    source: Volume | str | os.PathLike,
    output: str | os.PathLike,
    sr_model: str | os.PathLike | None = None,
    preset: str = "paper-2025",
    overwrite: bool = False,
    **options,
) -> dict:
    """Compress a volume (or NIfTI path) into an ``.arssr`` file; returns the report (rate, PSNR, SSIM, times).

    ``options``: ``target_bpp``, ``target_psnr``, ``time_budget``, ``device``,
    ``progress``, ``search_scale``, and any :class:`CompressionConfig` field.
    """
    output = Path(output)
    refuse_existing([output], overwrite)
    volume = source if isinstance(source, Volume) else load_volume(source)
    fields = set(CompressionConfig.__dataclass_fields__)
    config = make_config(preset, **{k: v for k, v in options.items() if k in fields})
    blob, report = compress_volume(volume, config, sr_model, **{k: v for k, v in options.items() if k not in fields})
    container.write_container(output, *container.unpack(blob), overwrite=overwrite)
    return {"path": str(output), **report}


def decompress(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    sr_model: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    overwrite: bool = False,
    dtype: str = "input",
) -> Volume:
    """Decode an ``.arssr`` file; also written as NIfTI to ``output`` if given (``dtype`` as ``save_volume``)."""
    if output is not None:
        refuse_existing([output], overwrite)
    meta, payload = container.read_container(source)
    volume = decode(meta, payload, sr_model, device, progress)
    if output is not None:
        save_volume(volume, output, overwrite=overwrite, dtype=dtype)
    return volume
