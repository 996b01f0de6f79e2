"""Fitting a SIREN to a volume, and evaluating it on a grid."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from arssr import geometry
from arssr.compress import quantize
from arssr.compress.config import CompressionConfig
from arssr.models.siren import Siren

#: Coordinates per SIREN evaluation when decoding (bounds activation memory).
DECODE_CHUNK = 1 << 16


def running_psnr(error: torch.Tensor, peak: float) -> float:
    """PSNR of a step's residuals for the progress bar."""
    return 10 * math.log10(peak**2 / max(float(error.detach().square().mean()), 1e-20))


def fit_siren(
    target: np.ndarray,
    config: CompressionConfig,
    device: torch.device = torch.device("cpu"),
    target_psnr: float | None = None,
    time_budget: float | None = None,
    progress: bool = False,
) -> Siren:
    """Fit a SIREN to ``target`` (3D, on its voxel centres in ``[-1, 1]``).

    Stops after ``config.steps``, at ``time_budget`` seconds, or once the
    running PSNR (data range of ``target``, on the step's coordinates) reaches
    ``target_psnr``. The last ``config.qat`` share of the steps or of the time
    trains through the quantiser; reaching the target starts that phase early.
    """
    # The SIREN's initialisation draws from torch's global generator: seed it inside a fork, so the caller's
    # random state is the same afterwards.
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        return _fit_siren(target, config, device, target_psnr, time_budget, progress)


def _fit_siren(target, config, device, target_psnr, time_budget, progress) -> Siren:
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(config.seed)
    coords = geometry.grid_coordinates(target.shape).reshape(-1, 3).to(device)
    values = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)).reshape(-1, 1).to(device)
    peak = float(values.max() - values.min()) or 1.0
    model = Siren(config.width, config.depth, config.w0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    limit = config.steps
    qat_from = limit - round(config.qat * limit) if config.qat else limit
    weight_map = None
    start = time.perf_counter()
    bar = tqdm(total=limit, disable=not progress, leave=False, dynamic_ncols=True, unit="step")
    step = 0
    while step < limit:
        elapsed = time.perf_counter() - start
        if time_budget is not None and elapsed >= time_budget:
            break
        if weight_map is None and config.qat and (
            step >= qat_from or (time_budget is not None and elapsed >= (1 - config.qat) * time_budget)
        ):
            weight_map = lambda t: quantize.fake_quantize(t, config.quant)  # noqa: E731
            for group in optimizer.param_groups:
                group["lr"] = config.lr / 10
        if len(coords) > config.batch:
            pick = torch.randint(len(coords), (config.batch,), generator=generator).to(device)
            x, y = coords[pick], values[pick]
        else:
            x, y = coords, values
        error = model(x, weight_map) - y
        loss = error.abs().mean() if config.loss == "l1" else error.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        running = running_psnr(error, peak)
        bar.set_postfix_str(f"PSNR {running:.2f} dB", refresh=False)
        bar.update()
        if target_psnr is not None and running >= target_psnr:
            if weight_map is not None or not config.qat:
                break
            # Target reached in full precision: a short quantisation-aware phase, then stop.
            qat_from = step
            limit = min(limit, step + max(1, round(config.qat * step)))
    bar.close()
    return model.eval()


def evaluate_siren(model: Siren, shape, device: torch.device) -> np.ndarray:
    """The SIREN's values on the voxel centres of a grid of ``shape``."""
    coords = geometry.grid_coordinates(shape).reshape(-1, 3)
    with torch.inference_mode():
        parts = [model(chunk.to(device)).cpu() for chunk in coords.split(DECODE_CHUNK)]
    return torch.cat(parts).reshape(tuple(shape)).numpy()
