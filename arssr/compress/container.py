"""The ``.arssr`` file: a compressed volume that a SIREN and an SR model decode.

Layout (little-endian)::

    magic     6 bytes  b"ARSSRZ"
    version   u8       1, or 2 when the payload also carries fine-tuned SR-model parameters
                       (a reader that knows only version 1 must refuse those files), or 3 when
                       the LR is coded by another LR codec than a SIREN (``arssr.compress.lr_codec``),
                       or 4 when decoding weights the consistency correction per band
                       (metadata ``consistency_weights``, ``arssr.compress.decoding``), or 5 when the
                       background has its own gain and weights (metadata ``background_decoding``),
                       whatever else the file holds (the highest that applies); a reader refuses the
                       versions it does not know
    reserved  u8       0
    meta_len  u32      bytes of the metadata block
    data_len  u32      bytes of the payload
    metadata  zlib-compressed UTF-8 JSON (geometry, intensities, configs; see ``arssr.compress``)
    payload   entropy-coded network weights, or the LR codec's stream (``arssr.compress`` decides its inside)
    crc32     u32      CRC-32 of every byte before it

:func:`read_container` checks magic, version, lengths and checksum before it
decompresses anything, so a truncated, corrupted or foreign file is an
``InputError`` and never garbage. A CRC-32 detects every error burst of up to
32 bits, so every single-byte change is caught; it is no protection against
deliberate tampering, so the metadata is then checked as hostile input
(``arssr.compress.metadata``).
"""

from __future__ import annotations

import json
import os
import struct
import zlib

from arssr.compress.lr_codec import lr_codec_of
from arssr.errors import InputError
from arssr.files import atomic_file, check_input_file, check_output

MAGIC = b"ARSSRZ"
FORMAT_VERSION = 5
#: Versions this reader decodes.
READS = (1, 2, 3, 4, 5)
SUFFIX = ".arssr"
_HEAD = struct.Struct("<6sBBII")
_CRC = struct.Struct("<I")
#: Smallest possible file: header, empty metadata and payload, checksum.
MIN_SIZE = _HEAD.size + _CRC.size


def pack(meta: dict, payload: bytes) -> bytes:
    """The file's bytes for ``meta`` (JSON-serialisable) and ``payload``."""
    block = zlib.compress(json.dumps(meta, separators=(",", ":"), sort_keys=True).encode(), 9)
    version = (5 if "background_decoding" in meta else 4 if "consistency_weights" in meta
               else 3 if lr_codec_of(meta) != "siren" else 2 if meta.get("finetune") else 1)
    body = _HEAD.pack(MAGIC, version, 0, len(block), len(payload)) + block + payload
    return body + _CRC.pack(zlib.crc32(body))


def unpack(blob: bytes, name: str = "file") -> tuple[dict, bytes]:
    """``(meta, payload)`` of a file's bytes, after checking its frame and checksum."""
    if len(blob) < MIN_SIZE or not blob.startswith(MAGIC):
        if blob[: len(MAGIC)] == MAGIC[: len(blob)] and len(blob) < MIN_SIZE:
            raise InputError(f"{name}: truncated .arssr file ({len(blob)} bytes)")
        raise InputError(f"{name}: not an .arssr file (wrong magic number)")
    _, version, _, meta_len, data_len = _HEAD.unpack_from(blob)
    if version not in READS:
        raise InputError(f"{name}: .arssr format version {version} is not supported (this arssr reads up to {FORMAT_VERSION})")
    expected = _HEAD.size + meta_len + data_len + _CRC.size
    if len(blob) != expected:
        state = "truncated" if len(blob) < expected else "has trailing bytes"
        raise InputError(f"{name}: .arssr file {state} ({len(blob)} bytes, header says {expected})")
    (stored,) = _CRC.unpack_from(blob, len(blob) - _CRC.size)
    if zlib.crc32(blob[: -_CRC.size]) != stored:
        raise InputError(f"{name}: .arssr file is corrupted (checksum mismatch)")
    block = blob[_HEAD.size: _HEAD.size + meta_len]
    try:
        meta = json.loads(zlib.decompress(block))
    except (zlib.error, ValueError) as err:  # only a file written wrongly gets here: the checksum matched
        raise InputError(f"{name}: unreadable .arssr metadata ({err})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{name}: .arssr metadata is not a JSON object")
    return meta, blob[_HEAD.size + meta_len: -_CRC.size]


def write_container(path: str | os.PathLike, meta: dict, payload: bytes, overwrite: bool = False) -> int:
    """Write atomically; returns the file's size in bytes."""
    path = check_output(path, overwrite)
    blob = pack(meta, payload)
    with atomic_file(path) as handle:
        handle.write(blob)
    return len(blob)


def read_container(path: str | os.PathLike) -> tuple[dict, bytes]:
    """``(meta, payload)`` of an ``.arssr`` file, its frame, checksum and metadata checked
    (``arssr.compress.metadata``: a crafted file is refused before anything is decoded)."""
    from arssr.compress.metadata import check_metadata

    path = check_input_file(path)
    meta, payload = unpack(path.read_bytes(), str(path))
    try:
        check_metadata(meta)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    return meta, payload
