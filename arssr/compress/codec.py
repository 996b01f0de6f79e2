"""A volume to ``(meta, payload)`` and back, in memory: the SIREN's weights quantised and entropy-coded.

Decoding makes the normalised LR volume (the SIREN's, or another LR codec's: ``arssr.compress.lr_codec``),
then :func:`restore` brings it to the original grid, intensities, dtype and geometry.

The SR model is not in the payload: the metadata names it (file name and
sha256, under the format's ``decoder`` key) and decoding refuses any other.
"""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from arssr.compress import decoding, metadata, quantize
from arssr.compress.config import FINETUNE, CompressionConfig, lr_grid_shape
from arssr.compress.decoding import BACKGROUND_KEY, GAIN_KEY, WEIGHTS_KEY
from arssr.compress.finetune import finetune_sr_model, finetuned_parameters
from arssr.compress.fitting import evaluate_siren, fit_siren
from arssr.compress.lr_codec import decode_lr, lr_codec_of
from arssr.degrade import degrade
from arssr.errors import InputError, ModelFileError
from arssr.intensity import intensity_window
from arssr.models.siren import Siren
from arssr.models.space import ModelSpace
from arssr.volume import Volume




def sr_model_identity(path: str | os.PathLike | None) -> dict:
    """``{"name", "sha256"}`` of an SR model file (default: the shipped model)."""
    from arssr.models import default_model_path, file_sha256

    path = Path(path) if path is not None else default_model_path()
    return {"name": path.name, "sha256": file_sha256(path)}


def load_sr_model(record: dict, path: str | os.PathLike | None):
    """The SR model of ``path`` if it is the one ``record`` names. Without ``path``: the shipped model of
    the name ``record`` gives (files made with an earlier default), else the default model."""
    from arssr.models import default_model_path, file_sha256, load_model
    from arssr.models.checkpoint import pretrained_path

    if path is None:
        name, shipped = record["name"], pretrained_path(record["name"])
        path = shipped if name == Path(name).name and shipped.is_file() else default_model_path()  # bare names only
    path = Path(path)
    wanted = f"{record['name']} (sha256 {record['sha256'][:16]}...)"
    if not path.is_file():
        raise ModelFileError(f"SR model {path} not found; this file needs {wanted}: pass it with --decoder-weights")
    sha = file_sha256(path)
    if sha != record["sha256"]:
        raise ModelFileError(
            f"SR model {path} (sha256 {sha[:16]}...) is not the one this file was compressed with; "
            f"it needs {wanted}: pass the model file it was made with as --decoder-weights"
        )
    return load_model(path)


def _stored_dtype(volume: Volume) -> str:
    """The dtype to restore: the file's own, or float32 if a scale slope made its values non-integer."""
    dtype = np.dtype(volume.input_dtype)
    if volume.header is not None and np.issubdtype(dtype, np.integer):
        slope, inter = volume.header.get_slope_inter()
        if slope not in (None, 1.0) or inter not in (None, 0.0):
            return "float32"
    return dtype.name


def _header_meta(volume: Volume, config: CompressionConfig, lr_shape, window, sr_model: dict | None) -> dict:
    header = volume.header
    codes = [int(header["qform_code"]), int(header["sform_code"])] if header is not None else [0, 0]
    return {
        "shape": list(volume.shape),
        "affine": [float(v) for v in volume.affine[:3].ravel()],
        "codes": codes,
        "dtype": _stored_dtype(volume),
        "range": [float(volume.data.min()), float(volume.data.max())],
        "window": [float(window[0]), float(window[1])],
        "scale": float(config.scale),
        "method": config.method,
        "lr_shape": list(lr_shape),
        "siren": dict(Siren(config.width, config.depth, config.w0).config),
        "quant": config.quant,
        "codec": "none",
        "decoder": sr_model,
    }


def prepare(volume: Volume, config: CompressionConfig, sr_model: str | os.PathLike | None = None):
    """``(meta, normalised LR target, SR model)``: everything but the weights (no SR model at scale 1)."""
    if config.scale == 1:
        meta = _header_meta(volume, config, volume.shape, (float(volume.data.min()), float(volume.data.max())), None)
        return meta, model_space(meta, None).normalize(volume.data), None
    from arssr.models import load_model

    model = load_model(sr_model)  # a clear error first for a missing or foreign file
    lr_shape = lr_grid_shape(volume.shape, config.scale)
    lr = degrade(torch.from_numpy(volume.data), lr_shape, config.method).numpy()
    window = intensity_window(lr, model.normalization)
    meta = _header_meta(volume, config, lr_shape, window, sr_model_identity(sr_model))
    meta.update(decoding.placeholders())  # size the file; measuring the encoding fits them
    return meta, model_space(meta, model).normalize(lr), model


def model_space(meta: dict, model) -> ModelSpace:
    """The file's intensity window and the SR model's axis order (the file's axes, not RAS)."""
    return ModelSpace.file_order(tuple(meta["window"]), model.axis_order if model is not None else "xyz")


def encode(
    volume: Volume,
    config: CompressionConfig,
    sr_model: str | os.PathLike | None = None,
    device: torch.device = torch.device("cpu"),
    target_psnr: float | None = None,
    time_budget: float | None = None,
    progress: bool = False,
) -> list[tuple[dict, bytes]]:
    """Candidate ``(meta, payload)`` encodings of ``volume``: the fitted SIREN, quantised and entropy-coded;
    with ``config.finetune``, first the result of the end-to-end phase, then the SIREN as it was before it
    (:func:`compress_volume` keeps whichever decodes closer to the volume)."""
    meta, target, model = prepare(volume, config, sr_model)
    share = config.finetune_share if config.finetune != "none" else 0.0
    first = replace(config, steps=max(1, round((1 - share) * config.steps)))
    siren = fit_siren(target, first, device, target_psnr, None if time_budget is None else (1 - share) * time_budget,
                      progress)
    candidates = [(siren, [])]
    if config.finetune != "none":
        tuned = copy.deepcopy(siren)
        deltas = finetune_sr_model(tuned, model, model_space(meta, model).normalize(volume.data), config, device,
                                   config.steps - first.steps, None if time_budget is None else share * time_budget,
                                  progress)
        candidates.insert(0, (tuned, deltas))
    encoded = []
    for net, deltas in candidates:
        record = dict(meta)
        if deltas:
            record["finetune"] = {"mode": config.finetune, "params": sum(d.numel() for d in deltas)}
        if model is not None:
            # Decoding makes the SR result consistent with the decoded LR, by weights fitted when the encoding is
            # measured (the end-to-end phase learnt without it: there they may come out near 0).
            record["consistency"] = config.method
        raw = quantize.pack_tensors([*net.state_dict().values(), *deltas], config.quant)
        record["codec"], payload = quantize.entropy_encode(raw)
        encoded.append((record, payload))
    return encoded


@contextmanager
def malformed_metadata() -> Iterator[None]:
    """Metadata that a file cannot be decoded with (a missing key, a wrong type or value): one ``InputError``."""
    try:
        yield
    except InputError:  # says what is wrong already
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"malformed .arssr metadata ({type(err).__name__}: {err})") from None


def decode(
    meta: dict,
    payload: bytes,
    sr_model: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Volume:
    """The volume that ``(meta, payload)`` describe; the SR model at ``sr_model`` (default: as
    :func:`load_sr_model`) must be the recorded one."""
    from arssr.device import resolve_device

    metadata.check_metadata(meta)
    metadata.check_memory(meta)
    device = resolve_device(device)
    lr, model = _lr_and_model(meta, payload, sr_model, device)
    return restore(meta, lr, model, device, progress)


def decode_fitted(meta: dict, payload: bytes, volume: Volume, sr_model: str | os.PathLike | None = None,
                  device: str | torch.device = "auto", progress: bool = False) -> tuple[dict, Volume]:
    """``(meta, decoded)``: for a file whose metadata has ``consistency_weights`` (placeholders, from
    :func:`prepare`), the metadata with the detail gains and band weights fitted against ``volume``, the
    original (``arssr.compress.decoding.fit``), and the volume that a reader decodes from that metadata; for
    another file, ``meta`` and :func:`decode`'s volume. One SR pass either way (a progress bar with ``progress``)."""
    from arssr.device import resolve_device

    device = resolve_device(device)
    lr, model = _lr_and_model(meta, payload, sr_model, device)
    if WEIGHTS_KEY not in meta or model is None:
        return meta, restore(meta, lr, model, device, progress)
    sr = _super_resolved(meta, lr, model, device, progress)
    terms = decoding.Terms.of(lr, sr, meta["consistency"])
    (gain, weights), (background_gain, background_weights) = decoding.fit(
        terms, sr, model_space(meta, model).normalize(volume.data))
    meta = {**meta, GAIN_KEY: gain, WEIGHTS_KEY: list(weights), BACKGROUND_KEY: [background_gain, *background_weights]}
    return meta, _as_volume(meta, decoding.consistent(_consistency_rule(meta, model), lr, sr, terms), model)


def _lr_and_model(meta: dict, payload: bytes, sr_model: str | os.PathLike | None, device: torch.device):
    """``(normalised LR volume, SR model or None)`` of a file."""
    with malformed_metadata():
        model = load_sr_model(meta["decoder"], sr_model) if meta["decoder"] is not None else None
    if lr_codec_of(meta) != "siren":  # another LR codec's stream (arssr.compress.lr_codec)
        return decode_lr(meta, payload), model
    return _siren_lr(meta, payload, model, device), model


def _siren_lr(meta: dict, payload: bytes, model, device: torch.device) -> np.ndarray:
    """The normalised LR volume of a SIREN file (with its fine-tuned SR model parameters applied to ``model``)."""
    with malformed_metadata():
        siren = Siren(**meta["siren"])
        tuned = _finetuned_parameters(meta.get("finetune"), model)
        shapes = [t.shape for t in siren.state_dict().values()] + [p.shape for p in tuned]
        raw = quantize.entropy_decode(meta["codec"], payload, quantize.stream_bytes(shapes, meta["quant"]))
        tensors = quantize.unpack_tensors(raw, shapes, meta["quant"])
        lr_shape = tuple(meta["lr_shape"])
    count = len(siren.state_dict())
    siren.load_state_dict(dict(zip(siren.state_dict(), tensors[:count])))
    with torch.no_grad():
        for parameter, delta in zip(tuned, tensors[count:]):
            parameter += delta
    return evaluate_siren(siren.to(device), lr_shape, device)


def restore(meta: dict, lr: np.ndarray, model, device: torch.device, progress: bool = False) -> Volume:
    """The volume from its decoded normalised LR: the SR ``model`` (none at scale 1) to the original grid, made
    consistent with ``lr`` (``arssr.compress.decoding.consistent``), then the original's intensities, dtype and
    geometry."""
    rule = _consistency_rule(meta, model)  # a malformed file fails before the SR pass
    if model is not None:
        lr = decoding.consistent(rule, lr, _super_resolved(meta, lr, model, device, progress))
    return _as_volume(meta, lr, model)


def _super_resolved(meta: dict, lr: np.ndarray, model, device: torch.device, progress: bool = False) -> np.ndarray:
    """The SR model's output from the normalised LR, on the original grid in the file's axes."""
    from arssr.inference import super_resolve

    with malformed_metadata():
        space, shape = model_space(meta, model), tuple(meta["shape"])
    return space.from_model_axes(super_resolve(space.to_model_axes(lr), model, space.axes(shape), device=device,
                                               progress=progress))


def _consistency_rule(meta: dict, model) -> tuple[str, float | None, list[float] | None, float | None, list | None]:
    """``(operator, floor, band weights or None, detail gain or None, background [gain, low, high] or None)`` of
    a file, checked (``arssr.compress.metadata.consistency_rule``)."""
    try:
        operator, weights, gain, background = metadata.consistency_rule(meta)
    except InputError as err:
        raise InputError(f"malformed .arssr metadata: {err}") from None
    with malformed_metadata():
        floor = model_space(meta, model).intensity(0.0) if float(meta["range"][0]) >= 0 else None
    return operator, floor, weights, gain, background


def _as_volume(meta: dict, data: np.ndarray, model) -> Volume:
    """Normalised ``data`` on the original grid as the original's intensities, dtype and geometry."""
    import nibabel as nib

    with malformed_metadata():
        affine = np.vstack([np.asarray(meta["affine"], dtype=np.float64).reshape(3, 4), [0, 0, 0, 1]])
        dtype, codes = np.dtype(meta["dtype"]), [int(c) for c in meta["codes"]]
        space, clip = model_space(meta, model), tuple(meta["range"])
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_qform(affine, code=codes[0])
    header.set_sform(affine, code=codes[1])
    return Volume(np.ascontiguousarray(space.denormalize(data, clip)), affine, header)


def _finetuned_parameters(record: dict | None, model) -> list[torch.Tensor]:
    """The SR model's parameters that the file's ``finetune`` record changes (checked against it)."""
    if not record:
        return []
    if record["mode"] not in FINETUNE or model is None:
        raise InputError(f"unknown SR model fine-tuning {record['mode']!r} in the file")
    parameters = finetuned_parameters(model)
    if sum(p.numel() for p in parameters) != record["params"]:
        raise InputError(f"the file fine-tunes {record['params']} SR model parameters, the SR model has "
                         f"{sum(p.numel() for p in parameters)}")
    return parameters
