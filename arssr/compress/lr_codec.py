"""The LR codecs other than the SIREN, by name (:data:`CODECS`): what codes a file's LR volume when no SIREN does.

A codec is a module and one entry here, an :class:`LRCodec`. Everything else is shared: encoding makes the LR
volume as the SIREN path does (:func:`arssr.compress.codec.prepare`: downsampled by ``config.method``, normalised
by the SR model's intensity rule; at scale 1 the whole volume, min-max normalised, and no SR model) and gives the
codec the bytes that the file's byte budget leaves after its header and metadata
(:func:`arssr.compress.search.encode_lr`); decoding is the codec's, then :func:`arssr.compress.codec.restore`
(SR model, made consistent with the decoded LR by the file's band weights, intensities, dtype, geometry), as for
a SIREN file. ``CompressionConfig.lr_codec``, ``arssr compress --lr-codec``, ``--auto``'s candidates and the
metadata's checks (``arssr.compress.metadata``) take the names from here (:func:`lr_codec_names`).

The SIREN is not in the table: its weights are the container's own format (``arssr.compress.codec``).

Metadata: the SIREN file's, less its ``siren``, ``quant`` and ``codec`` keys, plus ``"lr_codec": NAME``; such
files have container format version 3 (``arssr.compress.container``), 4 with consistency band weights, or 5 with
them by region (as every file made now), which earlier readers refuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from arssr.compress import sperr
from arssr.errors import InputError


@dataclass(frozen=True)
class LRCodec:
    """An LR codec. ``fit(lr, room)``: the stream of the normalised LR array ``lr`` (float32) at the highest
    quality that takes at most ``room`` bytes, or ``None`` if none does; ``decode(meta, payload)``: the float32 LR
    array of a file's stream, checked against its metadata (``InputError``); ``check(meta)``: what the codec
    requires of a file's metadata beyond the common checks (``InputError``), if anything."""

    fit: Callable[[np.ndarray, int], bytes | None]
    decode: Callable[[dict, bytes], np.ndarray]
    check: Callable[[dict], None] | None = None


#: The LR codecs other than the SIREN, by the name that files and ``--lr-codec`` give them.
CODECS: dict[str, LRCodec] = {
    "sperr": LRCodec(fit=sperr.fit_stream, decode=sperr.decode_stream),
}


def lr_codec_names() -> tuple[str, ...]:
    """Every LR codec's name: the SIREN's, then the table's."""
    return ("siren", *CODECS)


def lr_codec_of(meta: dict) -> str:
    """The LR codec a file's metadata records (files without the key have a SIREN LR)."""
    return meta.get("lr_codec", "siren")


def registered(name: str) -> LRCodec:
    """The table's entry for ``name`` (``InputError`` for an unknown name; the SIREN has none)."""
    if name not in CODECS:
        raise InputError(f"unknown LR codec {name!r}; known: {', '.join(lr_codec_names())}")
    return CODECS[name]


def fit_stream(lr: np.ndarray, meta: dict, room: int) -> bytes | None:
    """The stream of ``lr`` by the LR codec that ``meta`` names, of at most ``room`` bytes (``None`` if none)."""
    return registered(lr_codec_of(meta)).fit(lr, room)


def decode_lr(meta: dict, payload: bytes) -> np.ndarray:
    """The normalised LR volume of a file whose LR codec is not the SIREN, by its entry in :data:`CODECS`."""
    return registered(lr_codec_of(meta)).decode(meta, payload)


def summary(report: dict) -> str:
    """How a compression report's file codes its LR, for the ``arssr compress`` summary line."""
    config = report["config"]
    text = (f"SIREN {config['depth']} x {config['width']}" if config["lr_codec"] == "siren"
            else f"{config['lr_codec'].upper()} LR")
    return text + (f" (best of {len(report['auto']['candidates'])} candidates)" if "auto" in report else "")


def describe(meta: dict, payload_bytes: int) -> list[str]:
    """The ``arssr info`` line on a file's LR codec (for another than the SIREN, its stream's size)."""
    codec = lr_codec_of(meta)
    return [f"lr_codec: {codec}" + ("" if codec == "siren" else
            f", {payload_bytes} bytes, {8 * payload_bytes / math.prod(meta['lr_shape']):.4f} bits per LR voxel")]
