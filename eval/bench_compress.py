"""Compression benchmark: arssr's SIREN + SR files against a single SIREN and standard codecs, at matched bpp.

One run, same volumes, one PSNR definition (data range of the original, also
inside its foreground mask ``arssr.metrics.brain_mask``) for every method:
  arssr          DS by --scale (k-space), SIREN on the LR volume sized by the byte budget, int8, SR model;
  arssr-finetuned  the same with the end-to-end phase (``--finetune-decoder``): the SR model's biases
                 trained with the SIREN for the last 30 % of the time, their int8 changes in the file (unless
                 the SIREN from before that phase decodes closer: then that one is written);
  single-siren   the same file format at scale 1: a SIREN on the HR grid at the same byte budget (as in the paper-2025 preset's paper);
  arssr-sperr    DS by --scale (k-space), the LR coded by SPERR at the largest bpp whose .arssr file fits the
                 budget, SR model (``--lr-codec sperr``);
  arssr-auto     each LR codec (SIREN, SPERR) at DS 1, 1/2, 1/3, 1/4 within the budget, the one that decodes
                 closest kept (``--auto``; its encode time counts every candidate's encode and decode);
  jpeg2000       slice by slice (axis 2), one quality level for all slices, searched to fit the budget;
  jpegxl         slice by slice, one distance for all slices, searched to fit the budget;
  sperr          3D wavelet codec in its bpp mode, at the largest bpp whose stream fits the budget;
  zstd           lossless (level 19) of the raw array at its native dtype: the raw size.
Rates count real bytes: the .arssr file, the sum of slice codestreams, the SPERR stream.

Volumes: ``colin27-patch64`` (a 64^3 patch of Colin27 ``ch2bet`` chosen by the paper-2025 preset's paper's rule: on a grid of
non-overlapping 64^3 patches, those with at least 70 % non-zero voxels qualify; the one with the most
non-zero voxels, first in raster order, is taken), ``mni152-patch64`` (the same rule on nilearn's MNI152
T1), ``colin27`` (the whole brain, ``ch2bet``) and ``colin27-head`` (the whole head, skull included, ``ch2``), or
any NIfTI file's path (its records name it by the file's name).

Usage: python eval/bench_compress.py [--volumes colin27-patch64,colin27] [--bpp 0.775] [--whole-bpp 0.02,0.05]
       [--methods sperr,arssr-sperr] [--scale 1.5,2,2.5] [--json PATH]
Methods with a downsampling factor (arssr, arssr-finetuned, arssr-sperr) run at each --scale.
The JSON is rewritten after every row, so an interrupted run keeps what it measured; eval/plot_compress.py
draws PSNR against bpp from it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from arssr.compress import compress_volume, make_config
from arssr.metrics import brain_mask, psnr, ssim
from arssr.volume import Volume, load_volume

TEMPLATES = Path.home() / ".cache/arssr/mricron/usr/share/mricron/templates"
COLIN = TEMPLATES / "ch2bet.nii.gz"
COLIN_HEAD = TEMPLATES / "ch2.nii.gz"
PATCH = 64
MIN_NONZERO = 0.7


def select_patch(volume: Volume) -> Volume:
    """The patch rule of the module docstring; the affine is shifted to the patch."""
    best, corner = -1.0, None
    n0, n1, n2 = (n - PATCH + 1 for n in volume.shape)
    for i in range(0, n0, PATCH):
        for j in range(0, n1, PATCH):
            for k in range(0, n2, PATCH):
                share = np.count_nonzero(volume.data[i:i + PATCH, j:j + PATCH, k:k + PATCH]) / PATCH**3
                if share >= MIN_NONZERO and share > best:
                    best, corner = share, (i, j, k)
    if corner is None:
        raise SystemExit("no 64^3 patch with 70 % non-zero voxels")
    i, j, k = corner
    shift = np.eye(4)
    shift[:3, 3] = corner
    data = np.ascontiguousarray(volume.data[i:i + PATCH, j:j + PATCH, k:k + PATCH])
    return Volume(data, volume.affine @ shift, volume.header)


def load(name: str) -> Volume:
    """A named volume (module docstring) or a NIfTI file's path."""
    if Path(name).is_file():
        return load_volume(name)
    if name == "colin27":
        return load_volume(COLIN)
    if name == "colin27-head":
        return load_volume(COLIN_HEAD)
    if name == "colin27-patch64":
        return select_patch(load_volume(COLIN))
    if name == "mni152-patch64":
        from arssr.training.synthetic import mni_template_path

        return select_patch(load_volume(mni_template_path("t1")))
    raise SystemExit(f"unknown volume {name!r}")


def native(volume: Volume) -> np.ndarray:
    return volume.data.astype(volume.input_dtype)


def fit_level(encode, low: float, high: float, budget: int, larger_is_bigger: bool, steps: int = 14):
    """Bisect a codec's quality parameter for the largest stream within ``budget`` bytes.

    A codec that cannot get down to the budget gives its smallest stream (the row is then marked over budget).
    """
    best, smallest = None, None
    for _ in range(steps):
        mid = (low + high) / 2
        streams = encode(mid)
        size = sum(len(s) for s in streams)
        fits = size <= budget
        if fits:
            best = (mid, streams)
        if smallest is None or size < smallest[0]:
            smallest = (size, (mid, streams))
        if fits == larger_is_bigger:
            low = mid
        else:
            high = mid
    return best if best is not None else smallest[1]


def slice_codec(name: str, volume: Volume, budget: int):
    """JPEG 2000 or JPEG XL on the slices along axis 2; returns (bytes, decoded, encode_s, decode_s)."""
    import imagecodecs as ic

    data = native(volume)
    slices = [np.ascontiguousarray(data[:, :, z]) for z in range(data.shape[2])]
    if name == "jpeg2000":
        start = time.perf_counter()
        _, streams = fit_level(lambda q: [ic.jpeg2k_encode(s, level=q) for s in slices], 1, 120, budget, True)
        decode = ic.jpeg2k_decode
    else:
        start = time.perf_counter()
        _, streams = fit_level(lambda d: [ic.jpegxl_encode(s, distance=d, effort=7) for s in slices], 0.01, 25, budget,
                               False)
        decode = ic.jpegxl_decode
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = np.stack([decode(s) for s in streams], axis=2).astype(np.float32)
    return sum(len(s) for s in streams), decoded, encode_s, time.perf_counter() - start


def sperr(volume: Volume, budget: int):
    """SPERR alone at the largest bpp whose stream fits ``budget`` bytes (its bpp mode overshoots by its header)."""
    import imagecodecs as ic

    data = np.ascontiguousarray(volume.data, dtype=np.float64)  # SPERR reads the buffer in C order
    start = time.perf_counter()
    _, (stream,) = fit_level(lambda bpp: [ic.sperr_encode(data, bpp, mode="bpp")], 0.0, 8 * budget / data.size,
                             budget, True)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = ic.sperr_decode(stream)
    decode_s = time.perf_counter() - start
    return len(stream), decoded.astype(np.float32), encode_s, decode_s


def zstd_lossless(volume: Volume):
    import zstandard

    raw = native(volume).tobytes()
    start = time.perf_counter()
    stream = zstandard.ZstdCompressor(level=19).compress(raw)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = np.frombuffer(zstandard.ZstdDecompressor().decompress(stream), native(volume).dtype)
    return len(stream), decoded.reshape(volume.shape).astype(np.float32), encode_s, time.perf_counter() - start


def record(method: str, name: str, volume: Volume, size: int, decoded: np.ndarray, encode_s: float, decode_s: float,
           **extra) -> dict:
    mask = brain_mask(volume.data)
    return {
        "method": method, "volume": name, "bytes": size, "bpp": 8 * size / volume.data.size,
        "psnr": psnr(decoded, volume.data), "psnr_mask": psnr(decoded, volume.data, mask),
        "ssim": ssim(decoded, volume.data), "encode_s": encode_s, "decode_s": decode_s, **extra,
    }


def ours(method: str, name: str, volume: Volume, args, scale: float, finetune: str = "none",
         lr_codec: str = "siren", auto: bool = False) -> dict:
    from arssr.compress.codec import decode
    from arssr.compress.container import unpack

    config = make_config("paper-2025", scale=scale, steps=args.steps, batch=args.batch, finetune=finetune,
                         lr_codec=lr_codec)
    blob, report = compress_volume(volume, config, args.decoder, target_bpp=args.bpp, time_budget=args.time_budget,
                                   device=args.device, auto=auto)
    decoded = decode(*unpack(blob), args.decoder, args.device).data
    chosen = report["config"]
    extra = {"width": chosen["width"], "siren_params": report["siren_params"]} if chosen["lr_codec"] == "siren" else {}
    for key in ("finetune_kept", "auto"):
        if key in report:
            extra[key] = report[key]
    return record(method, name, volume, len(blob), decoded, report["encode_s"], report["decode_s"],
                  scale=chosen["scale"], lr_codec=chosen["lr_codec"], **extra)


#: arssr's files: options of :func:`ours` (the scale is --scale unless given).
OURS = {
    "arssr": {},
    "arssr-finetuned": {"finetune": "bias"},
    "single-siren": {"scale": 1.0},
    "arssr-sperr": {"lr_codec": "sperr"},
    "arssr-auto": {"auto": True},
}
METHODS = (*OURS, "jpeg2000", "jpegxl", "sperr", "zstd-lossless")


def run_method(method: str, name: str, volume: Volume, run, budget: int) -> dict:
    """The record of one method on one volume (``run``: the arguments, with the volume's bpp)."""
    if method in OURS:
        return ours(method, name, volume, run, **{"scale": run.scale, **OURS[method]})
    if method in ("jpeg2000", "jpegxl"):
        return record(method, name, volume, *slice_codec(method, volume, budget))
    if method == "sperr":
        return record(method, name, volume, *sperr(volume, budget))
    if method == "zstd-lossless":
        return record(method, name, volume, *zstd_lossless(volume))
    raise SystemExit(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", default="colin27-patch64,mni152-patch64,colin27")
    parser.add_argument("--bpp", default="0.775", help="rates of the 64^3 patches, comma-separated")
    parser.add_argument("--whole-bpp", default="0.05", help="rates of the whole volumes, comma-separated")
    parser.add_argument("--scale", default="2", help="arssr's downsampling factors, comma-separated")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--time-budget", type=float, default=150.0, help="seconds of SIREN fitting per file")
    parser.add_argument("--batch", type=int, default=1 << 15, help="coordinates per SIREN step")
    parser.add_argument("--decoder", help="SR model file (default: the shipped model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--methods", default=",".join(METHODS), help="methods to run, comma-separated")
    parser.add_argument("--json", help="write the records here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from arssr.device import resolve_device

    args.device = resolve_device(args.device)
    env = {"torch": torch.__version__, "device": str(args.device), "threads": torch.get_num_threads()}
    records = []
    scales = [float(scale) for scale in args.scale.split(",")]
    for volume_name in args.volumes.split(","):
        volume = load(volume_name)
        name = Path(volume_name).name.removesuffix(".gz").removesuffix(".nii") if Path(volume_name).is_file() else volume_name
        rates = args.bpp if "patch" in name else args.whole_bpp
        for bpp in (float(rate) for rate in rates.split(",")):
            budget = math.floor(bpp * volume.data.size / 8)
            runs = [(method, scale) for method in args.methods.split(",")
                    for scale in (scales if method in OURS and "scale" not in OURS[method] and method != "arssr-auto"
                                  else scales[:1])]
            for method, scale in runs:
                run = argparse.Namespace(**{**vars(args), "bpp": bpp, "scale": scale})
                row = run_method(method, name, volume, run, budget)
                row["target_bpp"] = bpp
                row["over_budget"] = row["method"] != "zstd-lossless" and row["bytes"] > budget
                print(f"{row['volume']:16s} {row['method']:16s} {row.get('lr_codec', ''):5s} "
                      f"{row.get('scale', float('nan')):3g} {row['bytes']:9d} B {row['bpp']:7.3f} bpp  "
                      f"PSNR {row['psnr']:6.2f} (mask {row['psnr_mask']:6.2f})  SSIM {row['ssim']:.4f}  "
                      f"enc {row['encode_s']:7.1f} s  dec {row['decode_s']:6.1f} s"
                      + ("  (over budget)" if row["over_budget"] else "")
                      + ("  (end-to-end changes dropped)" if row.get("finetune_kept") is False else ""), flush=True)
                records.append({**row, **env})
                if args.json:
                    Path(args.json).write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
