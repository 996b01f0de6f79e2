"""The training configuration: defaults, a YAML file and ``key=value`` overrides, checked before any work."""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from arssr import pairs
from arssr.degrade import DEGRADATIONS
from arssr.errors import InputError
from arssr.training import datasets

DEFAULTS: dict[str, Any] = {
    "data": None,  # folder, glob, CSV, NIfTI file or mni-synthetic
    "out": None,  # run folder
    "init": None,  # weights file to start from ("default": the shipped model); its architecture replaces "model"
    "seed": 0,
    "deterministic": False,
    "device": "auto",
    "amp": "none",  # none, bf16 or fp16
    "threads": None,
    "batch_size": 15,  # N examples per step (global, over all processes)
    "samples": 8000,  # K voxels per example
    "epochs": 2500,
    "steps_per_epoch": None,  # default: train subjects * crops_per_volume / batch_size (SYNTHETIC_EPOCH)
    "steps": None,  # default: epochs * steps_per_epoch
    "log_every": 50,
    "val_every": 2000,
    "checkpoint_every": 2000,
    "model": {"encoder": "rdn", "encoder_args": {}, "feature_dim": 128, "decoder_width": 256, "decoder_depth": 4,
              "axis_order": "xyz", "normalization": "percentile", "residual": False},
    "sampling": {"crop": 40, "lr_size": 10, "scale_min": 2.0, "scale_max": 4.0, "anisotropic": False,
                 "crops_per_volume": 6, "pool_volumes": 8, "foreground_threshold": 0.1, "min_foreground": 0.5,
                 "max_tries": 20, "num_workers": 0, "synthetic_share": 0.0},
    "degradation": {"methods": {"cubic": 1.0}, "noise": None, "noise_std": 0.0, "bias": 0.0},
    "synthetic": {},  # arssr.training.synthetic.SyntheticMNI options for data: mni-synthetic
    "split": {"ratios": list(datasets.PAPER_SPLIT), "seed": 0},
    "optim": {"lr": 1.0e-4, "betas": [0.9, 0.999], "eps": 1.0e-8, "decay_every": 200, "decay": 0.5},
    "val": {"volumes": 4, "scales": [2.0, 3.2], "method": None, "seed": 0, "tile": None},
}
#: Dicts whose keys are free (any encoder argument, any degradation name).
FREE_KEYS = ("model.encoder_args", "degradation.methods", "synthetic")
#: Numbers or ``[low, high]`` ranges drawn per example.
RANGE_KEYS = ("degradation.noise_std", "degradation.bias")
#: YAML 1.1 reads ``1e-4`` (no dot) as a string.
SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _flat_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        name = prefix + key
        keys += _flat_keys(value, name + ".") if isinstance(value, dict) and name not in FREE_KEYS else [name]
    return keys


def _coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of ``default`` (ints and ``1e-4`` pass for floats)."""
    if default is None or name.startswith(FREE_KEYS) or name in RANGE_KEYS:
        return value
    kind = type(default)
    if kind is float and not isinstance(value, bool) and (
            isinstance(value, (int, float)) or isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip())):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"config key {name!r} must be of type {kind.__name__}, got {value!r}")
    return value


def merge(base: dict, update: dict, prefix: str = "", defaults: dict = DEFAULTS) -> dict:
    """``base`` updated recursively by ``update``; a key unknown to ``defaults`` is an ``InputError``."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        name = prefix + str(key)
        if name.startswith(FREE_KEYS):  # a whole free dict is replaced, one of its entries set
            out[key] = copy.deepcopy(value)
            continue
        if key not in out:
            given = _flat_keys({key: value}, prefix)[0] if isinstance(value, dict) and value else name
            raise InputError(f"unknown config key {given!r}; valid keys: {', '.join(_flat_keys(DEFAULTS))}")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge(out[key], value, name + ".", defaults[key])
        else:
            out[key] = _coerce(name, value, defaults[key])
    return out


def parse_override(text: str) -> dict:
    """``"a.b=value"`` -> ``{"a": {"b": value}}``, the value read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"override {text!r} is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:  # e.g. a glob pattern starting with '*'
        value = raw
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def load_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str | dict] = (), base: dict | None = None
) -> dict:
    """:data:`DEFAULTS` updated by ``base``, the YAML file ``path`` and ``overrides`` (``"key=value"`` or dicts)."""
    config = merge(DEFAULTS, base or {})
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"{path}: cannot read the config ({err})") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{path}: the config must be a mapping of keys to values")
        config = merge(config, loaded)
    for override in overrides:
        config = merge(config, parse_override(override) if isinstance(override, str) else override)
    return check_config(config)


def _range(value: Any, name: str) -> tuple[float, float]:
    """A number or ``[low, high]`` as ``(low, high)`` with ``0 <= low <= high``."""
    pair = [value, value] if isinstance(value, (int, float)) else value
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)
            and 0 <= pair[0] <= pair[1]):
        raise InputError(f"{name} must be a number >= 0 or a range [low, high], got {value!r}")
    return float(pair[0]), float(pair[1])


def check_config(config: dict) -> dict:
    """``config`` completed with :data:`DEFAULTS`; ``InputError`` naming the first key whose value cannot work."""
    config = merge(DEFAULTS, config)
    s, d, v, optim = config["sampling"], config["degradation"], config["val"], config["optim"]
    methods, ratios = ", ".join(DEGRADATIONS), config["split"]["ratios"]
    noise_std, _ = _range(d["noise_std"], "degradation.noise_std"), _range(d["bias"], "degradation.bias")
    try:
        checks = [
            (config["data"] is not None, "data: give a folder, glob, CSV, NIfTI file or mni-synthetic"),
            (config["out"] is not None, "out: give the run folder"),
            (config["amp"] in AMP, f"amp must be one of {', '.join(AMP)}"),
            (all(config[k] > 0 for k in ("batch_size", "samples", "epochs", "log_every", "val_every",
                                         "checkpoint_every")),
             "batch_size, samples, epochs, log_every, val_every and checkpoint_every must be positive"),
            (all(config[k] is None or isinstance(config[k], int) and config[k] > 0
                 for k in ("steps", "steps_per_epoch")), "steps and steps_per_epoch must be positive integers or null"),
            (all(s[k] > 0 for k in ("crop", "lr_size", "crops_per_volume", "pool_volumes", "max_tries")),
             "sampling: sizes and counts must be positive"),
            (1 <= s["scale_min"] <= s["scale_max"], "sampling: need 1 <= scale_min <= scale_max"),
            (math.floor(s["lr_size"] * s["scale_max"] + 0.5) <= s["crop"],
             "sampling: lr_size * scale_max exceeds crop"),
            (0 <= s["min_foreground"] <= 1 and s["num_workers"] >= 0 and 0 <= s["synthetic_share"] <= 1,
             "sampling: min_foreground and synthetic_share in [0, 1], num_workers >= 0"),
            (isinstance(d["methods"], dict) and set(d["methods"]) <= set(DEGRADATIONS)
             and all(w >= 0 for w in d["methods"].values()) and sum(d["methods"].values()) > 0,
             f"degradation.methods: weights >= 0 (not all 0) of {methods}"),
            (d["noise"] in (None, "gaussian", "rician"), "degradation.noise must be null, gaussian or rician"),
            (d["noise"] is not None or noise_std[1] == 0, "degradation.noise_std needs degradation.noise"),
            (v["volumes"] >= 0 and all(k >= 1 for k in v["scales"]), "val: volumes >= 0 and scales >= 1"),
            (v["method"] is None or v["method"] in DEGRADATIONS, f"val.method must be null or one of {methods}"),
            (optim["lr"] > 0 and optim["decay_every"] > 0, "optim: lr and decay_every must be positive"),
            (len(ratios) == 3 and min(ratios) >= 0 and ratios[0] > 0, "split.ratios: train, val, test (train > 0)"),
        ]
    except TypeError as err:
        raise InputError(f"config: a value has the wrong type ({err})") from None
    for ok, message in checks:
        if not ok:
            raise InputError(f"config: {message}")
    _check_synthetic(config["synthetic"])
    return config


def _check_synthetic(options: Any) -> None:
    from arssr.training.synthetic import SyntheticMNI

    if not isinstance(options, dict):
        raise InputError(f"config: synthetic must be a mapping of SyntheticMNI options, got {options!r}")
    try:
        SyntheticMNI(**options)
    except TypeError as err:
        raise InputError(f"config: synthetic: {err}") from None


def pair_options(config: dict) -> pairs.PairOptions:
    """How a checked config makes training examples."""
    s, d = config["sampling"], config["degradation"]
    return pairs.PairOptions(
        lr_size=s["lr_size"], scale=(s["scale_min"], s["scale_max"]), anisotropic=s["anisotropic"],
        samples=config["samples"], methods=dict(d["methods"]), noise=d["noise"],
        noise_std=_range(d["noise_std"], "noise_std"), bias=_range(d["bias"], "bias"),
    )


def crop_options(config: dict) -> datasets.CropOptions:
    """How a checked config cuts HR crops."""
    s = config["sampling"]
    return datasets.CropOptions(
        size=s["crop"], per_volume=s["crops_per_volume"], threshold=s["foreground_threshold"],
        min_foreground=s["min_foreground"], tries=s["max_tries"],
    )
