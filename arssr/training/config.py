"""The training configuration: typed sections with the paper's defaults, a YAML file and ``key=value`` overrides.

:func:`load_config` applies a YAML file and overrides (nested keys with dots,
values read as YAML) to :class:`TrainConfig`'s defaults; a key that no section
has, or a value of another type than its default's, is an ``InputError``
naming the key. :func:`check_config` then checks the values that cannot work
together. The run folder's ``config.yaml`` and the checkpoint hold
:meth:`TrainConfig.as_dict`, which :func:`load_config` reads back.
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from arssr import pairs
from arssr.degrade import DEGRADATIONS, SLICE_PROFILES
from arssr.errors import InputError
from arssr.models.tiling import PRECISIONS
from arssr.training import datasets

#: YAML 1.1 reads ``1e-4`` (no dot) as a string.
SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
#: Earlier spellings of a precision: ``none`` is ``fp32``, as in ``arssr upsample --precision``.
PRECISION_ALIASES = {"none": "fp32"}
#: Learning-rate schedules of :class:`OptimConfig`.
SCHEDULES = ("step", "cosine")
#: Field metadata of a value taken as it is: a free mapping (replaced whole), or a number or range.
FREE = {"free": True}


@dataclass(frozen=True)
class ModelConfig:
    """The network: :class:`arssr.models.ArSSR`'s constructor arguments."""

    encoder: str = "rdn"
    encoder_args: dict = field(default_factory=dict, metadata=FREE)
    feature_dim: int = 128
    decoder_width: int = 256
    decoder_depth: int = 4
    axis_order: str = "xyz"
    normalization: str = "percentile"
    residual: bool = False


@dataclass(frozen=True)
class SamplingConfig:
    """HR crops (``crop`` voxels, avoiding background) and the examples cut from them (``lr_size``, scales)."""

    crop: int = 40
    lr_size: int = 10
    scale_min: float = 2.0
    scale_max: float = 4.0
    anisotropic: bool = False
    thick_share: float = 0.0  # share of thick-slice examples (arssr.pairs.PairOptions)
    thick_scale: list = field(default_factory=lambda: [1.5, 8.0], metadata=FREE)
    inplane_scale: list = field(default_factory=lambda: [1.0, 2.0], metadata=FREE)
    thick_profiles: list = field(default_factory=lambda: ["boxcar", "gaussian"], metadata=FREE)
    crops_per_volume: int = 6
    pool_volumes: int = 8
    foreground_threshold: float = 0.1
    min_foreground: float = 0.5
    max_tries: int = 20
    num_workers: int = 0
    synthetic_share: float = 0.0


@dataclass(frozen=True)
class DegradationConfig:
    """Weights of the degradation models, and noise and bias: a number or a ``[low, high]`` range."""

    methods: dict = field(default_factory=lambda: {"cubic": 1.0}, metadata=FREE)
    noise: str | None = None
    noise_std: Any = field(default=0.0, metadata=FREE)
    bias: Any = field(default=0.0, metadata=FREE)


@dataclass(frozen=True)
class SplitConfig:
    """Train, val and test shares of the subjects, and the seed of the split."""

    ratios: list = field(default_factory=lambda: list(datasets.PAPER_SPLIT))
    seed: int = 0


@dataclass(frozen=True)
class OptimConfig:
    """Adam. ``schedule``: ``step`` multiplies the learning rate by ``decay`` every ``decay_every`` epochs;
    ``cosine`` anneals it to 0 over the run's steps. Either starts with ``warmup_steps`` of linear warm-up."""

    lr: float = 1.0e-4
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1.0e-8
    schedule: str = "step"
    warmup_steps: int = 0
    decay_every: int = 200
    decay: float = 0.5


@dataclass(frozen=True)
class ValConfig:
    """Validation: whole-volume SR of ``volumes`` val subjects at each scale (``method``: the main degradation)."""

    volumes: int = 4
    scales: list = field(default_factory=lambda: [2.0, 3.2])
    method: str | None = None
    seed: int = 0
    tile: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """One training run (the paper's recipe by default)."""

    data: str | None = None  # folder, glob, CSV, NIfTI file or mni-synthetic
    out: str | None = None  # run folder
    init: str | None = None  # weights file to start from ("default": the shipped model); its architecture wins
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: str = "fp32"  # fp32, bf16 or fp16 (autocast), as arssr upsample's --precision
    threads: int | None = None
    batch_size: int = 15  # N examples per step (global, over all processes)
    samples: int = 8000  # K voxels per example
    epochs: int = 2500
    steps_per_epoch: int | None = None  # default: train subjects * crops_per_volume / batch_size
    steps: int | None = None  # default: epochs * steps_per_epoch
    log_every: int = 50
    val_every: int = 2000
    checkpoint_every: int = 2000
    export_steps: list = field(default_factory=list)  # steps whose weights are kept as step_NNNNNN.safetensors
    max_seconds: float | None = None  # stop (and save) after this many seconds of training, summed over resumes
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    synthetic: dict = field(default_factory=dict, metadata=FREE)  # SyntheticMNI options for data: mni-synthetic
    split: SplitConfig = field(default_factory=SplitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)

    def as_dict(self) -> dict:
        """The nested plain dict that ``config.yaml`` and the checkpoint hold."""
        return asdict(self)


def _flat_keys(section: Any, prefix: str = "") -> list[str]:
    """Every key of a config section, nested ones with dots."""
    keys = []
    for spec in fields(section):
        value = getattr(section, spec.name)
        keys += _flat_keys(value, f"{prefix}{spec.name}.") if is_dataclass(value) else [prefix + spec.name]
    return keys


def _first_key(name: str, value: Any) -> str:
    """The first full key that an override of ``name`` by ``value`` sets."""
    while isinstance(value, dict) and value:
        key, value = next(iter(value.items()))
        name = f"{name}.{key}"
    return name


def _coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of ``default`` (ints and ``1e-4`` pass for floats)."""
    kind = type(default)
    if kind is float and not isinstance(value, bool) and (
            isinstance(value, (int, float)) or isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip())):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"config key {name!r} must be of type {kind.__name__}, got {value!r}")
    return value


def updated(section: Any, update: dict, prefix: str = "") -> Any:
    """A copy of the config ``section`` with ``update``'s values (nested dicts for nested sections)."""
    defaults = type(section)()
    specs = {spec.name: spec for spec in fields(section)}
    changes = {}
    for key, value in update.items():
        name = prefix + str(key)
        if key not in specs:
            raise InputError(f"unknown config key {_first_key(name, value)!r}; "
                             f"valid keys: {', '.join(_flat_keys(TrainConfig()))}")
        default = getattr(defaults, key)
        if specs[key].metadata.get("free") or default is None:
            changes[key] = copy.deepcopy(value)
        elif is_dataclass(default):
            if not isinstance(value, dict):
                raise InputError(f"config key {name!r} must be of type dict, got {value!r}")
            changes[key] = updated(changes.get(key, getattr(section, key)), value, name + ".")
        else:
            changes[key] = _coerce(name, value, default)
    return replace(section, **changes)


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
) -> TrainConfig:
    """The defaults updated by ``base``, the YAML file ``path`` and ``overrides`` (``"key=value"`` or dicts)."""
    config = updated(TrainConfig(), base or {})
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"{path}: cannot read the config ({err})") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: cannot read the config (not a YAML text file: it holds bytes that are not "
                             "UTF-8 text)") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{path}: the config must be a mapping of keys to values")
        config = updated(config, loaded)
    for override in overrides:
        config = updated(config, parse_override(override) if isinstance(override, str) else override)
    return check_config(config)


def value_range(value: Any, name: str) -> tuple[float, float]:
    """A number or ``[low, high]`` as ``(low, high)`` with ``0 <= low <= high``."""
    pair = [value, value] if isinstance(value, (int, float)) else value
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)
            and 0 <= pair[0] <= pair[1]):
        raise InputError(f"{name} must be a number >= 0 or a range [low, high], got {value!r}")
    return float(pair[0]), float(pair[1])


def check_config(config: TrainConfig | dict) -> TrainConfig:
    """``config`` (a dict is completed with the defaults), its precision spelt as ``arssr upsample``'s;
    ``InputError`` naming the first key whose value cannot work."""
    if isinstance(config, dict):
        config = updated(TrainConfig(), config)
    config = replace(config, amp=PRECISION_ALIASES.get(config.amp, config.amp))
    s, d, v, optim = config.sampling, config.degradation, config.val, config.optim
    methods, ratios = ", ".join(DEGRADATIONS), config.split.ratios
    noise_std, _ = value_range(d.noise_std, "degradation.noise_std"), value_range(d.bias, "degradation.bias")
    thick, inplane = value_range(s.thick_scale, "sampling.thick_scale"), value_range(s.inplane_scale,
                                                                                     "sampling.inplane_scale")
    try:
        checks = [
            (config.data is not None, "data: give a folder, glob, CSV, NIfTI file or mni-synthetic"),
            (config.out is not None, "out: give the run folder"),
            (config.amp in PRECISIONS, f"amp must be one of {', '.join(PRECISIONS)}"),
            (all(getattr(config, k) > 0 for k in ("batch_size", "samples", "epochs", "log_every", "val_every",
                                                  "checkpoint_every")),
             "batch_size, samples, epochs, log_every, val_every and checkpoint_every must be positive"),
            (all(getattr(config, k) is None or isinstance(getattr(config, k), int) and getattr(config, k) > 0
                 for k in ("steps", "steps_per_epoch")), "steps and steps_per_epoch must be positive integers or null"),
            (all(getattr(s, k) > 0 for k in ("crop", "lr_size", "crops_per_volume", "pool_volumes", "max_tries")),
             "sampling: sizes and counts must be positive"),
            (1 <= s.scale_min <= s.scale_max, "sampling: need 1 <= scale_min <= scale_max"),
            (math.floor(s.lr_size * s.scale_max + 0.5) <= s.crop, "sampling: lr_size * scale_max exceeds crop"),
            (0 <= s.thick_share <= 1 and isinstance(s.thick_profiles, list) and s.thick_profiles
             and set(s.thick_profiles) <= set(SLICE_PROFILES),
             f"sampling: thick_share in [0, 1], thick_profiles a non-empty list of {', '.join(SLICE_PROFILES)}"),
            (s.thick_share == 0 or 1 <= thick[0] and 1 <= inplane[0]
             and math.floor(s.lr_size * max(thick[1], inplane[1]) + 0.5) <= s.crop,
             "sampling: thick_scale and inplane_scale need scales >= 1 and lr_size times their largest within crop"),
            (0 <= s.min_foreground <= 1 and s.num_workers >= 0 and 0 <= s.synthetic_share <= 1,
             "sampling: min_foreground and synthetic_share in [0, 1], num_workers >= 0"),
            (isinstance(d.methods, dict) and set(d.methods) <= set(DEGRADATIONS)
             and all(w >= 0 for w in d.methods.values()) and sum(d.methods.values()) > 0,
             f"degradation.methods: weights >= 0 (not all 0) of {methods}"),
            (d.noise in (None, "gaussian", "rician"), "degradation.noise must be null, gaussian or rician"),
            (d.noise is not None or noise_std[1] == 0, "degradation.noise_std needs degradation.noise"),
            (v.volumes >= 0 and all(k >= 1 for k in v.scales), "val: volumes >= 0 and scales >= 1"),
            (v.method is None or v.method in DEGRADATIONS, f"val.method must be null or one of {methods}"),
            (optim.lr > 0 and optim.decay_every > 0 and optim.warmup_steps >= 0,
             "optim: lr and decay_every must be positive, warmup_steps >= 0"),
            (optim.schedule in SCHEDULES, f"optim.schedule must be one of {', '.join(SCHEDULES)}"),
            (isinstance(config.export_steps, list) and all(isinstance(k, int) and not isinstance(k, bool) and k > 0
                                                           for k in config.export_steps),
             "export_steps must be a list of positive step numbers"),
            (config.max_seconds is None or config.max_seconds > 0, "max_seconds must be positive or null"),
            (len(ratios) == 3 and min(ratios) >= 0 and ratios[0] > 0, "split.ratios: train, val, test (train > 0)"),
        ]
    except TypeError as err:
        raise InputError(f"config: a value has the wrong type ({err})") from None
    for ok, message in checks:
        if not ok:
            raise InputError(f"config: {message}")
    _check_synthetic(config.synthetic)
    return config


def _check_synthetic(options: Any) -> None:
    from arssr.training.synthetic import SyntheticMNI

    if not isinstance(options, dict):
        raise InputError(f"config: synthetic must be a mapping of SyntheticMNI options, got {options!r}")
    try:
        SyntheticMNI(**options)
    except TypeError as err:
        raise InputError(f"config: synthetic: {err}") from None


def pair_options(config: TrainConfig) -> pairs.PairOptions:
    """How a checked config makes training examples."""
    s, d = config.sampling, config.degradation
    return pairs.PairOptions(
        lr_size=s.lr_size, scale=(s.scale_min, s.scale_max), anisotropic=s.anisotropic,
        thick_share=s.thick_share, thick_scale=value_range(s.thick_scale, "thick_scale"),
        inplane_scale=value_range(s.inplane_scale, "inplane_scale"), thick_profiles=tuple(s.thick_profiles),
        samples=config.samples, methods=dict(d.methods), noise=d.noise,
        noise_std=value_range(d.noise_std, "noise_std"), bias=value_range(d.bias, "bias"),
    )


def crop_options(config: TrainConfig) -> datasets.CropOptions:
    """How a checked config cuts HR crops."""
    s = config.sampling
    return datasets.CropOptions(
        size=s.crop, per_volume=s.crops_per_volume, threshold=s.foreground_threshold,
        min_foreground=s.min_foreground, tries=s.max_tries,
    )
