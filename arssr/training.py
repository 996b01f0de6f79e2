"""Training ArSSR (paper section 5): configuration, the training loop, validation and checkpoints.

A configuration is a nested dict (:data:`DEFAULTS`, a YAML file, ``key=value``
overrides). :func:`train` runs it and returns the run folder, which holds
``config.yaml``, ``split.json``, TensorBoard events, ``checkpoint.pt``
(everything needed to resume bit for bit), ``last.safetensors`` and
``best.safetensors`` (by validation PSNR).

Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
DistributedDataParallel (NCCL on GPUs, gloo on CPUs). Every process draws the
same global batch of ``batch_size`` examples from the same seed and trains on
its slice; the loss is scaled so the averaged gradients equal those of one
process on the whole batch. Only rank 0 validates and writes files.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from arssr import __version__, datasets
from arssr.degrade import DEGRADATIONS
from arssr.errors import InputError
from arssr.files import atomic_file, check_output
from arssr.models import ArSSR, load_model, save_model
from arssr.volume import Volume

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
    "synthetic": {},  # arssr.synthetic.SyntheticMNI options for data: mni-synthetic
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
CHECKPOINT = "checkpoint.pt"
#: Files a run writes into its folder (besides TensorBoard's events).
RUN_FILES = ("config.yaml", "split.json", CHECKPOINT, "last.safetensors", "best.safetensors")
#: Steps per epoch with endless synthetic data, unless ``steps_per_epoch`` says otherwise.
SYNTHETIC_EPOCH = 100


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
    from arssr.synthetic import SyntheticMNI

    if not isinstance(options, dict):
        raise InputError(f"config: synthetic must be a mapping of SyntheticMNI options, got {options!r}")
    try:
        SyntheticMNI(**options)
    except TypeError as err:
        raise InputError(f"config: synthetic: {err}") from None


def pair_options(config: dict) -> datasets.PairOptions:
    """How a checked config makes training examples."""
    s, d = config["sampling"], config["degradation"]
    return datasets.PairOptions(
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


def rng_states(device: torch.device) -> dict:
    """Python, numpy (global), torch CPU and CUDA random states, in types ``torch.load(weights_only=True)`` reads."""
    legacy = np.random.get_state()
    states = {"python": random.getstate(), "torch": torch.get_rng_state(),
              "numpy": [legacy[0], torch.from_numpy(legacy[1].astype(np.int64)), *legacy[2:]]}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` saved."""
    random.setstate((states["python"][0], tuple(states["python"][1]), states["python"][2]))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _derived_seed(seed: int) -> int:
    """A seed for the example draws, independent of the one that initialised the model."""
    return int(np.random.SeedSequence([seed, 4]).generate_state(1)[0])


def start_alive(model: torch.nn.Module) -> None:
    """Set the decoder's last bias to 0.5, the middle of the normalised intensities.

    The decoder ends in a ReLU (as the official model); with PyTorch's default
    initialisation its output is zero for every input under some seeds, and
    then no gradient ever flows.
    """
    last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.fill_(0.5)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename it over ``path``."""
    with atomic_file(path) as handle:
        torch.save(obj, handle)


class Trainer:
    """One run from a checked config: data, model, optimiser, logs; :meth:`fit` trains it."""

    def __init__(self, config: dict, resume: str | os.PathLike | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.config, self.out = config, Path(config["out"])
        self.world, self.rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
        if config["batch_size"] < self.world:
            raise InputError(f"batch_size {config['batch_size']} is smaller than the {self.world} processes")
        self.device = self._device()
        checkpoint = self._checkpoint_path(resume)
        initial = self._initial_model()
        self._seed()
        self.split = self._split(checkpoint is not None)
        try:
            self.module = ArSSR(**config["model"])
        except (TypeError, ValueError) as err:
            raise InputError(f"config: model: {err}") from None
        if checkpoint is None and initial is not None:
            self.module.load_state_dict(initial.state_dict())
        elif checkpoint is None:
            start_alive(self.module)
        self.module.to(self.device).train()
        self.model = self._distributed() if self.world > 1 else self.module
        optim, sampling, train_subjects = config["optim"], config["sampling"], self.split["train"]
        self.optimizer = torch.optim.Adam(self.module.parameters(), optim["lr"], tuple(optim["betas"]), optim["eps"])
        self.steps_per_epoch = config["steps_per_epoch"] or (SYNTHETIC_EPOCH if train_subjects is None else math.ceil(
            len(train_subjects) * sampling["crops_per_volume"] / config["batch_size"]))
        self.total = config["steps"] or config["epochs"] * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, optim["decay_every"] * self.steps_per_epoch, gamma=optim["decay"])
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config["amp"] == "fp16")
        self.pairs, crops = pair_options(config), crop_options(config)
        jobs = datasets.CropJobs(train_subjects, crops, config["seed"], self.module.normalization,
                                 self.module.axis_order, config["synthetic"], sampling["synthetic_share"])
        self.pool = datasets.CropPool(jobs, sampling["pool_volumes"] * crops.per_volume, config["seed"],
                                      sampling["num_workers"])
        self.generator = torch.Generator().manual_seed(_derived_seed(config["seed"]))
        self.step, self.best = 0, -math.inf
        if checkpoint is not None:
            self._load(checkpoint)
        val = config["val"]
        self.val_volumes = datasets.validation_volumes(
            self.split["val"], val["volumes"] if self.rank == 0 else 0, val["seed"], self.module.normalization,
            self.module.axis_order, config["synthetic"])
        self.writer = None
        if self.rank == 0:  # the run folder's first files, once everything above has worked
            self._write_run_files()
            self.writer = SummaryWriter(str(self.out))

    def _device(self) -> torch.device:
        from arssr.device import resolve_device

        device = resolve_device(self.config["device"])
        if device.type == "cuda" and self.world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        return device

    def _checkpoint_path(self, resume: str | os.PathLike | None) -> Path | None:
        latest = self.out / CHECKPOINT
        if resume is None:
            if latest.exists():
                raise InputError(f"{self.out}: holds a run already; use --resume auto or another --out")
            return None
        if str(resume) == "auto":
            return latest if latest.exists() else None
        if not Path(resume).is_file():
            raise InputError(f"{resume}: checkpoint not found")
        return Path(resume)

    def _initial_model(self) -> ArSSR | None:
        """The ``init`` weights, if any; their architecture replaces the config's ``model`` (also when resuming)."""
        init = self.config["init"]
        if init is None:
            return None
        model = load_model(None if init == "default" else init)
        self.config["model"] = copy.deepcopy(model.args)
        return model

    def _seed(self) -> None:
        seed = self.config["seed"]
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if self.config["threads"]:
            torch.set_num_threads(self.config["threads"])
        if self.config["deterministic"]:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            # grid_sample has no deterministic CUDA backward: warn there instead of failing.
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = not self.config["deterministic"]

    def _split(self, resuming: bool) -> dict:
        config = self.config
        if config["data"] == datasets.SYNTHETIC:
            split: dict = {"source": datasets.SYNTHETIC, "train": None, "val": None,
                           "val_seed": config["val"]["seed"]}
        elif resuming and (self.out / "split.json").is_file():
            split = json.loads((self.out / "split.json").read_text())
        else:
            paths, labels = datasets.find_subjects(str(config["data"]))
            paths, labels = datasets.usable(paths, labels, config["sampling"]["crop"])
            split = datasets.split_subjects(paths, labels, config["split"]["ratios"], config["split"]["seed"])
            if not split["train"]:
                raise InputError(f"{config['data']}: no training subjects in the split")
        return split

    def _write_run_files(self) -> None:
        texts = {"split.json": json.dumps(self.split, indent=1) + "\n",
                 "config.yaml": yaml.safe_dump(self.config, sort_keys=False)}
        for name, text in texts.items():
            with atomic_file(self.out / name) as handle:
                handle.write(text.encode())

    def _distributed(self) -> torch.nn.Module:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        self.owns_group = not dist.is_initialized()
        if self.owns_group:  # long validations on rank 0 must not time the others out
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo", timeout=timedelta(hours=1))
        cuda = self.device.type == "cuda"
        return DistributedDataParallel(self.module, device_ids=[self.device.index] if cuda else None)

    def train_step(self) -> torch.Tensor:
        """One optimiser step on this process's slice of the global batch; the slice's summed L1 loss."""
        n = self.config["batch_size"]
        crops = self.pool.batch(n)
        examples = datasets.draw_examples(n, self.pairs, self.generator)
        lo, hi = n * self.rank // self.world, n * (self.rank + 1) // self.world
        lr, coords, target = datasets.make_pairs(crops[lo:hi], examples[lo:hi], self.pairs, self.device)
        dtype = AMP[self.config["amp"]]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            predicted = self.model(lr, coords)
        loss_sum = (predicted.float() - target).abs().mean(dim=(1, 2)).sum()
        self.scaler.scale(loss_sum * (self.world / n)).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss_sum.detach()

    def fit(self) -> Path:
        """Train up to the configured number of steps; returns the run folder."""
        from tqdm.auto import tqdm

        config = self.config
        bar = tqdm(total=self.total, initial=self.step, unit="step", file=sys.stderr, dynamic_ncols=True,
                   disable=not (self.rank == 0 and sys.stderr.isatty()))
        running = torch.zeros(2, dtype=torch.float64, device=self.device)
        validated = saved = False
        while self.step < self.total:
            running += torch.stack([self.train_step().double(), torch.ones((), device=self.device)])
            self.step += 1
            bar.update()
            if self.step % config["log_every"] == 0 or self.step == self.total:
                loss = self._log_train(running)
                bar.set_postfix(loss=f"{loss:.4f}")
                running.zero_()
            validated = self.step % config["val_every"] == 0 and self.validate()
            saved = self.step % config["checkpoint_every"] == 0 and self.save()
        bar.close()
        if not validated:
            self.validate()
        if not saved:
            self.save()
        if self.writer is not None:
            self.writer.close()
        if self.world > 1 and self.owns_group:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return self.out

    def _log_train(self, running: torch.Tensor) -> float:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(running)
            running[1] /= self.world
        loss = float(running[0] / (running[1] * self.config["batch_size"]))
        if self.writer is not None:
            self.writer.add_scalar("loss/train", loss, self.step)
            self.writer.add_scalar("lr", self.scheduler.get_last_lr()[0], self.step)
        return loss

    def validate(self) -> bool:
        """Rank 0: whole-volume SR of the val volumes at each val scale; logs metrics, keeps the best model."""
        if self.rank != 0 or not self.val_volumes:
            return True
        from arssr.simulate import simulate_lr
        from arssr.inference import super_resolve
        from arssr.metrics import psnr, ssim

        val, methods = self.config["val"], self.config["degradation"]["methods"]
        method = val["method"] or max(methods, key=methods.get)
        model = copy.deepcopy(self.module).eval()
        precision = {"none": "fp32"}.get(self.config["amp"], self.config["amp"])
        scores: dict[float, list[tuple[float, float, float]]] = {k: [] for k in val["scales"]}
        for i, (_, hr) in enumerate(self.val_volumes):
            for k in val["scales"]:
                lr = simulate_lr(Volume(hr, np.eye(4)), k, method).data
                sr = super_resolve(lr, model, hr.shape, tile=val["tile"], device=self.device, precision=precision)
                scores[k].append((float(np.abs(sr - hr).mean()), psnr(sr, hr), ssim(sr, hr)))
                if i == 0:
                    for name, image in (("lr", lr), ("sr", sr), ("hr", hr)):
                        tag = "images/hr" if name == "hr" else f"images/{name}_x{k:g}"
                        self.writer.add_image(tag, _mid_slice(image), self.step, dataformats="HW")
        for k, rows in scores.items():
            self.writer.add_scalar(f"psnr/val_x{k:g}", float(np.mean([r[1] for r in rows])), self.step)
        mean = np.mean([row for rows in scores.values() for row in rows], axis=0)
        for tag, value in zip(("loss/val", "psnr/val", "ssim/val"), mean):
            self.writer.add_scalar(tag, float(value), self.step)
        if mean[1] > self.best:
            self.best = float(mean[1])
            save_model(self.module, self.out / "best.safetensors", step=str(self.step),
                       val_psnr=f"{self.best:.4f}")
        return True

    def save(self) -> bool:
        """Rank 0: the resume checkpoint and ``last.safetensors``, each written atomically."""
        if self.rank != 0:
            return True
        state = {
            "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": self.step // self.steps_per_epoch, "step": self.step, "best_psnr": self.best,
            "config": self.config, "arssr_version": __version__, "rng": rng_states(self.device),
            "generator": self.generator.get_state(), "pool": self.pool.state_dict(),
        }
        atomic_save(state, self.out / CHECKPOINT)
        save_model(self.module, self.out / "last.safetensors", step=str(self.step))
        return True

    def _load(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.module.load_state_dict(state["model"])
        except (RuntimeError, KeyError, OSError) as err:
            raise InputError(f"{path}: not a checkpoint of this model ({str(err).splitlines()[0][:200]})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.best = int(state["step"]), float(state["best_psnr"])
        set_rng_states(state["rng"])
        self.generator.set_state(state["generator"])
        self.pool.load_state_dict(state["pool"])


def _mid_slice(volume: np.ndarray) -> np.ndarray:
    """The middle slice across the last axis, rotated for display and clipped to [0, 1]."""
    return np.clip(np.rot90(volume[:, :, volume.shape[2] // 2]), 0, 1).copy()


def train(config: dict, resume: str | os.PathLike | None = None) -> Path:
    """Train with ``config`` (see :data:`DEFAULTS`); ``resume``: ``"auto"`` or a checkpoint. Returns the run folder."""
    return Trainer(check_config(config), resume).fit()


def cli_config(
    path: str | None, overrides: Sequence[str | dict], resume: str | None, out: str | None = None
) -> dict:
    """The config of ``arssr train``: the YAML file ``path``, then the overrides.

    Without a YAML file, a resumed run starts from its checkpoint's config
    (``resume`` a file, or ``auto`` with the run folder ``out``).
    """
    checkpoint = Path(out) / CHECKPOINT if resume == "auto" and out else Path(resume) if resume else None
    base = None
    if path is None and checkpoint is not None and checkpoint.is_file():
        base = torch.load(checkpoint, map_location="cpu", weights_only=True).get("config")
    config = load_config(path, overrides, base)
    check_run_folder(config, path)
    return config


def check_run_folder(config: dict, config_path: str | os.PathLike | None = None) -> None:
    """``OutputError`` if a file the run writes is one of its inputs (config, data, init weights) or cannot be written."""
    folder = Path(config["out"])
    inputs = [config_path, config["init"] if config["init"] != "default" else None, config["data"]]
    for name in RUN_FILES:
        check_output(folder / name, overwrite=True, inputs=[p for p in inputs if p is not None])
