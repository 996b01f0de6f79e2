"""SIREN: a coordinate MLP with sine activations (Sitzmann et al. 2020), the compressor's volume representation.

``depth`` sine layers of ``width`` neurons, then one linear output layer, as
the paper behind the ``paper-2025`` compression preset (docs/usage/compress.md)
counts them ("3 layers x 70 neurons" has 10,291 parameters). Every
sine layer computes ``sin(w0 * (W x + b))``. Initialisation: the first layer
``U(-1/in, 1/in)``, the others ``U(-sqrt(6/in)/w0, +sqrt(6/in)/w0)`` (weights and biases).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

#: Maps a weight or bias tensor to the tensor the forward pass uses (e.g. a fake-quantised copy).
WeightMap = Callable[[torch.Tensor], torch.Tensor]


class Siren(nn.Module):
    """``(..., in_features)`` coordinates in ``[-1, 1]`` -> ``(..., out_features)`` intensities.

    Args:
        width: neurons per sine layer (>= 1).
        depth: sine layers (>= 1); a linear output layer follows them.
        w0: frequency factor of every sine layer (30 in the SIREN paper).
        in_features: coordinate dimensions (3 for a volume).
        out_features: output channels (1 for an intensity).
    """

    def __init__(self, width: int, depth: int = 3, w0: float = 30.0, in_features: int = 3, out_features: int = 1):
        super().__init__()
        for name, value in (("width", width), ("depth", depth), ("in_features", in_features),
                            ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not w0 > 0:
            raise ValueError(f"w0 must be positive, got {w0!r}")
        self.config = {"width": width, "depth": depth, "w0": float(w0)}
        self.w0 = float(w0)
        sizes = [in_features] + [width] * depth + [out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        with torch.no_grad():
            for index, layer in enumerate(self.layers):
                bound = 1 / layer.in_features if index == 0 else math.sqrt(6 / layer.in_features) / self.w0
                layer.weight.uniform_(-bound, bound)
                layer.bias.uniform_(-bound, bound)

    @staticmethod
    def parameter_count(width: int, depth: int, in_features: int = 3, out_features: int = 1) -> int:
        """Weights plus biases of a SIREN of this size (the ``paper-2025`` paper's "#Para")."""
        sizes = [in_features] + [width] * depth + [out_features]
        return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, coords: torch.Tensor, weight_map: WeightMap | None = None) -> torch.Tensor:
        """``weight_map``, if given, is applied to every weight and bias first (quantisation-aware training)."""
        use = weight_map or (lambda t: t)
        x = coords
        for layer in self.layers[:-1]:
            x = torch.sin(self.w0 * nn.functional.linear(x, use(layer.weight), use(layer.bias)))
        last = self.layers[-1]
        return nn.functional.linear(x, use(last.weight), use(last.bias))
