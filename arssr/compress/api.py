"""Compress a volume into an ``.arssr`` file and decompress one: the public entry points."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import torch

from arssr.compress import container
from arssr.compress.auto import compress_auto
from arssr.compress.codec import decode
from arssr.compress.config import CompressionConfig, make_config
from arssr.compress.search import compress_with_codec
from arssr.device import free_memory_bytes, resolve_device
from arssr.errors import InputError
from arssr.files import refuse_existing
from arssr.protocol import AUTO_SCALES
from arssr.volume import Volume, load_volume, save_volume


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
    auto: bool = False,
    codecs: Sequence[str] | None = None,
    scales: Sequence[float] = AUTO_SCALES,
) -> tuple[bytes, dict]:
    """``(file bytes, report)``. ``target_bpp`` sets the SIREN width so the file stays within it;
    ``target_psnr`` tries widths (and scale 1 after ``config.scale`` when ``search_scale``), smallest
    first, until the decoded volume reaches it, else keeps the best. With ``config.lr_codec`` other than
    ``siren`` see :func:`arssr.compress.search.compress_lr`; ``auto``: :func:`arssr.compress.auto.compress_auto`
    over ``codecs`` (default: all) at ``scales``."""
    if target_bpp is not None and target_psnr is not None:
        raise InputError("give at most one of target_bpp and target_psnr")
    low, high = float(volume.data.min()), float(volume.data.max())
    if low == high:
        raise InputError(f"the volume is constant ({low:g} everywhere): nothing to compress")
    device = resolve_device(device)
    _check_fit_memory(config, math.prod(volume.shape), device)
    if auto:  # the LR codec and scale chosen by trial
        return compress_auto(volume, config, sr_model, target_bpp, target_psnr, time_budget, device, progress,
                             codecs, scales)
    return compress_with_codec(volume, config, sr_model, target_bpp, target_psnr, time_budget, device, progress,
                               search_scale)


def _check_fit_memory(config: CompressionConfig, voxels: int, device: torch.device) -> None:
    """``InputError`` before any fitting if the SIREN's fit would need more memory than ``device`` has free."""
    if config.lr_codec != "siren":
        return
    need, free = config.fit_bytes(voxels), free_memory_bytes(device)
    if need > free:
        raise InputError(f"fitting a SIREN of width {config.width} and depth {config.depth} needs about "
                         f"{need / 2**30:.3g} GiB of memory, only {free / 2**30:.3g} GiB is free; "
                         "use a smaller width or depth")


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
    ``progress``, ``search_scale``, ``auto`` (with ``codecs`` and ``scales``: :func:`compress_volume`), and any
    :class:`CompressionConfig` field.
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
    """Decode an ``.arssr`` file; also written as NIfTI to ``output`` if given (``dtype`` as ``save_volume``).
    ``sr_model=None`` takes the shipped model the file names, else the default."""
    if output is not None:
        refuse_existing([output], overwrite)
    meta, payload = container.read_container(source)
    try:
        volume = decode(meta, payload, sr_model, device, progress)
    except InputError as err:  # what the file holds cannot be decoded: name the file
        raise InputError(f"{source}: {err}") from None
    if output is not None:
        save_volume(volume, output, overwrite=overwrite, dtype=dtype)
    return volume
