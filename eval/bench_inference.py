"""Whole-volume SR inference: arssr's tiled path against a plain baseline, the official procedure and cubic zoom.

One process, one input, one set of weights:
  (a) ours      ``arssr.inference.super_resolve`` (channels-last encoder, cache-sized decoder chunks,
                separable feature interpolation), fp32 (and bf16 autocast on a GPU);
  (b) reference whole-volume encoding once, then ``model.query`` (grid_sample + fp32 decoder) one output
                slice at a time;
  (c) official  the release's test procedure: the whole model, encoder included, once per output slice,
                fp32; run on a centre crop (``--official-crop``) small enough to finish, with (a) and (b)
                on the same crop for the ratio;
  (d) cubic     ``scipy.ndimage.zoom(order=3, grid_mode=True, mode="reflect")``.
Peak memory: CUDA's allocator peak on a GPU, else the process's peak RSS (VmHWM, reset between runs).

Usage: python eval/bench_inference.py [--input FILE] [--scale 3.2] [--weights FILE] [--json PATH]
Without --weights, a paper-size RDN (6.3 M parameters) with seeded random weights is timed: speed depends
only on the sizes (its last decoder bias is raised so that the final ReLU does not zero the output).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch

from arssr import geometry
from arssr.device import resolve_device
from arssr.inference import example_volume_path, super_resolve
from arssr.intensity import intensity_window, normalize
from arssr.models import ArSSR, load_model
from arssr.volume import load_volume


def build_models(weights: str | None, copies: int) -> tuple[list[ArSSR], str]:
    if weights:
        return [load_model(weights) for _ in range(copies)], str(weights)
    torch.manual_seed(0)
    model = ArSSR()
    with torch.no_grad():
        model.decoder.stage_two[-2].bias.fill_(0.5)
    state = model.state_dict()
    models = []
    for _ in range(copies):
        copy = ArSSR()
        copy.load_state_dict(state)
        models.append(copy.eval())
    return models, "random paper-size RDN (seed 0)"


def decoder_flops(model: ArSSR) -> int:
    return 2 * sum(m.in_features * m.out_features for m in model.decoder.modules() if isinstance(m, torch.nn.Linear))


def slice_coords(out_shape, index: int) -> torch.Tensor:
    """Normalised coordinates of output slice ``index`` along axis 0, ``(1, H*W, 3)``."""
    _, m1, m2 = out_shape
    c0 = torch.full((m1, m2, 1), float(geometry.normalized_centres(out_shape[0])[index]))
    c12 = geometry.grid_coordinates((1, m1, m2))[0, :, :, 1:]
    return torch.cat([c0, c12], dim=-1).view(1, -1, 3)


def reference(lr: np.ndarray, model: ArSSR, out_shape, device) -> np.ndarray:
    """(b): encode once, decode one output slice at a time with grid_sample + the fp32 decoder."""
    out = np.empty(out_shape, np.float32)
    with torch.inference_mode():
        features = model.encode(torch.from_numpy(lr)[None, None].to(device))
        for i in range(out_shape[0]):
            out[i] = model.query(features, slice_coords(out_shape, i).to(device)).view(out_shape[1:]).cpu().numpy()
    return out


def official(lr: np.ndarray, model: ArSSR, out_shape, device) -> np.ndarray:
    """(c): the whole model (encoder included) once per output slice."""
    out = np.empty(out_shape, np.float32)
    lr_tensor = torch.from_numpy(lr)[None, None].to(device)
    with torch.inference_mode():
        for i in range(out_shape[0]):
            out[i] = model(lr_tensor, slice_coords(out_shape, i).to(device)).view(out_shape[1:]).cpu().numpy()
    return out


class Meter:
    """Wall time, encoder time (forward hooks) and peak memory of one run."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def run(self, fn, *models: ArSSR):
        encoder_time = [0.0]
        started = {}

        def before(module, args):
            self._sync()
            started["t"] = time.perf_counter()

        def after(module, args, output):
            self._sync()
            encoder_time[0] += time.perf_counter() - started["t"]

        hooks = [h for m in models for h in (m.encoder.register_forward_pre_hook(before),
                                              m.encoder.register_forward_hook(after))]
        self._reset_peak()
        self._sync()
        start = time.perf_counter()
        result = fn()
        self._sync()
        wall = time.perf_counter() - start
        for hook in hooks:
            hook.remove()
        return result, {"wall_s": wall, "encoder_s": encoder_time[0], "peak_mib": self._peak() / 2**20}

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _reset_peak(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass

    def _peak(self) -> float:
        if self.device.type == "cuda":
            return float(torch.cuda.max_memory_allocated(self.device))
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024
        except OSError:
            pass
        return float("nan")


def machine_gflops(device: torch.device) -> float:
    """fp32 matmul rate of this device (4096^2 GEMM), the yardstick for the decoder's FLOP fraction."""
    a = torch.randn(4096, 4096, device=device)
    b = torch.randn(4096, 4096, device=device)
    with torch.no_grad():
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
    return 3 * 2 * 4096**3 / (time.perf_counter() - start) / 1e9


def centre_crop(data: np.ndarray, edge: int) -> np.ndarray:
    start = [max(0, (n - edge) // 2) for n in data.shape]
    return np.ascontiguousarray(data[tuple(slice(s, s + edge) for s in start)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", default=str(example_volume_path()), help="LR NIfTI (default: the shipped MNI152 sample)")
    parser.add_argument("--scale", type=float, default=3.2)
    parser.add_argument("--weights", help="model file (default: paper-size RDN with random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--official-crop", type=int, default=16, help="LR crop edge for the official procedure")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    volume = load_volume(args.input)
    (ours_model, ref_model, off_model), weights = build_models(args.weights, 3)
    for model in (ours_model, ref_model, off_model):
        model.to(device)
    window = intensity_window(volume.data, ours_model.normalization)
    lr = normalize(volume.data, window)
    span = float(np.ptp(volume.data)) / (window[1] - window[0])  # the input's range in normalised units
    out_shape = geometry.output_shape(lr.shape, (args.scale,) * 3)
    voxels = math.prod(out_shape)
    meter = Meter(device)
    rows = {}

    ours, rows["ours"] = meter.run(lambda: super_resolve(lr, ours_model, out_shape, device=device), ours_model)
    if device.type == "cuda":
        _, rows["ours_bf16"] = meter.run(
            lambda: super_resolve(lr, ours_model, out_shape, device=device, precision="bf16"), ours_model)
    ref, rows["reference"] = meter.run(lambda: reference(lr, ref_model, out_shape, device), ref_model)
    zoom = [m / n for n, m in zip(lr.shape, out_shape)]
    _, rows["cubic"] = meter.run(lambda: ndi.zoom(lr, zoom, order=3, mode="reflect", grid_mode=True))
    max_abs_diff = float(np.abs(ours - ref).max()) / span

    crop = centre_crop(lr, args.official_crop)
    crop_shape = geometry.output_shape(crop.shape, (args.scale,) * 3)
    crop_ours, rows["ours_crop"] = meter.run(lambda: super_resolve(crop, ours_model, crop_shape, device=device), ours_model)
    crop_ref, rows["reference_crop"] = meter.run(lambda: reference(crop, ref_model, crop_shape, device), ref_model)
    crop_off, rows["official_crop"] = meter.run(lambda: official(crop, off_model, crop_shape, device), off_model)
    official_diff = float(np.abs(crop_off - crop_ref).max()) / span
    crop_diff = float(np.abs(crop_ours - crop_ref).max()) / span

    gflops = machine_gflops(device)
    flops = decoder_flops(ours_model)
    for name, row in rows.items():
        n = math.prod(crop_shape) if name.endswith("_crop") else voxels
        decode_s = row["wall_s"] - row["encoder_s"]
        row["queries_per_s"] = n / row["wall_s"]
        if name != "cubic":
            row["decoder_queries_per_s"] = n / decode_s
            row["decoder_flop_fraction"] = n * flops / decode_s / (gflops * 1e9)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"input {args.input} {lr.shape} x{args.scale} -> {out_shape} ({voxels / 1e6:.2f} M voxels); weights: {weights}")
    print(f"device: {device_name}; fp32 matmul {gflops:.0f} GFLOP/s; decoder {flops / 1e6:.3f} MFLOP/query")
    print(f"official procedure on a {crop.shape} crop -> {crop_shape}")
    print(f"{'method':16s} {'wall s':>9s} {'encoder s':>9s} {'Mquery/s':>9s} {'dec Mq/s':>9s} {'dec FLOP%':>9s} {'peak MiB':>9s}")
    for name, row in rows.items():
        dq = row.get("decoder_queries_per_s")
        frac = row.get("decoder_flop_fraction")
        print(f"{name:16s} {row['wall_s']:9.2f} {row['encoder_s']:9.2f} {row['queries_per_s'] / 1e6:9.3f} "
              f"{(dq or 0) / 1e6:9.3f} {100 * (frac or 0):9.1f} {row['peak_mib']:9.0f}")
    ratios = {
        "reference_over_ours": rows["reference"]["wall_s"] / rows["ours"]["wall_s"],
        "official_over_ours_crop": rows["official_crop"]["wall_s"] / rows["ours_crop"]["wall_s"],
        "cubic_over_ours": rows["cubic"]["wall_s"] / rows["ours"]["wall_s"],
    }
    print(f"speed-up over (b) reference: {ratios['reference_over_ours']:.2f}x; over (c) official on the crop: "
          f"{ratios['official_over_ours_crop']:.1f}x")
    print(f"max |ours - reference| = {max_abs_diff:.2e} of the intensity range (crop: {crop_diff:.2e}); "
          f"max |official - reference| on the crop = {official_diff:.2e}")
    if args.json:
        record = {
            "device": device_name, "input": args.input, "input_shape": list(lr.shape), "scale": args.scale,
            "output_shape": list(out_shape), "weights": weights, "torch": torch.__version__,
            "ours_s": rows["ours"]["wall_s"], "reference_s": rows["reference"]["wall_s"],
            "official_s": rows["official_crop"]["wall_s"], "official_case": {
                "input_shape": list(crop.shape), "output_shape": list(crop_shape),
                "ours_s": rows["ours_crop"]["wall_s"], "reference_s": rows["reference_crop"]["wall_s"]},
            "cubic_s": rows["cubic"]["wall_s"], "max_abs_diff": max_abs_diff,
            "official_max_abs_diff": official_diff, "machine_gflops": gflops, "decoder_flops_per_query": flops,
            "ratios": ratios, "runs": rows,
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
