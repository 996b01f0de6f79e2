"""Training examples made of HR crops, as in the paper: HR patch, degraded LR patch, sampled coordinates, targets.

:func:`draw_examples` draws a batch's random choices from one generator (so a
batch can be sliced per process); :func:`make_pairs` makes the examples on the
training device. Used by training and by self-adaptation (``arssr.adapt``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from arssr import geometry
from arssr.degrade import Operator, SliceModel, degrade


@dataclass(frozen=True)
class PairOptions:
    """How a training example is made from an HR crop (paper values by default).

    ``scale`` bounds ``k ~ U(low, high)`` (one per axis when ``anisotropic``);
    the HR patch has ``round(lr_size * k)`` voxels per axis, the LR patch
    ``lr_size``; ``samples`` HR voxels are the targets. ``methods`` weighs the
    degradation models; ``noise_std`` and ``bias`` are ``(low, high)`` ranges
    drawn per example (see :func:`arssr.degrade.degrade`).

    A share ``thick_share`` of the examples imitates 2D multi-slice
    acquisitions: one axis, drawn at random, is made of contiguous slices
    (``arssr.degrade.SliceModel``, profile drawn from ``thick_profiles``) at a
    scale from ``thick_scale``; the other two axes take scales from
    ``inplane_scale`` and a method from ``methods``.
    """

    lr_size: int = 10
    scale: tuple[float, float] = (2.0, 4.0)
    anisotropic: bool = False
    thick_share: float = 0.0
    thick_scale: tuple[float, float] = (1.5, 8.0)
    inplane_scale: tuple[float, float] = (1.0, 2.0)
    thick_profiles: tuple[str, ...] = ("boxcar", "gaussian")
    samples: int = 8000
    methods: dict[str, float] = field(default_factory=lambda: {"cubic": 1.0})
    noise: str | None = None
    noise_std: tuple[float, float] = (0.0, 0.0)
    bias: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Example:
    """The random choices of one example; a batch is drawn whole, then sliced per process."""

    hr_shape: tuple[int, int, int]
    method: Operator  # one method name, or one axis operator per axis (thick slices)
    noise_std: float
    bias: float
    seed: int
    voxels: torch.Tensor  # (samples,) flat indices into the HR patch


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def draw_examples(n: int, options: PairOptions, generator: torch.Generator) -> list[Example]:
    """Scales, degradations, corruption seeds and target voxels of ``n`` examples, in order, from ``generator``."""
    names = list(options.methods)
    weights = torch.tensor([float(options.methods[m]) for m in names], dtype=torch.float64)
    examples = []
    for _ in range(n):
        # Drawn only when asked for, so that configurations without thick slices keep their random stream.
        thick = options.thick_share > 0 and float(torch.rand((), generator=generator)) < options.thick_share
        if thick:
            axis = int(torch.randint(3, (), generator=generator))
            k = [_uniform(options.thick_scale if a == axis else options.inplane_scale, generator) for a in range(3)]
        else:
            k = [_uniform(options.scale, generator) for _ in range(3 if options.anisotropic else 1)] * (
                1 if options.anisotropic else 3)
        hr_shape = geometry.output_shape((options.lr_size,) * 3, k)
        method: Operator = names[int(torch.multinomial(weights, 1, generator=generator))]
        if thick:
            profile = options.thick_profiles[int(torch.randint(len(options.thick_profiles), (), generator=generator))]
            slices = SliceModel(hr_shape[axis] / options.lr_size, profile)  # contiguous: thickness = spacing
            method = tuple(slices if a == axis else method for a in range(3))
        noise_std, bias = _uniform(options.noise_std, generator), _uniform(options.bias, generator)
        seed = int(torch.randint(2**62, (), generator=generator))
        voxels = math.prod(hr_shape)
        if options.samples <= voxels:
            index = torch.randperm(voxels, generator=generator)[:options.samples]
        else:
            index = torch.randint(voxels, (options.samples,), generator=generator)
        examples.append(Example(hr_shape, method, noise_std, bias, seed, index))
    return examples


def make_pairs(
    crops: torch.Tensor, examples: Sequence[Example], options: PairOptions, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HR crops ``(n, S, S, S)`` -> LR ``(n, 1, L, L, L)``, coordinates ``(n, K, 3)``, targets ``(n, K, 1)``.

    Everything after the crops is computed on ``device``. The HR patch is the
    centre of the crop; the LR patch is its degradation (field of view kept),
    so the HR patch's voxel centres in its own ``[-1, 1]`` grid are the LR
    patch's coordinates too.
    """
    crops = crops.to(device, non_blocking=True)
    lr_shape = (options.lr_size,) * 3
    lrs, coords, targets = [], [], []
    for crop, example in zip(crops, examples):
        start = [(c - s) // 2 for c, s in zip(crop.shape, example.hr_shape)]
        hr = crop[tuple(slice(a, a + s) for a, s in zip(start, example.hr_shape))]
        generator = torch.Generator().manual_seed(example.seed) if options.noise or example.bias else None
        lrs.append(degrade(
            hr[None, None], lr_shape, example.method, noise=options.noise, noise_std=example.noise_std,
            bias=example.bias, generator=generator,
        ))
        voxels = example.voxels.to(device)
        targets.append(hr.reshape(-1)[voxels])
        index = torch.stack(torch.unravel_index(voxels, example.hr_shape), dim=-1).double()
        sizes = torch.tensor(example.hr_shape, dtype=torch.float64, device=device)
        coords.append(geometry.voxel_to_normalized(index, sizes).float())
    return torch.cat(lrs), torch.stack(coords), torch.stack(targets)[..., None]
