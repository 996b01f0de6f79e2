"""The separable feature query that inference runs: :meth:`ArSSR.query` on a regular output grid.

On a regular grid the trilinear weights factor per axis, so features are
interpolated one axis at a time (channels last) instead of by ``grid_sample``
at every output voxel: the same values as ``ArSSR.query`` at those voxel
centres (``arssr.geometry``'s convention, ``align_corners=False``), at a
fraction of the work. The tests compare the two on real anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from arssr import geometry
from arssr.models.arssr import ArSSR

#: Output voxels interpolated at once before being decoded chunk by chunk.
SLAB_VOXELS = 1 << 16


@dataclass(frozen=True)
class AxisPlan:
    """One axis of the output grid: where each output voxel reads the LR feature map."""

    lower: np.ndarray  # index of the LR voxel centre at or below the output voxel (-1 .. n-1)
    weight: np.ndarray  # trilinear weight of lower + 1
    normalized: np.ndarray  # the output voxel's coordinate in [-1, 1]

    @classmethod
    def build(cls, n: int, m: int) -> "AxisPlan":
        source = geometry.source_coordinates(n, m)
        lower = np.floor(source).astype(np.int64)
        return cls(lower, source - lower, geometry.normalized_centres(m))

    def outputs_of(self, start: int, stop: int) -> tuple[int, int]:
        """Output range whose ``lower`` (with -1 counted as 0) lies in LR range ``[start, stop)``."""
        owner = np.maximum(self.lower, 0)
        return int(np.searchsorted(owner, start, "left")), int(np.searchsorted(owner, stop, "left"))


def lerp_axis(
    block: torch.Tensor, dim: int, lower: np.ndarray, weight: np.ndarray, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Linear interpolation of ``block`` along ``dim`` between indices ``lower`` and ``lower + 1``."""
    index = torch.from_numpy(lower).to(block.device)
    below = block.index_select(dim, index)
    above = block.index_select(dim, index + 1)
    shape = [1] * block.dim()
    shape[dim] = -1
    weights = torch.from_numpy(weight).to(block).view(shape)
    return torch.lerp(below, above, weights) if out is None else torch.lerp(below, above, weights, out=out)


class SeparableQuery:
    """:meth:`ArSSR.query` on the blocks of a regular output grid, from a channels-last feature block padded
    by one voxel of zeros: ``plans`` are the grid's axes, ``chunk`` the decoder's queries per call."""

    def __init__(self, model: ArSSR, plans: Sequence[AxisPlan], chunk: int) -> None:
        self.model, self.plans, self.chunk = model, plans, chunk

    def block(self, features: torch.Tensor, origin: Sequence[int], out_ranges: Sequence[tuple[int, int]],
              base: torch.Tensor | None = None):
        """Yield ``(rows, values)`` slabs along axis 0 of the output block ``out_ranges``.

        ``features`` is ``(A, B, C, channels)`` whose index 0 is LR voxel ``origin - 1``; ``base``, for a
        residual model, is the LR block ``(A, B, C, 1)`` on the same voxels, its edges replicated.
        """
        (o0, o1), (p0, p1), (q0, q1) = out_ranges
        cols, depth = p1 - p0, q1 - q0
        rows_per_slab = max(1, SLAB_VOXELS // max(1, cols * depth))
        device = features.device
        # Where each output column reads on axes 1 and 2 is the same for every slab of rows.
        ax1, ax2 = self.plans[1], self.plans[2]
        low1, w1 = ax1.lower[p0:p1] - origin[1] + 1, ax1.weight[p0:p1]
        low2, w2 = ax2.lower[q0:q1] - origin[2] + 1, ax2.weight[q0:q1]
        coords12 = torch.stack(
            torch.meshgrid(
                torch.from_numpy(ax1.normalized[p0:p1]).float(),
                torch.from_numpy(ax2.normalized[q0:q1]).float(),
                indexing="ij",
            ),
            dim=-1,
        ).to(device)
        for r0 in range(o0, o1, rows_per_slab):
            r1 = min(o1, r0 + rows_per_slab)
            ax0 = self.plans[0]
            low0, w0 = ax0.lower[r0:r1] - origin[0] + 1, ax0.weight[r0:r1]
            slab = lerp_axis(lerp_axis(features, 0, low0, w0), 1, low1, w1)
            # Decoder input [feature, coordinate] is filled in place: no concatenated copy.
            channels = slab.shape[-1]
            queries = torch.empty((r1 - r0, cols, depth, channels + 3), dtype=slab.dtype, device=device)
            lerp_axis(slab, 2, low2, w2, out=queries[..., :channels])
            queries[..., channels] = torch.from_numpy(ax0.normalized[r0:r1]).to(queries).view(-1, 1, 1)
            queries[..., channels + 1:] = coords12
            values = torch.cat([self.model.decoder(part) for part in queries.view(-1, channels + 3).split(self.chunk)])
            values = values.float().view(r1 - r0, cols, depth)
            if base is not None:  # the same separable lerp as the features: trilinear, as ArSSR.query's
                values += lerp_axis(lerp_axis(lerp_axis(base, 0, low0, w0), 1, low1, w1), 2, low2, w2)[..., 0]
            yield (r0, r1), values
