"""Training of the through-plane prior (``arssr.models.planes``) on 2D planes of real volumes.

Each example is a square patch of one plane of one volume, any axis; its rows are thinned to slices
(:class:`arssr.degrade.SliceModel`: boxcar or Gaussian profile, 2-8 voxels apart, thickness 0.6-1.2 times
the spacing so gaps and overlaps occur, noise and slice-to-slice gains on some), then brought back to
the rows' grid by cubic interpolation: what the prior sees along the slice axis at inference. The rows
around the patch are degraded with it, so no patch edge acts as the volume's face.

Self-adaptation (:func:`arssr.adapt.adapt_prior`) draws the same examples from the input's own in-plane axes, at its
own slice spacing and thickness (SMORE).
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from arssr.degrade import SliceModel, reflect_index, resampling_matrix
from arssr.errors import InputError
from arssr.models.planes import PlanePrior, save_prior
from arssr.training.run_folder import atomic_save
from arssr.training.trainer import lr_factor

#: The errors :func:`plane_loss` can use.
LOSS_NORMS = {"l1": torch.nn.functional.l1_loss, "l2": torch.nn.functional.mse_loss}
#: Voxels with a normalised intensity above this are foreground, where patches are centred.
FOREGROUND = 0.05


@dataclass(frozen=True)
class PlaneDraws:
    """How examples are drawn: ``size``^2 patches, slice spacing in ``spacing`` voxels, thickness over
    spacing in ``thickness_ratio`` (``exact_share`` of them exactly 1), ``gaussian_share`` Gaussian
    profiles, noise of standard deviation up to ``noise`` on ``noise_share`` of them, slice gains of
    standard deviation ``slice_gain`` on ``slice_gain_share``, contrast inverted on ``invert_share``."""

    size: int = 64
    spacing: tuple[float, float] = (2.0, 8.0)
    thickness_ratio: tuple[float, float] = (0.6, 1.2)
    exact_share: float = 0.5
    gaussian_share: float = 0.3
    noise: float = 0.03
    noise_share: float = 0.5
    slice_gain: float = 0.03
    slice_gain_share: float = 0.2
    invert_share: float = 0.2


@dataclass(frozen=True)
class PlaneExample:
    interpolated: np.ndarray  # (size, size) float32, rows interpolated back from slices
    target: np.ndarray  # (size, size) float32
    spacing: float  # slice spacing in voxels of the rows
    thickness: float  # slice thickness in voxels of the rows
    offset: float  # rows from the start of the first slice to the patch's first row


def thin_rows(rows: np.ndarray, spacing: float, model: SliceModel) -> tuple[np.ndarray, float]:
    """``rows`` (``(n, w)``) acquired as slices about ``spacing`` rows apart (``m = round(n / spacing)``)
    with ``model``: the slices ``(m, w)`` and the exact spacing ``n / m``."""
    n = rows.shape[0]
    m = max(2, int(round(n / spacing)))
    return (model.matrix(n, m).numpy() @ rows).astype(np.float32), n / m


def cubic_rows(slices: np.ndarray, n: int) -> np.ndarray:
    """Slices ``(m, w)`` back to ``n`` rows by cubic B-spline interpolation on the aligned grid."""
    return (resampling_matrix("cubic", slices.shape[0], n).numpy() @ slices).astype(np.float32)


def draw_example(volume: np.ndarray, draws: PlaneDraws, rng: np.random.Generator,
                 axes: tuple[int, int] | None = None, spacing: float | None = None, thickness: float | None = None,
                 profile: str | None = None, centres: np.ndarray | None = None) -> PlaneExample:
    """One example from ``volume`` (normalised, 3D): rows and columns along ``axes`` (random unless given),
    slices ``spacing`` rows apart and ``thickness`` thick (random unless given), centred on a foreground
    voxel (one of ``centres`` when given)."""
    if axes is None:
        rows_axis = int(rng.integers(3))
        axes = (rows_axis, int(rng.choice([a for a in range(3) if a != rows_axis])))
    rows_axis, cols_axis = axes
    if spacing is None:
        spacing = float(rng.uniform(*draws.spacing))
    if thickness is None:
        ratio = 1.0 if rng.random() < draws.exact_share else float(rng.uniform(*draws.thickness_ratio))
        thickness = spacing * ratio
    if profile is None:
        profile = "gaussian" if rng.random() < draws.gaussian_share else "boxcar"
    if centres is None:
        centres = np.argwhere(volume > FOREGROUND)
    centre = centres[rng.integers(len(centres))] if len(centres) else np.array(volume.shape) // 2
    margin = int(math.ceil(2 * max(spacing, thickness))) + 4
    half = draws.size // 2
    rows = reflect_index(torch.arange(centre[rows_axis] - half - margin, centre[rows_axis] + half + margin),
                         volume.shape[rows_axis]).numpy()
    cols = reflect_index(torch.arange(centre[cols_axis] - half, centre[cols_axis] + half),
                         volume.shape[cols_axis]).numpy()
    index: list = [int(centre[a]) for a in range(3)]
    index[rows_axis], index[cols_axis] = rows[:, None], cols[None, :]
    plane = np.asarray(volume[tuple(index)], dtype=np.float32)  # (rows, cols)
    if rng.random() < draws.invert_share:
        plane = np.where(plane > FOREGROUND, 1.0 - plane, plane).astype(np.float32)
    slices, exact = thin_rows(plane, spacing, SliceModel(thickness, profile))
    if rng.random() < draws.slice_gain_share:
        slices *= rng.normal(1.0, draws.slice_gain, (slices.shape[0], 1)).astype(np.float32)
    if rng.random() < draws.noise_share:
        slices += rng.normal(0.0, rng.uniform(0, draws.noise), slices.shape).astype(np.float32)
    interpolated = cubic_rows(slices, plane.shape[0])
    inner = slice(margin, margin + draws.size)
    return PlaneExample(interpolated[inner], plane[inner], exact, thickness, float(margin))


def batch_of(examples: Sequence[PlaneExample]) -> tuple[torch.Tensor, ...]:
    """``(interpolated, target, spacing, thickness, offset)`` tensors of a list of examples: the prior's
    inputs are ``interpolated`` and the last three."""
    return (torch.from_numpy(np.stack([e.interpolated for e in examples]))[:, None],
            torch.from_numpy(np.stack([e.target for e in examples]))[:, None],
            *(torch.tensor([getattr(e, name) for e in examples], dtype=torch.float32)
              for name in ("spacing", "thickness", "offset")))


@dataclass(frozen=True)
class PriorRun:
    """A training run of the prior: ``steps`` of Adam at ``lr`` (cosine, ``warmup`` steps), ``batch``
    examples each, a checkpoint every ``checkpoint_every`` steps and exported weights at ``export_steps``;
    the loss is :func:`plane_loss` with ``difference_weight`` and ``norm``."""

    steps: int = 20000
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 100
    checkpoint_every: int = 200
    export_steps: tuple[int, ...] = ()
    seed: int = 0
    difference_weight: float = 0.0
    norm: str = "l1"
    draws: PlaneDraws = PlaneDraws()


def plane_loss(restored: torch.Tensor, target: torch.Tensor, difference_weight: float = 0.0,
               norm: str = "l1") -> torch.Tensor:
    """The ``norm`` (``"l1"`` or ``"l2"``: mean absolute or squared error) between ``(B, 1, H, W)`` planes, plus
    ``difference_weight`` times the same between their differences from row to row: the change across the
    slice axis, which the intensity loss alone lets gather at slice boundaries (the staircase of
    :func:`arssr.metrics.slice_steps`). Where an edge could lie anywhere within a slice, the L1 loss is
    least for a sharp edge at the median place and the L2 loss for a ramp through the possible places."""
    if norm not in LOSS_NORMS:
        raise ValueError(f"unknown loss norm {norm!r}; known: {', '.join(LOSS_NORMS)}")
    error = LOSS_NORMS[norm]
    loss = error(restored, target)
    if difference_weight:
        loss = loss + difference_weight * error(restored.diff(dim=-2), target.diff(dim=-2))
    return loss


def train_prior(volumes: Sequence[np.ndarray], out: str | os.PathLike, run: PriorRun = PriorRun(),
                prior: PlanePrior | None = None, max_seconds: float = math.inf, stop_at: int | None = None,
                log=print) -> Path:
    """Train ``prior`` (a new :class:`PlanePrior` when ``None``) on planes of ``volumes`` (normalised 3D
    arrays) into folder ``out``, resuming from ``out/checkpoint.pt`` when it is there; returns the path of
    the last exported weights (``out/last.safetensors``). Stops after ``max_seconds``, or at step
    ``stop_at``, with a checkpoint. A copy of ``prior`` is trained; the global RNGs are not used (the
    generator's state travels in the checkpoint)."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prior = copy.deepcopy(prior) if prior is not None else seeded_prior(run.seed)
    optimizer = torch.optim.Adam(prior.parameters(), lr=run.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor("cosine", run.warmup, run.steps, 1, 1.0))
    rng = np.random.default_rng(run.seed)
    step = 0
    if (out / "checkpoint.pt").is_file():
        state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
        if state.get("steps", run.steps) != run.steps:
            raise InputError(f"{out}: its run's cosine schedule spans {state['steps']} steps, not {run.steps}; "
                             "resume with the same steps or start a new run folder")
        saved = (state.get("difference_weight", 0.0), state.get("norm", "l1"))
        if saved != (run.difference_weight, run.norm):
            raise InputError(f"{out}: its run's loss has difference weight {saved[0]} and norm {saved[1]}, not "
                             f"{run.difference_weight} and {run.norm}; resume with the same or start a new run folder")
        if state.get("volumes", len(volumes)) != len(volumes):
            raise InputError(f"{out}: its run trained on {state['volumes']} volumes, not {len(volumes)}; resume "
                             "with the same data or start a new run folder")
        if state.get("config", prior.config) != prior.config:
            raise InputError(f"{out}: its run's prior is {state['config']}, not {prior.config}; resume with the "
                             "same prior or start a new run folder")
        prior.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        step = state["step"]
    centres = [foreground_sample(v, np.random.default_rng([run.seed, k])) for k, v in enumerate(volumes)]
    writer = SummaryWriter(str(out))
    start, running = time.monotonic(), 0.0
    prior.train()
    last = run.steps if stop_at is None else min(stop_at, run.steps)
    while step < last and time.monotonic() - start < max_seconds:
        picks = rng.integers(len(volumes), size=run.batch)
        planes, target, *conditions = batch_of(
            [draw_example(volumes[k], run.draws, rng, centres=centres[k]) for k in picks])
        loss = plane_loss(prior(planes, *conditions), target, run.difference_weight, run.norm)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        running += loss.item()
        if step % 100 == 0:
            writer.add_scalar("loss/train", running / 100, step)
            log(f"step {step} loss {running / 100:.5f} lr {schedule.get_last_lr()[0]:.2e}")
            running = 0.0
        if step % run.checkpoint_every == 0 or step == run.steps:
            _checkpoint(prior, optimizer, schedule, rng, step, out, run, len(volumes))
        if step in run.export_steps:
            save_prior(prior, out / f"step{step}.safetensors", step=str(step))
    _checkpoint(prior, optimizer, schedule, rng, step, out, run, len(volumes))
    writer.close()
    return save_prior(prior.eval(), out / "last.safetensors", step=str(step))


def with_phase(prior: PlanePrior) -> PlanePrior:
    """A copy of ``prior`` that also reads the rows' phase within their slices (``PlanePrior(phase=True)``),
    computing the same function until trained: the weights on the two new input channels are zero."""
    if prior.phase:
        return copy.deepcopy(prior)
    phased = PlanePrior(**prior.config, phase=True).to(next(prior.parameters()))
    state = phased.state_dict()
    for name, weight in prior.state_dict().items():
        if state[name].shape != weight.shape:  # the layers that read the input: 3 channels, now 5
            state[name] = torch.zeros_like(state[name])
            state[name][:, :weight.shape[1]] = weight
        else:
            state[name] = weight.clone()
    phased.load_state_dict(state)
    return phased.train(prior.training)


def foreground_sample(volume: np.ndarray, rng: np.random.Generator, count: int = 100_000) -> np.ndarray:
    """Up to ``count`` foreground voxel indices ``(k, 3)`` of ``volume``, drawn uniformly."""
    flat = np.flatnonzero(volume.ravel() > FOREGROUND)
    if len(flat) > count:
        flat = rng.choice(flat, count, replace=False)
    return np.stack(np.unravel_index(flat, volume.shape), axis=1)


def seeded_prior(seed: int, **arguments) -> PlanePrior:
    """A new :class:`PlanePrior` (``arguments`` as its constructor's) initialised from ``seed``, the global RNG
    untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PlanePrior(**arguments)


def _checkpoint(prior, optimizer, schedule, rng, step: int, out: Path, run: PriorRun, volumes: int) -> None:
    atomic_save({"model": prior.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": schedule.state_dict(), "rng": rng.bit_generator.state, "step": step,
                 "steps": run.steps, "difference_weight": run.difference_weight, "norm": run.norm,
                 "volumes": volumes, "config": prior.config}, out / "checkpoint.pt")

