"""A run folder: the files a run writes, its resume checkpoint and the random states that resume bit for bit."""

from __future__ import annotations

import os
import random
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from arssr.files import atomic_file, check_output
from arssr.training.config import ModelConfig, TrainConfig, load_config

CHECKPOINT = "checkpoint.pt"
#: Files a run writes into its folder (besides TensorBoard's events).
RUN_FILES = ("config.yaml", "split.json", CHECKPOINT, "last.safetensors", "best.safetensors")
#: What every resume checkpoint holds (``Trainer.save``), and of what type.
CHECKPOINT_KEYS = {"model": dict, "optimizer": dict, "scheduler": dict, "scaler": dict, "step": int,
                   "best_psnr": float, "config": dict, "rng": dict, "generator": torch.Tensor, "pool": dict}


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A resume checkpoint's state, read with ``torch.load(weights_only=True)`` (never full pickle) and checked
    to hold what a run resumes from; ``ModelFileError`` naming the file for anything else."""
    from arssr.errors import ModelFileError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or unsafe files
        raise ModelFileError(f"{path}: not a checkpoint of arssr train (torch.load with weights_only cannot read "
                             f"it: {type(err).__name__})") from None
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: not a checkpoint of arssr train (it holds a {type(state).__name__})")
    for key, kind in CHECKPOINT_KEYS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise ModelFileError(f"{path}: not a checkpoint of arssr train ({key!r} missing or not "
                                 f"{kind.__name__})")
    model = state["config"].get("model")  # the architecture it was trained with
    if not isinstance(model, dict) or not set(model) <= {spec.name for spec in fields(ModelConfig)}:
        raise ModelFileError(f"{path}: not a checkpoint of arssr train (its config records no arssr model)")
    return state


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


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename it over ``path``."""
    with atomic_file(path) as handle:
        torch.save(obj, handle)


def cli_config(
    path: str | None, overrides: Sequence[str | dict], resume: str | None, out: str | None = None
) -> TrainConfig:
    """The config of ``arssr train``: the YAML file ``path``, then the overrides.

    Without a YAML file, a resumed run starts from its checkpoint's config
    (``resume`` a file, or ``auto`` with the run folder ``out``).
    """
    checkpoint = Path(out) / CHECKPOINT if resume == "auto" and out else Path(resume) if resume else None
    base = None
    if path is None and checkpoint is not None and checkpoint.is_file():
        base = read_checkpoint(checkpoint)["config"]
    config = load_config(path, overrides, base)
    check_run_folder(config, path)
    return config


def check_run_folder(config: TrainConfig, config_path: str | os.PathLike | None = None) -> None:
    """``OutputError`` if a file the run writes is one of its inputs (config, data, init weights) or cannot be written."""
    folder = Path(config.out)
    inputs = [config_path, config.init if config.init != "default" else None, config.data]
    for name in RUN_FILES:
        check_output(folder / name, overwrite=True, inputs=[p for p in inputs if p is not None])
