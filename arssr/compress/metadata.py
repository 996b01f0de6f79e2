"""The ``.arssr`` metadata checked as hostile input, before anything is decoded or allocated.

The container's checksum catches corruption, not a crafted file: a file can carry any metadata with a valid
checksum. :func:`check_metadata` checks every key a reader uses (presence, type, range, and the shapes and
network sizes within bounds), so a bad file is one ``InputError`` naming what is wrong; :func:`check_memory`
refuses a file whose decoding would need more memory than is free, computed from the metadata alone.
"""

from __future__ import annotations

import math
import re

import numpy as np

from arssr.errors import InputError

#: Keys every file has (``arssr.compress.codec``), and those only a SIREN LR has.
REQUIRED = ("shape", "affine", "codes", "dtype", "range", "window", "scale", "method", "lr_shape", "decoder")
SIREN_REQUIRED = ("siren", "quant", "codec")
#: Output data types a decoded volume may have.
DTYPE_KINDS = "iuf"
#: float32 arrays of the HR grid that decoding holds at once, at most (the SR result, the LR's interpolation, two
#: projection bands of each, the region masks' copies and the output).
DECODE_ARRAYS = 16
#: Activations of one SIREN chunk while decoding (pre-activation and sine of a layer, per coordinate and neuron).
SIREN_ACTIVATIONS = 2
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _shown(value) -> str:
    """``repr(value)``, shortened for an error line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value, what: str) -> float:
    """A finite number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {_shown(value)}")
    return float(value)


def _numbers(value, count: int, what: str) -> list[float]:
    if not isinstance(value, list) or len(value) != count:
        raise InputError(f"{what} must be a list of {count} numbers, got {_shown(value)}")
    return [_number(v, what) for v in value]


def _integer(value, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{what} must be a whole number in [{low}, {high}], got {_shown(value)}")
    return value


def _shape(value, what: str, upper) -> tuple[int, int, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise InputError(f"{what} must be a list of 3 sizes, got {_shown(value)}")
    return tuple(_integer(n, what, 1, high) for n, high in zip(value, upper))


def check_metadata(meta: dict) -> None:
    """``InputError`` (``malformed .arssr metadata: ...``) unless ``meta`` is metadata that decoding can use."""
    try:
        _check(meta)
    except InputError as err:
        raise InputError(f"malformed .arssr metadata: {err}") from None


def _check(meta) -> None:
    import nibabel as nib

    from arssr.compress.config import MAX_DEPTH, MAX_WIDTH
    from arssr.compress.lr_codec import CODECS, lr_codec_names
    from arssr.degrade import DEGRADATIONS
    from arssr.geometry import MAX_NIFTI_DIM

    if not isinstance(meta, dict):
        raise InputError("not a JSON object")
    codec = meta.get("lr_codec", "siren")
    if codec not in lr_codec_names():
        raise InputError(f"unknown LR codec {_shown(codec)}; known: {', '.join(lr_codec_names())}")
    missing = [key for key in REQUIRED + (SIREN_REQUIRED if codec == "siren" else ()) if key not in meta]
    if missing:
        raise InputError(f"missing key {missing[0]!r}")
    shape = _shape(meta["shape"], "shape", (MAX_NIFTI_DIM,) * 3)
    lr_shape = _shape(meta["lr_shape"], "lr_shape", shape)
    scale = _number(meta["scale"], "scale")
    if scale < 1:
        raise InputError(f"scale must be >= 1, got {scale:g}")
    if not isinstance(meta["method"], str) or meta["method"] not in DEGRADATIONS:
        raise InputError(f"unknown downsampling {_shown(meta['method'])}")
    affine = np.reshape(_numbers(meta["affine"], 12, "affine"), (3, 4))
    if not abs(np.linalg.det(affine[:, :3])) > 0:
        raise InputError("affine is singular (its 3 x 3 part has determinant 0)")
    codes = meta["codes"]
    if not isinstance(codes, list) or len(codes) != 2:
        raise InputError(f"codes must be a list of 2 NIfTI xform codes, got {_shown(codes)}")
    known = sorted(set(nib.nifti1.xform_codes.value_set()))
    for code in codes:
        _integer(code, "codes", known[0], known[-1])
    _check_dtype(meta["dtype"])
    low, high = _numbers(meta["range"], 2, "range")
    if low > high:
        raise InputError(f"range [{low:g}, {high:g}] is reversed")
    low, high = _numbers(meta["window"], 2, "window")
    if not low < high:
        raise InputError(f"window [{low:g}, {high:g}] is empty or reversed")
    decoder = meta["decoder"]
    if decoder is None:
        if lr_shape != shape:
            raise InputError(f"lr_shape {list(lr_shape)} differs from shape {list(shape)} without an SR model")
    elif not (isinstance(decoder, dict) and isinstance(decoder.get("name"), str)
              and isinstance(decoder.get("sha256"), str) and _SHA256.fullmatch(decoder["sha256"])):
        raise InputError(f"decoder must be null or a name and a sha256, got {_shown(decoder)}")
    if codec == "siren":
        _check_siren(meta, MAX_WIDTH, MAX_DEPTH)
    elif CODECS[codec].check is not None:  # what that LR codec requires besides
        CODECS[codec].check(meta)
    _check_finetune(meta.get("finetune"), codec, decoder)
    consistency_rule(meta)
    _check_auto(meta.get("auto"), lr_codec_names())


def _check_dtype(name) -> None:
    import nibabel as nib

    try:
        dtype = np.dtype(name) if isinstance(name, str) else None
        if dtype is not None and dtype.kind in DTYPE_KINDS:
            nib.Nifti1Header().set_data_dtype(dtype)
            return
    except (TypeError, ValueError, nib.spatialimages.HeaderDataError):
        pass
    raise InputError(f"dtype {_shown(name)} is not a NIfTI integer or float type")


def _check_siren(meta: dict, max_width: int, max_depth: int) -> None:
    from arssr.compress.quantize import CODECS, check_mode

    siren = meta["siren"]
    if not (isinstance(siren, dict) and set(siren) == {"width", "depth", "w0"}):
        raise InputError(f"siren must hold width, depth and w0, got {_shown(siren)}")
    _integer(siren["width"], "siren width", 1, max_width)
    _integer(siren["depth"], "siren depth", 1, max_depth)
    if not _number(siren["w0"], "siren w0") > 0:
        raise InputError(f"siren w0 must be positive, got {siren['w0']!r}")
    if not isinstance(meta["quant"], str):
        raise InputError(f"quant must be a string, got {_shown(meta['quant'])}")
    check_mode(meta["quant"])
    if meta["codec"] not in CODECS:
        raise InputError(f"unknown payload codec {_shown(meta['codec'])}; known: {', '.join(CODECS)}")


def _check_finetune(record, codec: str, decoder) -> None:
    """``finetune``: absent, or ``{"mode": "bias", "params": N}`` in a SIREN file with an SR model."""
    from arssr.compress.config import FINETUNE

    if not record:
        return
    if not (isinstance(record, dict) and set(record) == {"mode", "params"} and record["mode"] in FINETUNE[1:]):
        raise InputError(f"finetune must be a mode ({', '.join(FINETUNE[1:])}) and a count, got {_shown(record)}")
    if codec != "siren" or decoder is None:
        raise InputError("finetune needs a SIREN LR and an SR model")
    _integer(record["params"], "finetune params", 1, 1 << 31)


def consistency_rule(meta: dict) -> tuple[str, list[float] | None, float | None, list[float] | None]:
    """``(operator, band weights, detail gain, background [gain, low, high])`` of a file, checked (``None`` where
    the file has none); ``InputError`` for values that decoding cannot use."""
    from arssr.compress.decoding import BACKGROUND_KEY, GAIN_KEY, WEIGHTS_KEY
    from arssr.consistency import MAX_WEIGHT
    from arssr.protocol import CONSISTENCY_OPERATORS

    operator = meta.get("consistency", "none")
    if operator not in CONSISTENCY_OPERATORS:
        raise InputError(f"unknown consistency operator {_shown(operator)}; known: {', '.join(CONSISTENCY_OPERATORS)}")
    weights, gain, background = (meta.get(key) for key in (WEIGHTS_KEY, GAIN_KEY, BACKGROUND_KEY))
    if weights is not None:
        if not (isinstance(weights, list) and len(weights) == 2 and all(_finite(w) and abs(w) <= MAX_WEIGHT
                                                                         for w in weights)) or operator == "none":
            raise InputError(f"consistency weights {_shown(weights)} with consistency {_shown(operator)}")
        weights = [float(w) for w in weights]
    if gain is not None:
        if weights is None or not (_finite(gain) and 0 <= gain <= MAX_WEIGHT):
            raise InputError(f"detail gain {_shown(gain)} (it needs consistency weights and lies in [0, {MAX_WEIGHT}])")
        gain = float(gain)
    if background is not None:
        if (gain is None or not isinstance(background, list) or len(background) != 3
                or not all(_finite(v) for v in background) or not 0 <= background[0] <= MAX_WEIGHT
                or not all(abs(w) <= MAX_WEIGHT for w in background[1:])):
            raise InputError(f"background decoding {_shown(background)} (it needs a detail gain; "
                             f"[gain in [0, {MAX_WEIGHT}], two weights of magnitude at most {MAX_WEIGHT}])")
        background = [float(v) for v in background]
    return operator, weights, gain, background


def _finite(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _check_auto(record, codecs) -> None:
    """``auto``: absent, or ``[[lr_codec, scale, psnr or null], ...]``."""
    if record is None:
        return
    if not isinstance(record, list) or not all(
            isinstance(entry, list) and len(entry) == 3 and entry[0] in codecs and _finite(entry[1])
            and (entry[2] is None or _finite(entry[2])) for entry in record):
        raise InputError(f"auto must list [lr_codec, scale, psnr or null] entries, got {_shown(record)}")


def siren_payload_bytes(meta: dict) -> int:
    """Bytes of the raw weight stream that a checked SIREN file's payload decodes to."""
    from arssr.compress.quantize import tensor_overhead, value_bytes
    from arssr.models.siren import Siren

    siren, quant = meta["siren"], meta["quant"]
    params = Siren.parameter_count(siren["width"], siren["depth"]) + (meta.get("finetune") or {}).get("params", 0)
    tensors = 2 * (siren["depth"] + 1)
    return value_bytes(quant) * params + tensor_overhead(quant) * tensors


def decode_bytes(meta: dict) -> int:
    """Memory that decoding a checked file needs at most, in bytes, from its metadata alone: :data:`DECODE_ARRAYS`
    float32 arrays of the HR grid and four of the LR grid, and for a SIREN its weights (9 bytes per byte of an int8
    raw stream: the stream, its float32 tensors and the network's copy) and the activations of one chunk of
    coordinates."""
    from arssr.compress.fitting import DECODE_CHUNK

    need = 4 * DECODE_ARRAYS * math.prod(meta["shape"]) + 4 * 4 * math.prod(meta["lr_shape"])
    if meta.get("lr_codec", "siren") == "siren":
        width = meta["siren"]["width"]
        need += 9 * siren_payload_bytes(meta) + 4 * SIREN_ACTIVATIONS * DECODE_CHUNK * width
    return need


def check_memory(meta: dict) -> None:
    """``InputError`` if decoding a checked file needs more memory than is free (:func:`decode_bytes`)."""
    import torch

    from arssr.device import free_memory_bytes

    need, free = decode_bytes(meta), free_memory_bytes(torch.device("cpu"))
    if need > free:
        raise InputError(f"decoding its {' x '.join(map(str, meta['shape']))} voxels needs about "
                         f"{need / 2**30:.3g} GiB of memory, only {free / 2**30:.3g} GiB is free")
