"""Weight quantisation and entropy coding of a network's parameters.

Modes: ``fp32`` (as trained), ``fp16``, and ``intN`` for N in 2..8: symmetric
per-tensor quantisation, ``q = round(w / step)`` with
``step = max|w| / (2^(N-1) - 1)``, stored as one int8 per value plus the
float32 step; the error is at most ``step / 2`` per value. Fewer bits leave
fewer distinct bytes, which the entropy coder then packs below N bits.

The raw stream (tensors in ``state_dict`` order, each ``[step] values``) is
coded with zstd (level 22) and lzma (preset 9e); the shorter stream wins, or
the raw stream if neither is shorter, so coding never makes a payload larger.
"""

from __future__ import annotations

import lzma
import re

import numpy as np
import torch

from arssr.errors import InputError

CODECS = ("zstd", "lzma", "none")
_INT = re.compile(r"int([2-8])")
_LZMA = {"format": lzma.FORMAT_RAW, "filters": [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]}


def check_mode(mode: str) -> str:
    if mode not in ("fp32", "fp16") and not _INT.fullmatch(mode):
        raise InputError(f"unknown quantisation {mode!r}; use fp32, fp16 or int2 .. int8")
    return mode


def value_bytes(mode: str) -> int:
    """Bytes per parameter in the raw stream."""
    return {"fp32": 4, "fp16": 2}.get(check_mode(mode), 1)


def tensor_overhead(mode: str) -> int:
    """Bytes per tensor in the raw stream besides its values (the int modes' float32 step)."""
    return 4 if _INT.fullmatch(check_mode(mode)) else 0


def quantization_step(tensor: torch.Tensor, mode: str) -> float:
    levels = 2 ** (int(_INT.fullmatch(mode).group(1)) - 1) - 1
    peak = float(tensor.detach().abs().max())
    # Stored as float32: the step that decoding reads back is the one the encoder must use.
    return float(np.float32(peak / levels)) if peak > 0 else 1.0


def fake_quantize(tensor: torch.Tensor, mode: str) -> torch.Tensor:
    """The values that decoding will see, with a straight-through gradient (for quantisation-aware training)."""
    if mode == "fp32":
        return tensor
    if mode == "fp16":
        rounded = tensor.half().to(tensor.dtype)
    else:
        step = quantization_step(tensor, mode)
        rounded = torch.round(tensor / step) * step
    return tensor + (rounded - tensor).detach()


def pack_tensors(tensors: list[torch.Tensor], mode: str) -> bytes:
    """The raw stream of ``tensors`` quantised by ``mode``."""
    check_mode(mode)
    parts = []
    for tensor in tensors:
        values = tensor.detach().cpu().float()
        if mode == "fp32":
            parts.append(values.numpy().astype("<f4").tobytes())
        elif mode == "fp16":
            parts.append(values.numpy().astype("<f2").tobytes())
        else:
            step = quantization_step(values, mode)
            parts.append(np.float32(step).astype("<f4").tobytes())
            parts.append(torch.round(values / step).to(torch.int8).numpy().tobytes())
    return b"".join(parts)


def stream_bytes(shapes: list[tuple[int, ...]], mode: str) -> int:
    """Length of the raw stream of tensors of ``shapes`` quantised by ``mode``."""
    return sum(tensor_overhead(mode) + value_bytes(mode) * int(np.prod(shape)) for shape in shapes)


def unpack_tensors(raw: bytes, shapes: list[tuple[int, ...]], mode: str) -> list[torch.Tensor]:
    """Inverse of :func:`pack_tensors` given the tensors' shapes; a stream of the wrong length is an ``InputError``."""
    size, extra = value_bytes(mode), tensor_overhead(mode)
    need = stream_bytes(shapes, mode)
    if len(raw) != need:
        raise InputError(f"weights payload has {len(raw)} bytes, the network needs {need}")
    out, offset = [], 0
    for shape in shapes:
        count = int(np.prod(shape))
        if extra:
            step = float(np.frombuffer(raw, "<f4", 1, offset)[0])
            offset += extra
            values = np.frombuffer(raw, np.int8, count, offset).astype(np.float32) * step
        else:
            values = np.frombuffer(raw, "<f4" if size == 4 else "<f2", count, offset).astype(np.float32)
        offset += size * count
        out.append(torch.from_numpy(values.reshape(shape)))
    return out


def entropy_encode(raw: bytes) -> tuple[str, bytes]:
    """``(codec, coded)``: the shortest of zstd, lzma and the raw bytes."""
    import zstandard

    candidates = [
        ("zstd", zstandard.ZstdCompressor(level=22).compress(raw)),
        ("lzma", lzma.compress(raw, **_LZMA)),
        ("none", raw),
    ]
    return min(candidates, key=lambda item: len(item[1]))


def entropy_decode(codec: str, coded: bytes, limit: int | None = None) -> bytes:
    """The raw stream of ``coded``; with ``limit``, decoding stops one byte past it (a stream that expands
    beyond what the network needs is refused without being held whole)."""
    import zstandard

    try:
        if codec == "zstd":
            if limit is None:
                return zstandard.ZstdDecompressor().decompress(coded)
            with zstandard.ZstdDecompressor().stream_reader(coded) as reader:
                return reader.read(limit + 1)
        if codec == "lzma":
            decompressor = lzma.LZMADecompressor(**_LZMA)
            raw = decompressor.decompress(coded, -1 if limit is None else limit + 1)
            if not decompressor.eof and (limit is None or len(raw) <= limit):
                raise lzma.LZMAError("the stream ends early")
            return raw
    except (zstandard.ZstdError, lzma.LZMAError) as err:
        raise InputError(f"weights payload cannot be decoded ({codec}: {err})") from None
    if codec == "none":
        return coded
    raise InputError(f"unknown payload codec {codec!r}; known: {', '.join(CODECS)}")
