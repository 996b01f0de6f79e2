"""ArSSR: a convolutional encoder, a trilinear feature query and an implicit MLP decoder."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from arssr.geometry import to_grid_sample_order
from arssr.intensity import NORMALIZATIONS
from arssr.models.decoder import MLPDecoder
from arssr.models.encoders import build_encoder

AXIS_ORDERS = ("xyz", "zyx")


def axis_permutation(axis_order: str) -> tuple[int, int, int]:
    """Transpose that takes a nibabel-order array to ``axis_order`` (its own inverse)."""
    return (2, 1, 0) if axis_order == "zyx" else (0, 1, 2)


class ArSSR(nn.Module):
    """Arbitrary-scale SR model. ``encode`` once, then ``query`` at any coordinates.

    Args:
        encoder: registry name of the encoder (``rdn``, ``rescnn``, ``srresnet``).
        encoder_args: keyword arguments of the encoder besides ``feature_dim``.
        feature_dim: channels of the feature map the decoder reads.
        decoder_width: hidden width of the decoder.
        decoder_depth: linear layers per decoder stage.
        axis_order: array axis order the weights were trained in: ``xyz`` is
            nibabel's order, ``zyx`` is SimpleITK's (the official release).
        normalization: intensity window the weights expect (see ``arssr.intensity``).
        residual: the decoder predicts a signed correction that is added to the
            trilinear interpolation of the LR input at the query point (edges
            replicated); ``False`` for the paper's models and the official weights.
    """

    def __init__(
        self,
        encoder: str = "rdn",
        encoder_args: dict[str, Any] | None = None,
        feature_dim: int = 128,
        decoder_width: int = 256,
        decoder_depth: int = 4,
        axis_order: str = "xyz",
        normalization: str = "percentile",
        residual: bool = False,
    ) -> None:
        super().__init__()
        if axis_order not in AXIS_ORDERS:
            raise ValueError(f"axis_order must be one of {AXIS_ORDERS}, got {axis_order!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.args = {
            "encoder": encoder,
            "encoder_args": dict(encoder_args or {}),
            "feature_dim": feature_dim,
            "decoder_width": decoder_width,
            "decoder_depth": decoder_depth,
            "axis_order": axis_order,
            "normalization": normalization,
            "residual": bool(residual),
        }
        self.axis_order = axis_order
        self.normalization = normalization
        self.residual = bool(residual)
        #: Facts from the weights file's model card (e.g. ``input_spacing_mm = "2,4"``); not part of the architecture.
        self.card: dict[str, str] = {}
        self.encoder = build_encoder(encoder, feature_dim, **self.args["encoder_args"])
        self.decoder = MLPDecoder(feature_dim + 3, 1, decoder_width, decoder_depth, final_relu=not self.residual)

    @property
    def config(self) -> dict[str, Any]:
        """``{"name", "args"}``: enough to rebuild this model."""
        return {"name": "arssr", "args": dict(self.args)}

    @property
    def receptive_radius(self) -> int:
        return self.encoder.receptive_radius

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D0, D1, D2)`` normalised LR -> ``(B, feature_dim, D0, D1, D2)`` features."""
        return self.encoder(lr)

    def query(
        self,
        features: torch.Tensor,
        coords: torch.Tensor,
        feature_coords: torch.Tensor | None = None,
        lr: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Intensities at ``coords``: ``(B, K, 3)`` in ``[-1, 1]``, array-axis order -> ``(B, K, 1)``.

        Features are interpolated trilinearly between voxel centres
        (``align_corners=False``); outside the outermost centres they fade
        towards zero, as in the official release. When ``features`` cover
        only a block of the volume, ``feature_coords`` says where ``coords``
        fall in that block's own ``[-1, 1]`` frame; the decoder still reads
        the whole-volume ``coords``. A residual model also needs the LR input
        ``lr`` (of the same block) that ``features`` were encoded from.
        """
        at = coords if feature_coords is None else feature_coords
        grid = to_grid_sample_order(at)[:, :, None, None, :].to(features.dtype)
        sampled = F.grid_sample(features, grid, mode="bilinear", align_corners=False)
        sampled = sampled[:, :, :, 0, 0].transpose(1, 2)
        out = self.decoder(torch.cat([sampled, coords.to(sampled.dtype)], dim=-1))
        if not self.residual:
            return out
        if lr is None:
            raise ValueError("a residual model needs the LR input in query()")
        base = F.grid_sample(lr.to(grid.dtype), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out + base[:, :, :, 0, 0].transpose(1, 2).to(out.dtype)

    def forward(self, lr: torch.Tensor, coords: torch.Tensor, feature_coords: torch.Tensor | None = None) -> torch.Tensor:
        return self.query(self.encode(lr), coords, feature_coords, lr)


def residual_start(model: ArSSR) -> ArSSR:
    """A residual copy of ``model`` with its last decoder layer zeroed: it starts as trilinear
    interpolation of the LR input and keeps every other learnt weight (a warm start for training)."""
    start = ArSSR(**{**model.args, "residual": True})
    start.load_state_dict(model.state_dict())
    last = [layer for layer in start.decoder.stage_two if isinstance(layer, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    return start
