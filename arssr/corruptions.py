"""Corruptions of an LR volume for training: a smooth multiplicative bias field, Gaussian or Rician noise.

Volumes are ``(..., D0, D1, D2)`` tensors; a whole batch is drawn at once on the
generator's device.
"""

from __future__ import annotations

import math

import torch

from arssr.errors import InputError

NOISE_TYPES = ("gaussian", "rician")

# Not MONAI's RandRicianNoise/RandGaussianNoise/RandBiasField: these act on a whole batch on the
# training device from one torch.Generator (checkpointed for bit-for-bit resume), with sigma relative to
# each volume's maximum; MONAI's draw per sample from numpy's RandomState on the CPU, with an absolute
# sigma (or, for Rician noise, one relative to the image's standard deviation). No Gibbs transform
# (MONAI's GibbsNoise): the k-space degradation of arssr.degrade already truncates k-space exactly, so its
# LR inputs carry the ringing of a real acquisition at the right scale.


def _random(kind: str, shape, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``torch.randn``/``torch.rand`` drawn on the generator's device, returned on ``x``'s."""
    device = generator.device if generator is not None else x.device
    draw = torch.randn if kind == "normal" else torch.rand
    return draw(shape, generator=generator, device=device, dtype=torch.float32).to(x.device, x.dtype)


def _volume_max(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(-3).amax(-1)[..., None, None, None]


def add_noise(x: torch.Tensor, kind: str, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian or Rician noise with ``sigma = std * max`` (max of each volume).

    Rician: the magnitude ``|x + sigma (n1 + i n2)|``; on a zero background its
    mean is ``sigma * sqrt(pi / 2)``.
    """
    if kind not in NOISE_TYPES:
        raise ValueError(f"unknown noise {kind!r}; known: {', '.join(NOISE_TYPES)}")
    if not std >= 0:
        raise InputError(f"noise_std must be >= 0, got {std}")
    sigma = std * _volume_max(x)
    real = x + sigma * _random("normal", x.shape, x, generator)
    if kind == "gaussian":
        return real
    return torch.hypot(real, sigma * _random("normal", x.shape, x, generator))


def bias_field(x: torch.Tensor, strength: float, generator: torch.Generator | None = None, terms: int = 4) -> torch.Tensor:
    """Smooth positive field of ``x``'s shape: ``exp(strength * f)``, ``|f| <= 1``.

    ``f`` is a sum of ``terms`` cosines with random directions, at most one
    cycle per field of view on each axis, random phases and weights summing to 1.
    """
    if not strength >= 0:
        raise InputError(f"bias must be >= 0, got {strength}")
    lead = tuple(x.shape[:-3])
    freqs = 2 * _random("uniform", (*lead, terms, 3), x, generator) - 1
    phases = 2 * math.pi * _random("uniform", (*lead, terms), x, generator)
    weights = _random("uniform", (*lead, terms), x, generator)
    weights = weights / weights.sum(-1, keepdim=True)
    angle = phases[..., None, None, None]
    for axis, m in enumerate(x.shape[-3:]):
        centres = (torch.arange(m, device=x.device, dtype=x.dtype) + 0.5) / m
        shape = [1, 1, 1]
        shape[axis] = m
        angle = angle + 2 * math.pi * freqs[..., axis, None, None, None] * centres.reshape(shape)
    field = (weights[..., None, None, None] * torch.cos(angle)).sum(-4)
    return torch.exp(strength * field)
