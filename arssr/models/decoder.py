"""The implicit decoder: an MLP from ``[feature, coordinate]`` to an intensity."""

from __future__ import annotations

import torch
from torch import nn


def _relu_mlp(in_features: int, out_features: int, width: int, depth: int, final_relu: bool = True) -> nn.Sequential:
    sizes = [in_features] + [width] * (depth - 1) + [out_features]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*(layers if final_relu else layers[:-1]))


class MLPDecoder(nn.Module):
    """Two stages of ``depth`` linear layers, a ReLU after each (the very last one only with ``final_relu``).

    Stage one maps the ``in_features`` input back to ``in_features`` and is added to
    the input; stage two maps that sum to ``out_features``.

    Args:
        in_features: feature channels plus 3 coordinates.
        out_features: output channels (1 for an intensity).
        width: hidden width.
        depth: linear layers per stage (at least 2).
        final_relu: a ReLU after the last layer (the paper's intensities are >= 0; a
            residual correction is signed and has none).
    """

    def __init__(
        self, in_features: int = 131, out_features: int = 1, width: int = 256, depth: int = 4, final_relu: bool = True
    ) -> None:
        super().__init__()
        for name, value, least in (("in_features", in_features, 1), ("out_features", out_features, 1),
                                   ("width", width, 1), ("depth", depth, 2)):
            if not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        self.stage_one = _relu_mlp(in_features, in_features, width, depth)
        self.stage_two = _relu_mlp(in_features, out_features, width, depth, final_relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., in_features)`` -> ``(..., out_features)``."""
        # On a 2D input every Linear output is a fresh tensor: the in-place ReLUs then need no
        # CopySlices in backward (about 6 % of a CPU training step at the paper's size).
        flat = x.reshape(-1, x.shape[-1])
        return self.stage_two(flat + self.stage_one(flat)).view(*x.shape[:-1], -1)
