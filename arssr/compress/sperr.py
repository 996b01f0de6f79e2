"""The SPERR LR codec (``--lr-codec sperr``, an entry of ``arssr.compress.lr_codec.CODECS``): LR volumes coded by
SPERR (3D wavelets, through ``imagecodecs``) in its bpp mode, at the largest bpp whose stream fits the bytes that
the file's budget leaves (bisection), and decoded and checked against the file's metadata."""

from __future__ import annotations

import numpy as np

from arssr.errors import InputError

#: Bisection steps of the SPERR bpp search (the bracket shrinks to 2^-20 of its width).
BPP_STEPS = 20
#: Highest SPERR bpp tried (float32 LR values).
MAX_BPP = 32.0
#: Byte offset of the dimensions in a SPERR stream's header (after its version and flags bytes).
_SHAPE_AT = 2


def sperr_encode(lr: np.ndarray, bpp: float) -> bytes:
    """SPERR stream of a 3D array at ``bpp`` bits per voxel (C order: SPERR reads the buffer as it lies)."""
    import imagecodecs

    return imagecodecs.sperr_encode(np.ascontiguousarray(lr, dtype=np.float32), bpp, mode="bpp")


def fit_stream(lr: np.ndarray, room: int) -> bytes | None:
    """SPERR stream of ``lr`` at the largest bpp whose stream has at most ``room`` bytes, or ``None`` if none has
    (bisection on SPERR's bpp; its size grows with the bpp)."""
    low, high = 0.0, min(MAX_BPP, 8 * room / lr.size)
    best = None
    bpp = high
    for _ in range(BPP_STEPS):
        stream = sperr_encode(lr, bpp)
        if len(stream) <= room:
            best, low = stream, bpp
            if bpp == high:
                break
        else:
            high = bpp
        bpp = (low + high) / 2
    return best


def stream_shape(stream: bytes) -> tuple[int, ...]:
    """The array shape a SPERR stream's header gives (C order; SPERR stores the fastest axis first, as uint32s
    from byte 2), or ``()`` for a stream too short to hold one."""
    if len(stream) < _SHAPE_AT + 12:
        return ()
    return tuple(int(n) for n in reversed(np.frombuffer(stream, "<u4", 3, _SHAPE_AT)))


def decode_stream(meta: dict, payload: bytes) -> np.ndarray:
    """The normalised LR volume of a SPERR file (checked against the metadata)."""
    import imagecodecs

    header = stream_shape(payload)
    try:
        lr_shape = tuple(int(n) for n in meta["lr_shape"])
        # a header that disagrees is refused before SPERR allocates what it asks for
        lr = None if header and header != lr_shape else imagecodecs.sperr_decode(payload)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # RuntimeError: imagecodecs.SperrError
        raise InputError(f"unreadable SPERR stream in the .arssr file ({type(err).__name__}: {err})") from None
    if lr is None or lr.ndim != 3 or lr.shape != lr_shape:
        shown = header if lr is None else lr.shape
        raise InputError(f"the SPERR stream decodes to shape {shown}, the file's LR shape is {lr_shape}")
    return np.ascontiguousarray(lr, dtype=np.float32)
