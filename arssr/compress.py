"""Volume compression: downsample, fit a SIREN to the LR volume, quantise and code its weights.

Decoding evaluates the SIREN on the LR grid, then the SR model (the
*decoder*, any arssr model file; default the shipped one) brings it back to
the original grid (SPEC section 4 geometry), intensities and dtype. The SR
model is not in the file: its name and sha256 are, and decoding refuses any
other model. At scale 1 no SR model is used (the SIREN alone, on the HR grid).

Intensities: the SIREN learns the LR volume normalised by the decoder's
intensity rule (``percentile`` for arssr's models; min-max at scale 1); the
window travels in the file, and decoded values are clipped to the original
``[min, max]`` and cast to the original dtype (float32 if the input was
stored with a scale slope).

With ``finetune="bias"`` (seed 003's end-to-end mode, cut to what a file can
carry), the SIREN and the SR model's biases are then trained together against
the HR volume; the bias changes are quantised like the SIREN's weights and go
into the payload, so they count in the file's size. The file keeps them only if
the decoded volume is closer to the original with them than with the SIREN as
it was before that phase.

Rate is that of the real file: ``bpp = 8 * bytes / HR voxels``.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from arssr import container, geometry, quantize
from arssr.degrade import DEGRADATIONS, degrade
from arssr.errors import InputError, ModelFileError
from arssr.files import refuse_existing
from arssr.intensity import denormalize, intensity_window, normalize
from arssr.models.siren import Siren
from arssr.volume import Volume, load_volume, save_volume

LOSSES = ("l1", "mse")
#: Coordinates per SIREN evaluation when decoding (bounds activation memory).
DECODE_CHUNK = 1 << 16
#: SIREN widths tried, smallest first, when a target PSNR chooses the size.
WIDTH_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256)
#: What the end-to-end phase may change in the SR model: nothing, or its biases.
FINETUNE = ("none", "bias")
#: HR voxels per end-to-end step (the SR model's decoder runs on each).
FINETUNE_BATCH = 1 << 15
#: LR voxels encoded around an end-to-end block (at most the encoder's receptive radius). With the shipped
#: model on Colin27, features inside a block then differ from whole-volume encoding by 5e-6 on average
#: (1e-3 with 4 voxels, 1e-7 with its full radius of 16), at a fraction of the work.
FINETUNE_HALO = 8


@dataclass(frozen=True)
class CompressionConfig:
    """How a volume is compressed (seed 003's defaults).

    ``scale``: HR/LR size ratio per axis (1 = no downsampling, no SR model);
    ``method``: degradation (``kspace`` or ``lanczos``, see ``arssr.degrade``);
    ``width``/``depth``/``w0``: the SIREN; ``loss``: ``l1`` or ``mse``;
    ``lr``: Adam learning rate; ``steps``: most optimisation steps;
    ``quant``: ``fp32``, ``fp16`` or ``int2`` .. ``int8``; ``qat``: share of
    the steps (and of a time budget) spent on quantisation-aware fine-tuning
    at lr / 10; ``batch``: most coordinates per step (random subsets beyond);
    ``seed``: initialisation and sampling seed; ``finetune``: ``none`` or
    ``bias`` (the SR model's biases trained with the SIREN on the HR volume,
    their changes stored in the file) for the last ``finetune_share`` of the
    steps or time budget, each step on a random block of ``finetune_block``
    LR voxels per axis (the whole axis when it is not much longer).
    """

    scale: float = 2.0
    method: str = "kspace"
    width: int = 30
    depth: int = 3
    w0: float = 30.0
    loss: str = "l1"
    lr: float = 1.5e-3
    steps: int = 5000
    quant: str = "int8"
    qat: float = 0.1
    batch: int = 1 << 18
    seed: int = 0
    finetune: str = "none"
    finetune_share: float = 0.3
    finetune_block: int = 24

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale >= 1):
            raise InputError(f"scale must be >= 1, got {self.scale}")
        if self.method not in DEGRADATIONS:
            raise InputError(f"unknown downsampling {self.method!r}; known: {', '.join(DEGRADATIONS)}")
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.steps < 1 or self.batch < 1 or not 0 <= self.qat < 1 or not self.lr > 0:
            raise InputError("steps and batch must be >= 1, qat in [0, 1), lr > 0")
        if self.finetune not in FINETUNE:
            raise InputError(f"unknown decoder fine-tuning {self.finetune!r}; known: {', '.join(FINETUNE)}")
        if self.finetune != "none" and (self.scale == 1 or not 0 < self.finetune_share < 1):
            raise InputError("decoder fine-tuning needs a scale above 1 (an SR decoder) and finetune_share in (0, 1)")
        if self.finetune_block < 2:
            raise InputError(f"finetune_block must be at least 2 LR voxels, got {self.finetune_block}")
        quantize.check_mode(self.quant)
        with torch.random.fork_rng(devices=[]):  # validates the network's arguments; its random init is discarded
            Siren(self.width, self.depth, self.w0)


#: Seed settings. ``paper-2025`` (seed 003): k-space DS 1/2, 3 x 30 SIREN (its trade-off point), L1.
#: ``paper-2023`` (seed 002): Lanczos DS 1/4, 3 x 128 SIREN, MSE.
PRESETS = {
    "paper-2025": CompressionConfig(),
    "paper-2023": CompressionConfig(scale=4.0, method="lanczos", width=128, loss="mse", steps=15000),
    "fast": CompressionConfig(width=64, steps=500),
}


def make_config(preset: str = "paper-2025", **overrides) -> CompressionConfig:
    """A preset with some fields replaced (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    try:
        return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    except (TypeError, ValueError) as err:
        raise InputError(str(err)) from None


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


def _running_psnr(error: torch.Tensor, peak: float) -> float:
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
        running = _running_psnr(error, peak)
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
    from arssr.inference import AxisPlan

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


def finetune_decoder(
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
    the same on a patch and on a whole brain. Both are trained through the quantiser, so the decoder sees
    what was optimised. ``siren`` is updated in place; ``model`` is left as it was.
    """
    from torch.func import functional_call
    from tqdm.auto import tqdm

    from arssr.models.arssr import axis_permutation

    order = axis_permutation(model.axis_order)
    model = model.to(device).eval()
    base = {name: p.detach() for name, p in model.named_parameters()}
    names = finetuned_names(model)
    deltas = [torch.zeros_like(base[name], requires_grad=True) for name in names]
    siren.to(device).train()
    # Everything below is in the model's axis order; the SIREN reads nibabel-order coordinates.
    lr_grid = geometry.grid_coordinates(_lr_shape(hr.shape, config.scale)).permute(*order, 3)
    target = torch.from_numpy(np.ascontiguousarray(hr.transpose(order), dtype=np.float32))
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
        bar.set_postfix_str(f"PSNR {_running_psnr(error, peak):.2f} dB", refresh=False)
        bar.update()
    bar.close()
    siren.eval()
    return [delta.detach() for delta in deltas]


def evaluate_siren(model: Siren, shape, device: torch.device) -> np.ndarray:
    """The SIREN's values on the voxel centres of a grid of ``shape``."""
    coords = geometry.grid_coordinates(shape).reshape(-1, 3)
    with torch.inference_mode():
        parts = [model(chunk.to(device)).cpu() for chunk in coords.split(DECODE_CHUNK)]
    return torch.cat(parts).reshape(tuple(shape)).numpy()


# ---------------------------------------------------------------------------
# Encoding and decoding in memory
# ---------------------------------------------------------------------------


def decoder_identity(path: str | os.PathLike | None) -> dict:
    """``{"name", "sha256"}`` of an SR model file (default: the shipped model)."""
    from arssr.models import default_model_path, file_sha256

    path = Path(path) if path is not None else default_model_path()
    return {"name": path.name, "sha256": file_sha256(path)}


def load_decoder(record: dict, path: str | os.PathLike | None):
    """The SR model of ``path`` (default: the shipped model) if it is the one ``record`` names."""
    from arssr.models import default_model_path, file_sha256, load_model

    path = Path(path) if path is not None else default_model_path()
    wanted = f"{record['name']} (sha256 {record['sha256'][:16]}...)"
    if not path.is_file():
        raise ModelFileError(f"decoder model {path} not found; this file needs {wanted}: pass it with --decoder-weights")
    sha = file_sha256(path)
    if sha != record["sha256"]:
        raise ModelFileError(
            f"decoder model {path} (sha256 {sha[:16]}...) is not the one this file was compressed with; "
            f"it needs {wanted}: pass that file with --decoder-weights"
        )
    return load_model(path)


def _stored_dtype(volume: Volume) -> str:
    """The dtype to restore: the file's own, or float32 if a scale slope made its values non-integer."""
    dtype = np.dtype(volume.input_dtype)
    if volume.header is not None and np.issubdtype(dtype, np.integer):
        slope, inter = volume.header.get_slope_inter()
        if slope not in (None, 1.0) or inter not in (None, 0.0):
            return "float32"
    return dtype.name


def _lr_shape(shape, scale: float) -> tuple[int, int, int]:
    lr_shape = geometry.output_shape(shape, (1 / scale,) * 3)
    if min(lr_shape) < 2:
        raise InputError(f"scale {scale:g} leaves fewer than 2 voxels on an axis of {tuple(shape)}")
    return lr_shape


def _header_meta(volume: Volume, config: CompressionConfig, lr_shape, window, decoder: dict | None) -> dict:
    header = volume.header
    codes = [int(header["qform_code"]), int(header["sform_code"])] if header is not None else [0, 0]
    return {
        "shape": list(volume.shape),
        "affine": [float(v) for v in volume.affine[:3].ravel()],
        "codes": codes,
        "dtype": _stored_dtype(volume),
        "range": [float(volume.data.min()), float(volume.data.max())],
        "window": [float(window[0]), float(window[1])],
        "scale": float(config.scale),
        "method": config.method,
        "lr_shape": list(lr_shape),
        "siren": dict(Siren(config.width, config.depth, config.w0).config),
        "quant": config.quant,
        "codec": "none",
        "decoder": decoder,
    }


def prepare(volume: Volume, config: CompressionConfig, decoder: str | os.PathLike | None = None):
    """``(meta, normalised LR target, SR model)``: everything but the weights (no SR model at scale 1)."""
    if config.scale == 1:
        window = (float(volume.data.min()), float(volume.data.max()))
        return _header_meta(volume, config, volume.shape, window, None), normalize(volume.data, window), None
    from arssr.models import load_model

    model = load_model(decoder)  # a clear error first for a missing or foreign file
    lr_shape = _lr_shape(volume.shape, config.scale)
    lr = degrade(torch.from_numpy(volume.data), lr_shape, config.method).numpy()
    window = intensity_window(lr, model.normalization)
    meta = _header_meta(volume, config, lr_shape, window, decoder_identity(decoder))
    return meta, normalize(lr, window), model


def encode(
    volume: Volume,
    config: CompressionConfig,
    decoder: str | os.PathLike | None = None,
    device: torch.device = torch.device("cpu"),
    target_psnr: float | None = None,
    time_budget: float | None = None,
    progress: bool = False,
) -> list[tuple[dict, bytes]]:
    """Candidate ``(meta, payload)`` encodings of ``volume``: the fitted SIREN, quantised and entropy-coded;
    with ``config.finetune``, first the result of the end-to-end phase, then the SIREN as it was before it
    (:func:`compress_volume` keeps whichever decodes closer to the volume)."""
    meta, target, model = prepare(volume, config, decoder)
    share = config.finetune_share if config.finetune != "none" else 0.0
    first = replace(config, steps=max(1, round((1 - share) * config.steps)))
    siren = fit_siren(target, first, device, target_psnr, None if time_budget is None else (1 - share) * time_budget,
                      progress)
    candidates = [(siren, [])]
    if config.finetune != "none":
        tuned = copy.deepcopy(siren)
        deltas = finetune_decoder(tuned, model, normalize(volume.data, meta["window"]), config, device,
                                  config.steps - first.steps, None if time_budget is None else share * time_budget,
                                  progress)
        candidates.insert(0, (tuned, deltas))
    encoded = []
    for net, deltas in candidates:
        record = dict(meta)
        if deltas:
            record["finetune"] = {"mode": config.finetune, "params": sum(d.numel() for d in deltas)}
        elif model is not None:
            # Decoding projects the SR result onto the decoded LR; the end-to-end phase learnt without it.
            record["consistency"] = config.method
        raw = quantize.pack_tensors([*net.state_dict().values(), *deltas], config.quant)
        record["codec"], payload = quantize.entropy_encode(raw)
        encoded.append((record, payload))
    return encoded


def decode(
    meta: dict,
    payload: bytes,
    decoder: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Volume:
    """The volume that ``(meta, payload)`` describe; the SR model at ``decoder`` must be the recorded one."""
    import nibabel as nib

    from arssr.consistency import check_operator, project
    from arssr.device import resolve_device
    from arssr.inference import super_resolve
    from arssr.models.arssr import axis_permutation

    device = resolve_device(device) if not isinstance(device, torch.device) else device
    try:
        model = load_decoder(meta["decoder"], decoder) if meta["decoder"] is not None else None
        siren = Siren(**meta["siren"])
        shape, lr_shape = tuple(meta["shape"]), tuple(meta["lr_shape"])
        affine = np.vstack([np.asarray(meta["affine"], dtype=np.float64).reshape(3, 4), [0, 0, 0, 1]])
        dtype, codes = np.dtype(meta["dtype"]), [int(c) for c in meta["codes"]]
        window, clip = tuple(meta["window"]), tuple(meta["range"])
        tuned = _finetuned_parameters(meta.get("finetune"), model)
        check_operator(meta.get("consistency", "none"))
        raw = quantize.entropy_decode(meta["codec"], payload)
        shapes = [t.shape for t in siren.state_dict().values()] + [p.shape for p in tuned]
        tensors = quantize.unpack_tensors(raw, shapes, meta["quant"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"malformed .arssr metadata ({type(err).__name__}: {err})") from None
    count = len(siren.state_dict())
    siren.load_state_dict(dict(zip(siren.state_dict(), tensors[:count])))
    with torch.no_grad():
        for parameter, delta in zip(tuned, tensors[count:]):
            parameter += delta
    lr = evaluate_siren(siren.to(device), lr_shape, device)
    if model is not None:
        order = axis_permutation(model.axis_order)
        sr = super_resolve(lr.transpose(order), model, tuple(shape[i] for i in order),
                           device=device, progress=progress).transpose(order)
        floor = (0.0 - window[0]) / (window[1] - window[0]) if clip[0] >= 0 else None  # 0 in intensity units
        lr = project(sr, lr, meta.get("consistency", "none"), floor)
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_qform(affine, code=codes[0])
    header.set_sform(affine, code=codes[1])
    return Volume(np.ascontiguousarray(denormalize(lr, window, clip)), affine, header)


def _finetuned_parameters(record: dict | None, model) -> list[torch.Tensor]:
    """The SR model's parameters that the file's ``finetune`` record changes (checked against it)."""
    if not record:
        return []
    if record["mode"] not in FINETUNE or model is None:
        raise InputError(f"unknown decoder fine-tuning {record['mode']!r} in the file")
    parameters = finetuned_parameters(model)
    if sum(p.numel() for p in parameters) != record["params"]:
        raise InputError(f"the file fine-tunes {record['params']} decoder parameters, the decoder model has "
                         f"{sum(p.numel() for p in parameters)}")
    return parameters


# ---------------------------------------------------------------------------
# Rate
# ---------------------------------------------------------------------------


def rate(meta: dict, file_bytes: int) -> dict:
    """Rate of a file: bpp, ratio against the raw volume at its dtype, and seed 003's CR ``1 - params / voxels``
    (params: the SIREN's and any fine-tuned decoder parameters)."""
    voxels = math.prod(meta["shape"])
    params = Siren.parameter_count(meta["siren"]["width"], meta["siren"]["depth"])
    tuned = (meta.get("finetune") or {}).get("params", 0)
    raw = voxels * np.dtype(meta["dtype"]).itemsize
    return {
        "bytes": file_bytes,
        "voxels": voxels,
        "bpp": 8 * file_bytes / voxels,
        "raw_bytes": raw,
        "compression_ratio": raw / file_bytes,
        "siren_params": params,
        "decoder_params": tuned,
        "paper_cr": 1 - (params + tuned) / voxels,
    }


def width_for_budget(volume: Volume, config: CompressionConfig, budget_bytes: float, meta: dict,
                     extra: list[torch.Tensor] = ()) -> int:
    """Widest SIREN whose file cannot exceed ``budget_bytes`` (raw weight stream, header and slack counted);
    ``extra``: further tensors the payload carries (fine-tuned decoder parameters)."""
    per_tensor = quantize.tensor_overhead(config.quant)
    size = quantize.value_bytes(config.quant)
    fixed = sum(size * t.numel() + per_tensor for t in extra)
    if extra:
        meta = {**meta, "finetune": {"mode": config.finetune, "params": sum(t.numel() for t in extra)}}
    best = 0
    for width in range(1, 4097):
        trial = {**meta, "siren": {**meta["siren"], "width": width}}
        weights = size * Siren.parameter_count(width, config.depth) + per_tensor * 2 * (config.depth + 1) + fixed
        if len(container.pack(trial, b"")) + weights + 16 > budget_bytes:  # 16: metadata digits and codec name
            break
        best = width
    if best == 0:
        raise InputError(f"a target of {8 * budget_bytes / math.prod(volume.shape):.4g} bpp is below the smallest "
                         "possible file for this volume")
    return best


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _quality(decoded: Volume, original: Volume) -> dict:
    from arssr.metrics import SSIM_WINDOW, psnr, ssim

    small = min(original.shape) < SSIM_WINDOW  # SSIM is undefined there
    return {"psnr": psnr(decoded.data, original.data), "ssim": None if small else ssim(decoded.data, original.data)}


def compress_volume(
    volume: Volume,
    config: CompressionConfig,
    decoder: str | os.PathLike | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    time_budget: float | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    search_scale: bool = False,
) -> tuple[bytes, dict]:
    """``(file bytes, report)``. ``target_bpp`` sets the SIREN width so the file stays within it;
    ``target_psnr`` tries widths (and scale 1 after ``config.scale`` when ``search_scale``), smallest
    first, until the decoded volume reaches it, else keeps the best."""
    from arssr.device import resolve_device

    if target_bpp is not None and target_psnr is not None:
        raise InputError("give at most one of target_bpp and target_psnr")
    low, high = float(volume.data.min()), float(volume.data.max())
    if low == high:
        raise InputError(f"the volume is constant ({low:g} everywhere): nothing to compress")
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    if target_bpp is not None:
        if not target_bpp > 0:
            raise InputError(f"target bpp must be positive, got {target_bpp}")
        meta, _, model = prepare(volume, config, decoder)
        extra = finetuned_parameters(model) if config.finetune != "none" else []
        budget = target_bpp * math.prod(volume.shape) / 8
        config = replace(config, width=width_for_budget(volume, config, budget, meta, extra))
    if target_psnr is None:
        trials = [config]
    else:
        scales = [config.scale] + ([1.0] if search_scale and config.scale != 1 else [])
        trials = [replace(config, width=w, scale=s) for w in WIDTH_LADDER for s in scales]
    best = None
    for trial in trials:
        start = time.perf_counter()
        candidates = encode(volume, trial, decoder, device, target_psnr, time_budget, progress)
        encode_s = time.perf_counter() - start
        reports = []
        for meta, payload in candidates:
            blob = container.pack(meta, payload)
            start = time.perf_counter()
            quality = _quality(decode(meta, payload, decoder, device), volume)
            report = {**rate(meta, len(blob)), **quality, "decode_s": time.perf_counter() - start,
                      "config": asdict(trial)}
            if trial.finetune != "none":
                report["finetune_kept"] = "finetune" in meta
            reports.append((blob, report))
        # Choosing between candidates is part of encoding: their decodes count in its time.
        encode_s += sum(report["decode_s"] for _, report in reports) if len(reports) > 1 else 0.0
        for blob, report in reports:
            report["encode_s"] = encode_s
            if best is None or report["psnr"] > best[1]["psnr"]:
                best = (blob, report)
        if target_psnr is None or best[1]["psnr"] >= target_psnr:
            return best
    warnings.warn(f"no tried setting reached {target_psnr} dB; kept the best ({best[1]['psnr']:.2f} dB)", stacklevel=2)
    return best


def compress(
    source: Volume | str | os.PathLike,
    output: str | os.PathLike,
    decoder: str | os.PathLike | None = None,
    preset: str = "paper-2025",
    overwrite: bool = False,
    **options,
) -> dict:
    """Compress a volume (or NIfTI path) into an ``.arssr`` file; returns the report (rate, PSNR, SSIM, times).

    ``options``: ``target_bpp``, ``target_psnr``, ``time_budget``, ``device``,
    ``progress``, ``search_scale``, and any :class:`CompressionConfig` field.
    """
    output = Path(output)
    refuse_existing([output], overwrite)
    volume = source if isinstance(source, Volume) else load_volume(source)
    fields = set(CompressionConfig.__dataclass_fields__)
    config = make_config(preset, **{k: v for k, v in options.items() if k in fields})
    blob, report = compress_volume(volume, config, decoder, **{k: v for k, v in options.items() if k not in fields})
    container.write_container(output, *container.unpack(blob), overwrite=overwrite)
    return {"path": str(output), **report}


def decompress(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    decoder: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    overwrite: bool = False,
    dtype: str = "input",
) -> Volume:
    """Decode an ``.arssr`` file; also written as NIfTI to ``output`` if given (``dtype`` as ``save_volume``)."""
    if output is not None:
        refuse_existing([output], overwrite)
    meta, payload = container.read_container(source)
    volume = decode(meta, payload, decoder, device, progress)
    if output is not None:
        save_volume(volume, output, overwrite=overwrite, dtype=dtype)
    return volume
