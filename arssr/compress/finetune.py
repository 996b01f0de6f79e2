"""End-to-end mode: the SIREN and the SR model's biases trained together against the HR volume.

Each step evaluates the SIREN and the SR model on one random block of LR
voxels, so a step costs the same on a patch and on a whole brain.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from arssr import geometry
from arssr.compress import quantize
from arssr.compress.config import CompressionConfig, lr_grid_shape
from arssr.compress.fitting import running_psnr
from arssr.models.separable import AxisPlan
from arssr.models.siren import Siren
from arssr.models.space import ModelSpace

#: HR voxels per end-to-end step (the SR model's decoder runs on each).
FINETUNE_BATCH = 1 << 15
#: LR voxels encoded around an end-to-end block (at most the encoder's receptive radius). With the shipped
#: model on Colin27, features inside a block then differ from whole-volume encoding by 5e-6 on average
#: (1e-3 with 4 voxels, 1e-7 with its full radius of 16), at a fraction of the work.
FINETUNE_HALO = 8


def finetuned_names(model) -> list[str]:
    """The SR model's parameters that ``finetune="bias"`` changes, in the order the payload stores them."""
    return [name for name, _ in model.named_parameters() if name.endswith("bias")]


def finetuned_parameters(model) -> list[torch.nn.Parameter]:
    return [model.get_parameter(name) for name in finetuned_names(model)]


def _draw_block(lr_shape, hr_shape, core: int, halo: int, generator: torch.Generator):
    """A random end-to-end block: ``(LR slices to encode, HR slices it decodes, feature coordinates)``.

    Per axis, a core of ``core`` LR voxels (the whole axis if it is at most ``core + 2 * halo``) is encoded
    with ``halo`` voxels either side; the HR voxels whose trilinear neighbourhood starts in the core are the
    block's targets, and their feature coordinates are their places in the encoded block's ``[-1, 1]`` frame.
    """
    lr_slices, hr_slices, axes = [], [], []
    for n, m in zip(lr_shape, hr_shape):
        size = n if n <= core + 2 * halo else core
        a = int(torch.randint(n - size + 1, (1,), generator=generator))
        b0, b1 = max(0, a - halo), min(n, a + size + halo)
        plan = AxisPlan.build(n, m)
        o0, o1 = plan.outputs_of(a, a + size)
        source = plan.lower[o0:o1] + plan.weight[o0:o1]  # the HR voxels' LR coordinates
        lr_slices.append(slice(b0, b1))
        hr_slices.append(slice(o0, o1))
        axes.append(torch.from_numpy(geometry.voxel_to_normalized(source - b0, b1 - b0)).float())
    return tuple(lr_slices), tuple(hr_slices), torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def finetune_sr_model(
    siren: Siren,
    model,
    hr: np.ndarray,
    config: CompressionConfig,
    device: torch.device = torch.device("cpu"),
    steps: int = 1000,
    time_budget: float | None = None,
    progress: bool = False,
) -> list[torch.Tensor]:
    """Train ``siren`` and the biases of the SR ``model`` together so that SR of the SIREN's LR volume
    matches ``hr`` (normalised, nibabel order); returns the bias changes, in :func:`finetuned_names` order.

    Each step evaluates the SIREN and the SR model on one random block (:func:`_draw_block`), so a step costs
    the same on a patch and on a whole brain. Both are trained through the quantiser, so decoding sees
    what was optimised. ``siren`` is updated in place; ``model`` is left as it was.
    """
    from torch.func import functional_call
    from tqdm.auto import tqdm

    axes = ModelSpace.file_order((0.0, 1.0), model.axis_order)  # ``hr`` is normalised already: axes only
    model = copy.deepcopy(model).to(device).eval()
    base = {name: p.detach() for name, p in model.named_parameters()}
    names = finetuned_names(model)
    deltas = [torch.zeros_like(base[name], requires_grad=True) for name in names]
    siren.to(device).train()
    # Everything below is in the model's axis order; the SIREN reads nibabel-order coordinates.
    lr_grid = torch.from_numpy(axes.to_model_axes(geometry.grid_coordinates(lr_grid_shape(hr.shape, config.scale)).numpy()))
    target = torch.from_numpy(axes.to_model_axes(hr.astype(np.float32, copy=False)))
    hr_grid = geometry.grid_coordinates(target.shape)
    halo = min(FINETUNE_HALO, model.receptive_radius)
    quantized = lambda t: quantize.fake_quantize(t, config.quant)  # noqa: E731
    optimizer = torch.optim.Adam([*siren.parameters(), *deltas], lr=config.lr / 10)
    generator = torch.Generator().manual_seed(config.seed + 1)
    peak = float(target.max() - target.min()) or 1.0
    start = time.perf_counter()
    bar = tqdm(total=steps, disable=not progress, leave=False, dynamic_ncols=True, unit="step", desc="end to end")
    for _ in range(steps):
        if time_budget is not None and time.perf_counter() - start >= time_budget:
            break
        lr_block, hr_block, feature_coords = _draw_block(lr_grid.shape[:3], target.shape, config.finetune_block,
                                                         halo, generator)
        block_grid = lr_grid[lr_block]
        lr = siren(block_grid.reshape(-1, 3).to(device), quantized).reshape(block_grid.shape[:3])[None, None]
        coords, values = hr_grid[hr_block].reshape(-1, 3), target[hr_block].reshape(-1, 1)
        pick = torch.randperm(len(coords), generator=generator)[:FINETUNE_BATCH]
        params = {name: base[name] + quantized(delta) for name, delta in zip(names, deltas)}
        predicted = functional_call(model, params, (lr, coords[pick][None].to(device)),
                                    {"feature_coords": feature_coords.reshape(-1, 3)[pick][None].to(device)})
        error = predicted.reshape(-1, 1) - values[pick].to(device)
        loss = error.abs().mean() if config.loss == "l1" else error.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix_str(f"PSNR {running_psnr(error, peak):.2f} dB", refresh=False)
        bar.update()
    bar.close()
    siren.eval()
    return [delta.detach() for delta in deltas]
