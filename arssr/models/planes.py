"""The through-plane prior: a 2D network that restores the slice axis of a thick-slice volume in the two
planes that contain it (SMORE, ECLARE), the two estimates averaged, and that for mirrored copies of the volume
too (:func:`through_plane`'s ``mirrors``).

A plane is ``(rows, columns)`` with the slice axis along the rows, already interpolated to the output
grid (cubic, as :func:`arssr.gain.interpolation` does along thick slices); the columns are the input's own
fine in-plane axis. The network adds a residual to that interpolation, told the slice spacing and the
slice thickness in output voxels. A 2D U-Net (MONAI's) costs about a microsecond per voxel and plane on
one CPU thread, a small fraction of the 3D model per copy (four copies by default: eval/thick_head_speed.py).

Files: safetensors whose metadata has ``format`` = :data:`FORMAT` and the network's arguments.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from monai.networks.nets import UNet
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from arssr.errors import InputError, ModelFileError
from arssr.files import check_input_file
from arssr.intensity import NORMALIZATIONS
from arssr.models.checkpoint import check_finite, pretrained_path, save_weights

FORMAT = "arssr-plane-prior"
#: The shipped prior's file name in ``arssr.pretrained`` (it may not be installed).
DEFAULT_PRIOR = "arssr_planes_v2.safetensors"
FORMAT_VERSION = 1
#: Slice spacings and thicknesses (output voxels) are given to the network divided by this.
CONDITION_SCALE = 8.0
#: Slice spacings (output voxels) the shipped prior was trained on; outside them ``upsample`` warns.
TRAINED_SPACING = (2.0, 8.0)
#: Planes this many at a time through the network (bounded memory).
PLANES_PER_BATCH = 8


class PlanePrior(torch.nn.Module):
    """A 2D U-Net over planes interpolated along their rows, plus two constant channels: the slice spacing
    and thickness in output voxels (over :data:`CONDITION_SCALE`); its output is added to the plane. No
    normalisation layers: with MONAI's default instance norm it fell 0.9 dB below cubic after 400 steps where
    without it was above (as EDSR found for SR).

    Args:
        channels: features at each resolution of the U-Net (MONAI ``UNet``), halving the plane between them.
        res_units: residual units per level.
        normalization: the intensity window of the arrays it sees (``arssr.intensity``).
        phase: also give it where each row lies within its slice, as the cosine and sine of
            ``2 pi (row + offset + 1/2) / spacing`` (two more channels): a convolution cannot tell from the
            interpolation alone which rows hold the slices' centres and which their boundaries.
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256), res_units: int = 2,
                 normalization: str = "percentile", phase: bool = False) -> None:
        super().__init__()
        if len(channels) < 2 or res_units < 0:
            raise ValueError("a plane prior needs at least two levels and a non-negative number of residual units")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; known: {', '.join(NORMALIZATIONS)}")
        self.config = {"channels": [int(c) for c in channels], "res_units": int(res_units),
                       "normalization": normalization}
        if phase:  # only when set, so that files without it keep their arguments
            self.config["phase"] = True
        self.phase = bool(phase)
        self.multiple = 2 ** (len(channels) - 1)
        self.net = UNet(spatial_dims=2, in_channels=3 + 2 * self.phase, out_channels=1, channels=tuple(channels),
                        strides=(2,) * (len(channels) - 1), num_res_units=res_units, norm=None)

    def forward(self, planes: torch.Tensor, spacing: torch.Tensor, thickness: torch.Tensor,
                offset: torch.Tensor | None = None) -> torch.Tensor:
        """``planes`` ``(B, 1, H, W)`` with ``H`` and ``W`` multiples of :attr:`multiple`; ``spacing`` and
        ``thickness`` ``(B,)``; ``offset`` ``(B,)``: rows from the start of the first slice to the planes' first
        row (0 when ``None``; used with ``phase`` only)."""
        conditions = torch.stack([spacing, thickness], dim=1).to(planes) / CONDITION_SCALE
        maps = [conditions[:, :, None, None].expand(-1, -1, *planes.shape[-2:])]
        if self.phase:
            offset = torch.zeros_like(spacing) if offset is None else offset
            rows = torch.arange(planes.shape[-2], dtype=torch.float64)
            angle = 2 * math.pi * (rows[None] + offset.double()[:, None] + 0.5) / spacing.double()[:, None]
            waves = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1).to(planes)  # (B, 2, H)
            maps.append(waves[..., None].expand(-1, -1, -1, planes.shape[-1]))
        return planes + self.net(torch.cat([planes, *maps], dim=1))


def restore_planes(prior: PlanePrior, planes: torch.Tensor, spacing: float, thickness: float,
                   offset: float = 0.0) -> torch.Tensor:
    """``(N, H, W)`` planes through the prior, reflected at their edges up to a multiple of its levels and
    cropped back, :data:`PLANES_PER_BATCH` at a time; ``offset`` as :meth:`PlanePrior.forward`'s."""
    height, width = planes.shape[-2:]
    pad_h, pad_w = -height % prior.multiple, -width % prior.multiple
    out = torch.empty_like(planes)
    for start in range(0, planes.shape[0], PLANES_PER_BATCH):
        batch = planes[start:start + PLANES_PER_BATCH, None]
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            batch = torch.nn.functional.pad(batch, (0, pad_w, 0, pad_h), mode=mode)
        n = batch.shape[0]
        restored = prior(batch, torch.full((n,), float(spacing)), torch.full((n,), float(thickness)),
                         torch.full((n,), float(offset)))
        out[start:start + n] = restored[:, 0, :height, :width]
    return out


#: Members of :func:`through_plane`'s flip self-ensemble by ``mirrors`` (the count includes the volume as it
#: is): the array axes mirrored in each, ``in-plane`` standing for both axes other than the slice axis.
MIRRORS = {1: ((),), 2: ((), ("in-plane",)), 4: ((), ("in-plane",), ("slice",), ("in-plane", "slice"))}


@torch.no_grad()
def through_plane(prior: PlanePrior, interpolated: np.ndarray, axis: int, spacing: float,
                  thickness: float, mirrors: int = 1) -> np.ndarray:
    """The prior's estimate of a volume from its interpolation along slice ``axis`` (float32, any 3D shape):
    the mean of the planes restored across each of the two other axes. ``spacing`` and ``thickness`` are
    the slices' in output voxels. ``mirrors`` 1 restores the volume once, as it is (the default here;
    ``arssr.inference.upsample`` takes ``arssr.protocol.DEFAULT_PRIOR_MIRRORS``); 2 or 4 also restores it
    mirrored across its in-plane axes (every plane mirrored along its columns), and with 4 each of those mirrored
    along the slice axis, and averages the estimates mirrored back (a self-ensemble, :data:`MIRRORS`); a prior
    with the phase input is told where the slices start in the mirrored rows."""
    if interpolated.ndim != 3 or axis not in (0, 1, 2):
        raise InputError(f"the through-plane prior needs a 3D volume and a slice axis 0-2, got {interpolated.shape}")
    if mirrors not in MIRRORS:
        raise ValueError(f"mirrors must be one of {', '.join(map(str, MIRRORS))}, got {mirrors!r}")
    in_plane = tuple(a for a in range(3) if a != axis)
    training = prior.training
    prior.eval()
    try:
        members = MIRRORS[mirrors]
        given = torch.from_numpy(np.asarray(interpolated, dtype=np.float32))
        estimate = torch.zeros(interpolated.shape, dtype=torch.float32)
        for member in members:
            flipped = (in_plane if "in-plane" in member else ()) + ((axis,) if "slice" in member else ())
            volume = given.flip(flipped) if flipped else given
            offset = -volume.shape[axis] % spacing if axis in flipped else 0.0  # where the mirrored slices start
            for across in in_plane:
                stacked = (3 - axis - across, axis, across)  # planes along the third axis, slices as rows
                planes = volume.permute(*stacked).contiguous()
                restored = restore_planes(prior, planes, spacing, thickness, offset).permute(*np.argsort(stacked))
                estimate += (restored.flip(flipped) if flipped else restored) / (2 * len(members))
    finally:
        prior.train(training)
    return estimate.numpy()


def default_prior_path() -> Path:
    """Where the shipped plane prior lives (it may not be installed)."""
    return pretrained_path(DEFAULT_PRIOR)


def installed_prior_path() -> Path | None:
    """:func:`default_prior_path` when the shipped prior is installed, else ``None``."""
    path = default_prior_path()
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def shipped_prior() -> PlanePrior:
    """The shipped prior (:func:`default_prior_path`), loaded once; callers copy it before changing it."""
    return load_prior(default_prior_path())


def save_prior(prior: PlanePrior, path: str | os.PathLike, half: bool = False, **metadata: str) -> Path:
    """Write ``prior`` as self-describing safetensors, atomically; ``half`` stores float16."""
    return save_weights(prior, path, FORMAT, FORMAT_VERSION, half, **metadata)


def load_prior(path: str | os.PathLike) -> PlanePrior:
    """A prior written by :func:`save_prior`, in eval mode on the CPU; ``ModelFileError`` naming the file for
    anything else (another format, arguments that build no prior, tensors that do not match, NaN)."""
    try:
        check_input_file(path, "plane prior file")
    except InputError as err:
        raise ModelFileError(str(err)) from None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: not a readable safetensors file ({err})") from None
    if meta.get("format") != FORMAT or not str(meta.get("format_version", "")).isdigit():
        raise ModelFileError(f"{path}: not a plane prior (no {FORMAT} metadata)")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: plane prior format version {meta['format_version']} is newer than this "
                             f"arssr reads ({FORMAT_VERSION})")
    try:
        args = json.loads(meta.get("model", ""))
        if not isinstance(args, dict) or any(int(c) > 4096 for c in args.get("channels", ())):
            raise ValueError("model arguments out of range")
        prior = PlanePrior(**args)
        prior.load_state_dict(state, strict=True)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{path}: the plane prior's arguments or tensors do not build it "
                             f"({str(err).splitlines()[0][:200]})") from None
    check_finite(state, Path(path))
    prior.card = {k: v for k, v in meta.items() if k not in ("format", "format_version", "model")}
    return prior.eval()
