"""A run folder: the files a run writes, its resume checkpoint and the random states that resume bit for bit."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from arssr.files import atomic_file, check_output
from arssr.training.config import TrainConfig, load_config

CHECKPOINT = "checkpoint.pt"
#: Files a run writes into its folder (besides TensorBoard's events).
RUN_FILES = ("config.yaml", "split.json", CHECKPOINT, "last.safetensors", "best.safetensors")


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
        base = torch.load(checkpoint, map_location="cpu", weights_only=True).get("config")
    config = load_config(path, overrides, base)
    check_run_folder(config, path)
    return config


def check_run_folder(config: TrainConfig, config_path: str | os.PathLike | None = None) -> None:
    """``OutputError`` if a file the run writes is one of its inputs (config, data, init weights) or cannot be written."""
    folder = Path(config.out)
    inputs = [config_path, config.init if config.init != "default" else None, config.data]
    for name in RUN_FILES:
        check_output(folder / name, overwrite=True, inputs=[p for p in inputs if p is not None])
