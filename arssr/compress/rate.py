"""The rate of an ``.arssr`` file, how close one encoding decodes to its volume, and the widest SIREN that fits
a size budget."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict

import numpy as np
import torch

from arssr.compress import container, quantize
from arssr.compress.codec import decode_fitted
from arssr.compress.config import MAX_WIDTH, CompressionConfig
from arssr.errors import InputError
from arssr.models.siren import Siren
from arssr.volume import Volume


def rate(meta: dict, file_bytes: int) -> dict:
    """Rate of a file: bpp, ratio against the raw volume at its dtype, and the ``paper-2025`` paper's CR ``1 - params / voxels``
    (params: the SIREN's and any fine-tuned SR model parameters; ``None`` without a SIREN)."""
    voxels = math.prod(meta["shape"])
    params = Siren.parameter_count(meta["siren"]["width"], meta["siren"]["depth"]) if "siren" in meta else 0
    tuned = (meta.get("finetune") or {}).get("params", 0)
    raw = voxels * np.dtype(meta["dtype"]).itemsize
    return {
        "bytes": file_bytes,
        "voxels": voxels,
        "bpp": 8 * file_bytes / voxels,
        "raw_bytes": raw,
        "compression_ratio": raw / file_bytes,
        "siren_params": params,
        "decoder_params": tuned,
        "paper_cr": 1 - (params + tuned) / voxels if "siren" in meta else None,
    }


def quality(decoded: Volume, original: Volume) -> dict:
    """PSNR and SSIM of a decoded volume against the original (no SSIM below its window size)."""
    from arssr.metrics import SSIM_WINDOW, psnr, ssim

    small = min(original.shape) < SSIM_WINDOW  # SSIM is undefined there
    return {"psnr": psnr(decoded.data, original.data), "ssim": None if small else ssim(decoded.data, original.data)}


def measure(meta: dict, payload: bytes, config: CompressionConfig, volume: Volume,
            sr_model: str | os.PathLike | None, device: torch.device, progress: bool = False) -> tuple[bytes, dict]:
    """``(file bytes, report)`` of one encoding: its rate, how close its decode is to ``volume``, decode time
    (which includes fitting the file's consistency band weights, :func:`arssr.compress.codec.decode_fitted`; its
    SR pass shows a progress bar with ``progress``)."""
    start = time.perf_counter()
    meta, decoded = decode_fitted(meta, payload, volume, sr_model, device, progress)
    blob = container.pack(meta, payload)
    return blob, {**rate(meta, len(blob)), **quality(decoded, volume), "decode_s": time.perf_counter() - start,
                  "config": asdict(config)}


def width_for_budget(volume: Volume, config: CompressionConfig, budget_bytes: float, meta: dict,
                     extra: list[torch.Tensor] = ()) -> int:
    """Widest SIREN whose file cannot exceed ``budget_bytes`` (raw weight stream, header and slack counted);
    ``extra``: further tensors the payload carries (fine-tuned SR model parameters)."""
    per_tensor = quantize.tensor_overhead(config.quant)
    size = quantize.value_bytes(config.quant)
    fixed = sum(size * t.numel() + per_tensor for t in extra)
    if extra:
        meta = {**meta, "finetune": {"mode": config.finetune, "params": sum(t.numel() for t in extra)}}
    best = 0
    for width in range(1, MAX_WIDTH + 1):
        trial = {**meta, "siren": {**meta["siren"], "width": width}}
        weights = size * Siren.parameter_count(width, config.depth) + per_tensor * 2 * (config.depth + 1) + fixed
        if len(container.pack(trial, b"")) + weights + 16 > budget_bytes:  # 16: metadata digits and codec name
            break
        best = width
    if best == 0:
        raise InputError(f"a target of {8 * budget_bytes / math.prod(volume.shape):.4g} bpp is below the smallest "
                         "possible file for this volume")
    return best
