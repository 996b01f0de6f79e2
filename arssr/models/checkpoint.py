"""Model files: arssr's own safetensors (self-describing) and the official release's state dicts.

An arssr weights file is a safetensors file whose metadata holds
``format = "arssr"``, ``format_version`` and ``model`` (JSON ``{"name", "args"}``),
so :func:`load_model` rebuilds the network from the file alone. Tensors may
be stored in float16 to halve the file; they are loaded as float32.

A ``.pt``/``.pth``/``.pkl`` file is read with ``torch.load(weights_only=True)``
(never full pickle) and must hold the official release's key names and shapes
(``encoder.sfe1``, ``encoder.rdbs.{i}.layers.{j}.conv``, ``decoder.stage_one.{0,2,4,6}``, ...).
Those weights were trained on arrays in SimpleITK (z, y, x) order with min-max
intensities, and the model is built with those conventions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from contextlib import nullcontext
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from arssr.errors import InputError, ModelFileError
from arssr.files import atomic_file, check_input_file
from arssr.models.arssr import ArSSR

FORMAT = "arssr"
FORMAT_VERSION = 1
#: Name of the default model in the package's ``pretrained/`` folder.
DEFAULT_MODEL = "arssr_rdn_v10.safetensors"
TORCH_SUFFIXES = (".pt", ".pth", ".pkl")
#: Largest size or count that a model file's arguments may give (the shipped model's largest is 128): a file
#: asking for more is refused before any network is built.
MAX_MODEL_ARGUMENT = 4096


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pretrained_path(name: str) -> Path:
    """Where the shipped weights file ``name`` lives in ``arssr.pretrained`` (it may not be installed)."""
    return Path(str(resources.files("arssr.pretrained"))) / name


def default_model_path() -> Path:
    """Where the shipped default model lives (it may not be installed)."""
    return pretrained_path(DEFAULT_MODEL)


def save_model(model: ArSSR, path: str | os.PathLike, half: bool = False, **metadata: str) -> Path:
    """Write ``model`` as self-describing safetensors, atomically. ``half`` stores float16."""
    return save_weights(model, path, FORMAT, FORMAT_VERSION, half, **metadata)


def save_weights(module: torch.nn.Module, path: str | os.PathLike, format_name: str, format_version: int,
                 half: bool = False, **metadata: str) -> Path:
    """``module``'s tensors (float16 with ``half``) as safetensors, atomically, with metadata ``format``,
    ``format_version``, ``model`` (its ``config`` as JSON) and ``metadata``."""
    path = Path(path)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
               for k, v in module.state_dict().items()}
    meta = {"format": format_name, "format_version": str(format_version), "model": json.dumps(module.config),
            **metadata}
    with atomic_file(path) as handle:
        handle.write(save(tensors, metadata=meta))
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of an arssr safetensors file, its model record checked (:func:`model_config`); raises
    ``ModelFileError`` on anything else."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: not a readable safetensors file ({err})") from None
    if meta.get("format") != FORMAT or "model" not in meta:
        raise ModelFileError(f"{path}: safetensors file without arssr model metadata")
    version = meta.get("format_version", "0")
    if not version.isdigit():
        raise ModelFileError(f"{path}: weights format version {version[:20]!r} is not a whole number")
    if int(version) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: weights format version {version} is newer than this arssr reads ({FORMAT_VERSION})")
    model_config(meta, path)
    return meta


def model_config(meta: dict[str, str], path: str | os.PathLike) -> dict:
    """The ``{"name", "args"}`` record of a weights file's metadata, checked as hostile input: valid JSON, an
    arssr model, every size or count within :data:`MAX_MODEL_ARGUMENT`; ``ModelFileError`` otherwise."""
    try:
        config = json.loads(meta["model"])
    except ValueError as err:
        raise ModelFileError(f"{path}: model metadata is not valid JSON ({err})") from None
    if not (isinstance(config, dict) and isinstance(config.get("args"), dict)):
        raise ModelFileError(f"{path}: model metadata must be an object with a name and args")
    if config.get("name") != "arssr":
        raise ModelFileError(f"{path}: unknown model {str(config.get('name'))[:40]!r}")
    args = config["args"]
    encoder_args = args.get("encoder_args") or {}
    if not isinstance(encoder_args, dict):
        raise ModelFileError(f"{path}: model encoder_args must be an object")
    for key, value in [*args.items(), *encoder_args.items()]:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_MODEL_ARGUMENT:
            raise ModelFileError(f"{path}: model argument {key} = {str(value)[:20]} is above the largest, "
                                 f"{MAX_MODEL_ARGUMENT}")
    counts = [value for key, value in encoder_args.items() if key.startswith("num_") and key != "num_features"
              and isinstance(value, int) and not isinstance(value, bool)]
    if math.prod(abs(value) for value in counts) > MAX_MODEL_ARGUMENT:
        raise ModelFileError(f"{path}: model encoder of {' x '.join(map(str, counts))} layers; more than "
                             f"{MAX_MODEL_ARGUMENT} in all is not an arssr model")
    return config


def load_model(path: str | os.PathLike | None = None) -> ArSSR:
    """Rebuild a model from a weights file (default: the shipped model), in eval mode on the CPU.

    The architecture the file describes is checked against its tensors' shapes before any weights are
    allocated, and weights that are NaN or infinite are refused."""
    path = Path(path) if path is not None else default_model_path()
    if not os.path.lexists(path) and path == default_model_path():
        raise ModelFileError(f"no default model is installed (expected {path}); pass --weights FILE "
                             "(an arssr .safetensors file or the official ArSSR_RDN.pkl)")
    try:
        check_input_file(path, "weights file")
    except InputError as err:
        raise ModelFileError(str(err)) from None
    if path.suffix.lower() in TORCH_SUFFIXES:
        model, state = _official_model(path)
    else:
        meta = read_metadata(path)
        args = model_config(meta, path)["args"]
        _check_shapes(_built(args, path, torch.device("meta")), path)
        model = _built(args, path)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        model.card = {k: v for k, v in meta.items() if k not in ("format", "format_version", "model")}
    check_finite(state, path)
    _load_strict(model, state, path)
    return model.eval()


def _built(args: dict, path: Path, device: torch.device | None = None) -> ArSSR:
    """The network ``args`` describe (on the ``meta`` device: its shapes only, nothing allocated)."""
    try:
        with torch.device(device) if device is not None else nullcontext():
            return ArSSR(**args)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: model arguments do not build a model ({err})") from None


def _check_shapes(model: ArSSR, path: Path) -> None:
    """``ModelFileError`` unless the safetensors file at ``path`` holds exactly ``model``'s tensors, by shape."""
    with safe_open(str(path), framework="pt") as handle:
        stored = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    wanted = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    if stored != wanted:
        missing, unexpected = sorted(set(wanted) - set(stored)), sorted(set(stored) - set(wanted))
        differ = [key for key in sorted(set(wanted) & set(stored)) if wanted[key] != stored[key]]
        detail = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected else
                  f"{differ[0]} is {stored[differ[0]]} in the file, {wanted[differ[0]]} in the model")
        raise ModelFileError(f"{path}: weights do not match the model ({detail})")


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """``ModelFileError`` naming ``path`` and the first such tensor when floating-point weights are NaN or infinite."""
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        more = f" and {len(bad) - 1} more tensors" if len(bad) > 1 else ""
        raise ModelFileError(f"{path}: weights hold NaN or infinite values (in {bad[0]}{more})")


def _load_strict(model: ArSSR, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) if len(first) > 1 else first[0]
        raise ModelFileError(f"{path}: weights do not match the model ({detail[:300]})") from None


def _official_model(path: Path) -> tuple[ArSSR, dict[str, torch.Tensor]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or unsafe pickles
        raise ModelFileError(f"{path}: not a readable PyTorch weights file ({type(err).__name__})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ModelFileError(f"{path}: expected a state dict of tensors named by strings")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return ArSSR(**official_args(state, path)), state


def official_args(state: dict[str, torch.Tensor], path: Path | str = "weights") -> dict:
    """ArSSR arguments that reproduce an official RDN state dict's shapes."""
    try:
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.rdbs\.(\d+)\.", k))}
        layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.rdbs\.0\.layers\.(\d+)\.", k))}
        linears = {int(m.group(1)) for k in state if (m := re.match(r"decoder\.stage_one\.(\d+)\.weight", k))}
        return {
            "encoder": "rdn",
            "encoder_args": {
                "num_features": state["encoder.sfe1.weight"].shape[0],
                "growth": state["encoder.rdbs.0.layers.0.conv.weight"].shape[0],
                "num_blocks": len(blocks),
                "num_layers": len(layers),
            },
            "feature_dim": state["encoder.output.weight"].shape[0],
            "decoder_width": state["decoder.stage_one.0.weight"].shape[0],
            "decoder_depth": len(linears),
            "axis_order": "zyx",
            "normalization": "minmax",
        }
    except KeyError as err:
        raise ModelFileError(f"{path}: not an ArSSR RDN state dict (missing {err.args[0]})") from None
