"""Training ArSSR (paper section 5): the training loop, validation and checkpoints.

A configuration (``arssr.training.config``) comes from defaults, a YAML file and
``key=value`` overrides. :func:`train` runs it and returns the run folder, which holds
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
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import yaml

from arssr import __version__, pairs
from arssr.errors import InputError
from arssr.files import atomic_file
from arssr.models import ArSSR, load_model, save_model
from arssr.models.tiling import PRECISIONS, super_resolve
from arssr.shard import distributed_rank
from arssr.training import datasets
from arssr.training.config import ModelConfig, TrainConfig, check_config, crop_options, pair_options
from arssr.training.run_folder import CHECKPOINT, atomic_save, read_checkpoint, rng_states, set_rng_states

#: Steps per epoch with endless synthetic data, unless ``steps_per_epoch`` says otherwise.
SYNTHETIC_EPOCH = 100


def _derived_seed(seed: int) -> int:
    """A seed for the example draws, independent of the one that initialised the model."""
    return int(np.random.SeedSequence([seed, 4]).generate_state(1)[0])


def lr_factor(schedule: str, warmup: int, total: int, decay_steps: int, decay: float):
    """The learning rate's factor at each step: a linear warm-up over ``warmup`` steps, then ``step`` (times
    ``decay`` every ``decay_steps`` steps) or ``cosine`` (from 1 to 0 at step ``total``)."""
    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if schedule == "cosine":
            return ramp * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        return ramp * decay ** (step // decay_steps)

    return factor


def start_alive(model: torch.nn.Module) -> None:
    """Set the decoder's last bias to 0.5, the middle of the normalised intensities.

    The decoder ends in a ReLU (as the official model); with PyTorch's default
    initialisation its output is zero for every input under some seeds, and
    then no gradient ever flows.
    """
    last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.fill_(0.5)


class Trainer:
    """One run from a checked config: data, model, optimiser, logs; :meth:`fit` trains it."""

    def __init__(self, config: TrainConfig, resume: str | os.PathLike | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.config, self.out = config, Path(config.out)
        self.rank, self.world, self.local_rank = distributed_rank() or (0, 1, 0)
        if config.batch_size < self.world:
            raise InputError(f"batch_size {config.batch_size} is smaller than the {self.world} processes")
        self.device = self._device()
        checkpoint = self._checkpoint_path(resume)
        initial = self._initial_model()
        state = read_checkpoint(checkpoint) if checkpoint is not None else None
        if state is not None and initial is None:  # a resumed run keeps its checkpoint's architecture
            self.config = replace(self.config, model=ModelConfig(**copy.deepcopy(state["config"]["model"])))
        self._seed()
        self.split = self._split(checkpoint is not None)
        try:
            self.module = ArSSR(**asdict(self.config.model))
        except (TypeError, ValueError) as err:
            raise InputError(f"config: model: {err}") from None
        if checkpoint is None and initial is not None:
            self.module.load_state_dict(initial.state_dict())
        elif checkpoint is None:
            start_alive(self.module)
        self.module.to(self.device).train()
        self.model = self._distributed() if self.world > 1 else self.module
        optim, sampling, train_subjects = config.optim, config.sampling, self.split["train"]
        self.optimizer = torch.optim.Adam(self.module.parameters(), optim.lr, tuple(optim.betas), optim.eps)
        self.steps_per_epoch = config.steps_per_epoch or (SYNTHETIC_EPOCH if train_subjects is None else math.ceil(
            len(train_subjects) * sampling.crops_per_volume / config.batch_size))
        self.total = config.steps or config.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(optim.schedule, optim.warmup_steps, self.total,
                                      optim.decay_every * self.steps_per_epoch, optim.decay))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.pairs, crops = pair_options(config), crop_options(config)
        jobs = datasets.CropJobs(train_subjects, crops, config.seed, self.module.normalization,
                                 self.module.axis_order, config.synthetic, sampling.synthetic_share)
        self.pool = datasets.CropPool(jobs, sampling.pool_volumes * crops.per_volume, config.seed,
                                      sampling.num_workers)
        self.generator = torch.Generator().manual_seed(_derived_seed(config.seed))
        self.step, self.best = 0, -math.inf
        self.seconds = {"cpu": 0.0, "wall": 0.0}  # training time of the run so far, over all resumes
        if state is not None:
            self._load(state, checkpoint)
        val = config.val
        self.val_volumes = datasets.validation_volumes(
            self.split["val"], val.volumes if self.rank == 0 else 0, val.seed, self.module.normalization,
            self.module.axis_order, config.synthetic)
        self.writer = None
        if self.rank == 0:  # the run folder's first files, once everything above has worked
            self._write_run_files()
            self.writer = SummaryWriter(str(self.out))

    def _device(self) -> torch.device:
        from arssr.device import resolve_device

        device = resolve_device(self.config.device)
        if device.type == "cuda" and self.world > 1:
            device = torch.device("cuda", self.local_rank)
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
        init = self.config.init
        if init is None:
            return None
        model = load_model(None if init == "default" else init)
        self.config = replace(self.config, model=ModelConfig(**copy.deepcopy(model.args)))
        return model

    def _seed(self) -> None:
        seed = self.config.seed
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        if self.config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            # grid_sample has no deterministic CUDA backward: warn there instead of failing.
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = not self.config.deterministic

    def _split(self, resuming: bool) -> dict:
        config = self.config
        if config.data == datasets.SYNTHETIC:
            split: dict = {"source": datasets.SYNTHETIC, "train": None, "val": None,
                           "val_seed": config.val.seed}
        elif resuming and (self.out / "split.json").is_file():
            split = json.loads((self.out / "split.json").read_text())
        else:
            paths, labels = datasets.find_subjects(str(config.data))
            paths, labels = datasets.usable(paths, labels, config.sampling.crop)
            split = datasets.split_subjects(paths, labels, config.split.ratios, config.split.seed)
            if not split["train"]:
                raise InputError(f"{config.data}: no training subjects in the split")
        return split

    def _write_run_files(self) -> None:
        texts = {"split.json": json.dumps(self.split, indent=1) + "\n",
                 "config.yaml": yaml.safe_dump(self.config.as_dict(), sort_keys=False)}
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
        n = self.config.batch_size
        crops = self.pool.batch(n)
        examples = pairs.draw_examples(n, self.pairs, self.generator)
        lo, hi = n * self.rank // self.world, n * (self.rank + 1) // self.world
        lr, coords, target = pairs.make_pairs(crops[lo:hi], examples[lo:hi], self.pairs, self.device)
        dtype = PRECISIONS[self.config.amp]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            predicted = self.model(lr, coords)
        loss_sum = (predicted.float() - target).abs().mean(dim=(1, 2)).sum()
        self.scaler.scale(loss_sum * (self.world / n)).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss_sum.detach()

    def _out_of_time(self, max_seconds: float) -> bool:
        """Whether the run has trained ``max_seconds``, by rank 0's clock for every rank: each rank's own
        clock also counts its waits for the others, so the ranks would stop at different steps and the
        last one would wait for them forever."""
        over = torch.tensor(float(self.seconds["wall"] >= max_seconds), device=self.device)
        if self.world > 1:
            import torch.distributed as dist

            dist.broadcast(over, src=0)
        return bool(over.item())

    def fit(self) -> Path:
        """Train up to the configured number of steps; returns the run folder."""
        from tqdm.auto import tqdm

        config = self.config
        bar = tqdm(total=self.total, initial=self.step, unit="step", file=sys.stderr, dynamic_ncols=True,
                   disable=not (self.rank == 0 and sys.stderr.isatty()))
        running = torch.zeros(2, dtype=torch.float64, device=self.device)
        validated = saved = False
        exports = set(config.export_steps)
        clock = (time.process_time(), time.perf_counter())
        while self.step < self.total:
            if config.max_seconds is not None and self._out_of_time(config.max_seconds):
                break
            running += torch.stack([self.train_step().double(), torch.ones((), device=self.device)])
            self.step += 1
            now = (time.process_time(), time.perf_counter())
            self.seconds["cpu"] += now[0] - clock[0]
            self.seconds["wall"] += now[1] - clock[1]
            clock = now
            bar.update()
            if self.step % config.log_every == 0 or self.step == self.total:
                loss = self._log_train(running)
                bar.set_postfix(loss=f"{loss:.4f}")
                running.zero_()
            validated = self.step % config.val_every == 0 and self.validate()
            saved = self.step % config.checkpoint_every == 0 and self.save()
            if self.step in exports and self.rank == 0:
                save_model(self.module, self.out / f"step_{self.step:06d}.safetensors", **self._card())
            clock = (time.process_time(), time.perf_counter())  # validation and files are not training time
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
        loss = float(running[0] / (running[1] * self.config.batch_size))
        if self.writer is not None:
            self.writer.add_scalar("loss/train", loss, self.step)
            self.writer.add_scalar("lr", self.scheduler.get_last_lr()[0], self.step)
        return loss

    def validate(self) -> bool:
        """Rank 0: whole-volume SR of the val volumes at each val scale; logs metrics, keeps the best model."""
        if self.rank != 0 or not self.val_volumes:
            return True
        from arssr.simulate import simulate_lr
        from arssr.metrics import psnr, ssim

        val, methods = self.config.val, self.config.degradation.methods
        method = val.method or max(methods, key=methods.get)
        model = copy.deepcopy(self.module).eval()
        scores: dict[float, list[tuple[float, float, float]]] = {k: [] for k in val.scales}
        for i, (_, volume) in enumerate(self.val_volumes):
            hr = volume.data
            for k in val.scales:
                lr = simulate_lr(volume, k, method).data
                sr = super_resolve(lr, model, hr.shape, tile=val.tile, device=self.device, precision=self.config.amp)
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
            "config": self.config.as_dict(), "arssr_version": __version__, "rng": rng_states(self.device),
            "generator": self.generator.get_state(), "pool": self.pool.state_dict(),
            "seconds": dict(self.seconds),
        }
        atomic_save(state, self.out / CHECKPOINT)
        save_model(self.module, self.out / "last.safetensors", **self._card())
        return True

    def _card(self) -> dict[str, str]:
        """The step and the training time so far (CPU seconds of this process, wall seconds), for a weights file."""
        return {"step": str(self.step), "cpu_seconds": f"{self.seconds['cpu']:.3f}",
                "train_seconds": f"{self.seconds['wall']:.3f}"}

    def _load(self, state: dict, path: Path) -> None:
        try:
            self.module.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as err:
            raise InputError(f"{path}: not a checkpoint of this model ({str(err).splitlines()[0][:200]})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict({"lr_lambdas": [None], **state["scheduler"]})  # also a StepLR's state
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.best = int(state["step"]), float(state["best_psnr"])
        self.seconds = dict(state.get("seconds", self.seconds))  # older checkpoints hold no times
        set_rng_states(state["rng"])
        self.generator.set_state(state["generator"])
        self.pool.load_state_dict(state["pool"])


def _mid_slice(volume: np.ndarray) -> np.ndarray:
    """The middle slice across the last axis, rotated for display and clipped to [0, 1]."""
    return np.clip(np.rot90(volume[:, :, volume.shape[2] // 2]), 0, 1).copy()


@contextmanager
def _global_state_kept():
    """The process-wide state a run sets (the Python, NumPy and torch random states, torch's thread count,
    deterministic algorithms, cuDNN benchmarking, ``CUBLAS_WORKSPACE_CONFIG``) as the caller had it, after
    the block."""
    saved = (random.getstate(), np.random.get_state(), torch.get_num_threads(),
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
            yield
    finally:
        python_state, numpy_state, threads, deterministic, warn_only, benchmark, workspace = saved
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


def train(config: TrainConfig | dict, resume: str | os.PathLike | None = None) -> Path:
    """Train with ``config`` (:class:`TrainConfig`, or a dict of its keys); ``resume``: ``"auto"`` or a checkpoint.
    Returns the run folder. The seeds and switches the run sets are the caller's again afterwards."""
    with _global_state_kept():
        return Trainer(check_config(config), resume).fit()
