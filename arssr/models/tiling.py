"""Whole-volume super-resolution with bounded memory: the tiling engine behind ``arssr.inference``.

The LR volume is cut into tiles. Each tile is encoded together with a halo of
the encoder's receptive radius, so its features equal those of whole-volume
encoding (zero padding only at the true volume borders). The output voxels
whose trilinear neighbourhoods start inside the tile are then decoded in
small query chunks that stay in cache. Features are interpolated separably
(one axis at a time, channels last) on the regular output grid, which gives
the same values as ``ArSSR.query`` at those coordinates.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Sequence

import numpy as np
import torch

from arssr.device import free_memory_bytes
from arssr.errors import InputError
from arssr.models.arssr import ArSSR
from arssr.models.separable import AxisPlan, SeparableQuery

#: Decoder queries per chunk: activations of 4096 x 256 floats stay in a CPU's L2 cache.
DEFAULT_CHUNK = 4096
#: Bytes of encoder activations per LR voxel and feature channel, measured on the RDN with headroom.
ENCODER_BYTES_PER_VOXEL_CHANNEL = 80
#: Share of the free memory that the encoder may use for one tile.
MEMORY_SHARE = 0.5
MIN_TILE = 8
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def encoder_bytes(model: ArSSR, voxels: int) -> int:
    """Rough peak memory of encoding ``voxels`` LR voxels, scaled by the network's width."""
    width = model.args["feature_dim"] + 8 * model.args["encoder_args"].get("num_features", 64)
    return voxels * width * ENCODER_BYTES_PER_VOXEL_CHANNEL // 8


def auto_tile(model: ArSSR, shape: Sequence[int], device: torch.device) -> int:
    """Largest LR tile edge whose encoding fits in the memory share; the whole volume when it fits."""
    budget = MEMORY_SHARE * free_memory_bytes(device)
    if encoder_bytes(model, math.prod(shape)) <= budget:
        return max(shape)
    per_voxel = encoder_bytes(model, 1)
    edge = int((budget / per_voxel) ** (1 / 3)) - 2 * model.receptive_radius - 1
    if edge < MIN_TILE:
        raise InputError(
            f"not enough memory on {device} to encode even a {MIN_TILE}^3 tile "
            f"({budget / 2**30:.1f} GiB usable); free memory or use another device"
        )
    return edge


def ready_model(model: ArSSR, device: torch.device) -> ArSSR:
    """A copy of ``model`` on ``device`` in eval mode with a channels-last encoder (1.1-1.7x faster 3D
    convolutions on CPU, oneDNN, eval/bench_inference.py; same arithmetic); the caller's model is left as it is."""
    ready = copy.deepcopy(model).to(device).eval()
    ready.encoder.to(memory_format=torch.channels_last_3d)
    return ready


def _tiles(n: int, edge: int) -> list[tuple[int, int]]:
    count = max(1, math.ceil(n / edge))
    bounds = np.linspace(0, n, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def super_resolve(
    lr: np.ndarray,
    model: ArSSR,
    out_shape: Sequence[int],
    tile: int | None = None,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
) -> np.ndarray:
    """Normalised LR array (model axis order) -> normalised output array of ``out_shape``."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if tile is not None and (int(tile) != tile or tile < 1):
        raise InputError(f"tile must be a positive integer, got {tile!r}")
    halo = model.receptive_radius
    edge = int(tile) if tile is not None else auto_tile(model, lr.shape, device)
    plans = [AxisPlan.build(n, m) for n, m in zip(lr.shape, out_shape)]
    model = ready_model(model, device)
    query = SeparableQuery(model, plans, chunk)
    out = np.empty(tuple(out_shape), dtype=np.float32)
    tiles = [_tiles(n, min(edge, n)) for n in lr.shape]
    lr_tensor = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
    dtype = PRECISIONS[precision]
    autocast = (
        torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    )
    bar = _progress_bar(math.prod(out_shape), progress)
    with torch.inference_mode(), autocast:
        for t0 in tiles[0]:
            for t1 in tiles[1]:
                for t2 in tiles[2]:
                    core = (t0, t1, t2)
                    out_ranges = [plan.outputs_of(a, b) for plan, (a, b) in zip(plans, core)]
                    if any(lo == hi for lo, hi in out_ranges):
                        continue
                    features, origin = _encode_tile(model, lr_tensor, core, halo, device)
                    base = _lr_tile(lr_tensor, core, device) if model.residual else None
                    for (r0, r1), values in query.block(features, origin, out_ranges, base):
                        (p0, p1), (q0, q1) = out_ranges[1], out_ranges[2]
                        out[r0:r1, p0:p1, q0:q1] = values.cpu().numpy()
                        bar.update(values.numel())
    bar.close()
    return out


def _encode_tile(model: ArSSR, lr: torch.Tensor, core, halo: int, device: torch.device):
    """Features of LR range ``[a - 1, b + 1)`` per axis, channels last, zeros outside the volume."""
    region = [slice(max(0, a - halo), min(n, b + 1 + halo)) for (a, b), n in zip(core, lr.shape)]
    block = lr[tuple(region)][None, None].to(device).contiguous(memory_format=torch.channels_last_3d)
    features = model.encode(block)[0]
    keep = [slice(a - r.start, min(b + 1, n) - r.start) for (a, b), r, n in zip(core, region, lr.shape)]
    features = features[:, keep[0], keep[1], keep[2]].permute(1, 2, 3, 0)
    # One zero voxel on every side: LR index a - 1 (read when a == 0) and n (read when b == n).
    padded = torch.nn.functional.pad(features, (0, 0, 1, 1, 1, 1, 1, 1))
    return padded.contiguous(), tuple(a for a, _ in core)


def _lr_tile(lr: torch.Tensor, core, device: torch.device) -> torch.Tensor:
    """LR range ``[a - 1, b + 1)`` per axis, channels last, edges replicated outside the volume."""
    region = tuple(slice(max(0, a - 1), min(n, b + 1)) for (a, b), n in zip(core, lr.shape))
    pad = []
    for (a, b), n in reversed(list(zip(core, lr.shape))):  # F.pad lists the last axis first
        pad += [int(a == 0), int(b == n)]
    block = torch.nn.functional.pad(lr[region][None, None].float(), pad, mode="replicate")[0, 0]
    return block[..., None].to(device)


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="vox", unit_scale=True, disable=not enabled, leave=False, dynamic_ncols=True)
