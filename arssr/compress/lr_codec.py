"""``--lr-codec sperr``: the LR volume coded by SPERR (3D wavelets, through ``imagecodecs``), not by a SIREN.

Encoding makes the LR volume as the SIREN path does (:func:`arssr.compress.codec.prepare`: downsampled by
``config.method``, normalised by the SR model's intensity rule; at scale 1 the whole volume, min-max
normalised, and no SR model) and codes it with SPERR in its bpp mode. The rate is the file's: the largest SPERR
bpp whose whole ``.arssr`` file (header, metadata, stream, checksum) fits the byte budget is found by bisection
(:func:`arssr.compress.sperr.fit_stream`). Decoding is SPERR's, then :func:`arssr.compress.codec.restore`
(SR model, made consistent with the decoded LR by the file's band weights, intensities, dtype, geometry), as for
a SIREN file.

Metadata: the SIREN file's, less its ``siren``, ``quant`` and ``codec`` keys, plus ``"lr_codec": "sperr"``;
such files have container format version 3 (``arssr.compress.container``), 4 with consistency band weights, or
5 with them by region (as every file made now), which earlier readers refuse.
"""

from __future__ import annotations

import math
import os
import time

import torch

from arssr.compress.codec import prepare
from arssr.compress.config import CompressionConfig
from arssr.compress.container import lr_codec_of
from arssr.compress.rate import measure
from arssr.compress.sperr import fit_stream
from arssr.errors import InputError
from arssr.volume import Volume

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


def encode_sperr(volume: Volume, config: CompressionConfig, sr_model: str | os.PathLike | None,
                 budget: int) -> tuple[dict, bytes]:
    """``(meta, payload)`` of ``volume`` with its LR coded by SPERR into a file of at most ``budget`` bytes."""
    meta, lr, model = prepare(volume, config, sr_model)
    meta = {key: value for key, value in meta.items() if key not in SIREN_KEYS}
    meta["lr_codec"] = "sperr"
    if model is not None:
        meta["consistency"] = config.method  # decoding makes the SR result consistent with the decoded LR
    return meta, fit_stream(lr, meta, budget)


def compress_lr(volume: Volume, config: CompressionConfig, sr_model: str | os.PathLike | None,
                target_bpp: float | None, target_psnr: float | None, device: torch.device,
                progress: bool = False) -> tuple[bytes, dict]:
    """``(file bytes, report)`` of ``volume`` with the LR codec ``config.lr_codec`` (SPERR) within ``target_bpp``
    (``progress``: a progress bar over the SR pass that measures it)."""
    check_options(config, target_bpp, target_psnr)
    budget = budget_bytes(volume, target_bpp)
    start = time.perf_counter()
    meta, payload = encode_sperr(volume, config, sr_model, budget)
    encode_s = time.perf_counter() - start
    blob, report = measure(meta, payload, config, volume, sr_model, device, progress)
    return blob, {**report, "encode_s": encode_s, "lr_bpp": 8 * len(payload) / math.prod(meta["lr_shape"])}


def summary(report: dict) -> str:
    """How a compression report's file codes its LR, for the ``arssr compress`` summary line."""
    config = report["config"]
    text = (f"SIREN {config['depth']} x {config['width']}" if config["lr_codec"] == "siren"
            else f"{config['lr_codec'].upper()} LR")
    return text + (f" (--auto: best of {len(report['auto']['candidates'])})" if "auto" in report else "")


def describe(meta: dict, payload_bytes: int) -> list[str]:
    """The ``arssr info`` line on a file's LR codec (for another than the SIREN, its stream's size)."""
    codec = lr_codec_of(meta)
    return [f"lr_codec: {codec}" + ("" if codec == "siren" else
            f", {payload_bytes} bytes, {8 * payload_bytes / math.prod(meta['lr_shape']):.4f} bits per LR voxel")]
