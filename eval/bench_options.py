"""Cost of each `arssr upsample` option on one whole head: wall seconds and peak memory, side by side.

Each case runs in its own process (peak RSS is per process) on the same LR input: a ground truth
degraded by k-space truncation at ``--scale``. Cases: the network alone (``--consistency none``), the
default k-space consistency, cubic consistency, and self-adaptation (``--adapt SECONDS``) before the
default. Then thick slices: the ground truth's 5 mm boxcar slices along axis 2, upsampled along them back
to its grid by the network alone, by the default with the 3D model (slice projection, detail gain fitted
on two in-plane views) and with ``--plane-prior`` (when given). Times are given also as ratios to the
network alone of the same input.

Usage: python eval/bench_options.py [--gt ch2.nii.gz] [--scale 2] [--adapt 60] [--threads 2]
                                    [--plane-prior FILE] [--json eval/results/bench_options_cpu.json]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

TEMPLATES = Path.home() / ".cache/arssr/mricron/usr/share/mricron/templates"
CASES = {
    "network alone": {"consistency": "none"},
    "k-space consistency (default)": {"consistency": "kspace"},
    "cubic consistency": {"consistency": "cubic"},
    "self-adaptation + k-space consistency": {"consistency": "kspace", "adapt": True},
    "thick slices: network alone": {"consistency": "none", "thick": True},
    "thick slices: 3D model (slice projection, fitted gain)": {"consistency": "kspace", "thick": True},
    "thick slices: plane prior": {"consistency": "kspace", "thick": True, "prior": True},
}
#: Thick-slice cases: contiguous boxcar slices this thick (mm) along array axis 2 of the ground truth.
THICK_MM = 5.0


def one_case(gt: str, scale: float, consistency: str, adapt: float | None, threads: int, thick: bool = False,
             prior: str | None = None) -> dict:
    """Run in a child process: simulate the LR, upsample it, report seconds and peak RSS."""
    import numpy as np
    import torch

    from arssr.adapt import AdaptOptions, adapt_to
    from arssr.simulate import simulate_lr
    from arssr.inference import upsample
    from arssr.metrics import brain_mask, psnr
    from arssr.volume import Volume, load_volume

    torch.set_num_threads(threads)
    truth = load_volume(gt)
    truth = Volume(truth.data.astype(np.float32), truth.affine)
    from arssr.simulate import ThickSlices, simulate_thick_slices

    lr = simulate_thick_slices(truth, ThickSlices(THICK_MM, 2)) if thick else simulate_lr(truth, scale, "kspace")
    factors = tuple(n / m for n, m in zip(truth.shape, lr.shape))
    slices = {"slice_thickness": THICK_MM, "plane_prior": prior} if thick and consistency != "none" else {}
    start = time.perf_counter()
    model, report = None, None
    if adapt:
        model, report = adapt_to(lr, None, factors, options=AdaptOptions(seconds=adapt), device="cpu")
    out = upsample(lr, model, scale=factors, device="cpu", consistency=consistency, **slices).data
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "psnr": round(psnr(out, truth.data), 3),
        "psnr_mask": round(psnr(out, truth.data, brain_mask(truth.data)), 3),
        "adapt": report.as_dict() if report else None,
        "lr_shape": list(lr.shape), "output_shape": list(out.shape),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", default=str(TEMPLATES / "ch2.nii.gz"))
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--adapt", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plane-prior", help="the plane prior of the thick-slice case (skipped without it)")
    parser.add_argument("--json", default="eval/results/bench_options_cpu.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        case = CASES[args.one]
        result = one_case(args.gt, args.scale, case["consistency"], args.adapt if case.get("adapt") else None,
                          args.threads, case.get("thick", False), args.plane_prior if case.get("prior") else None)
        print(json.dumps(result))
        return
    rows = {}
    for name, case in CASES.items():
        if case.get("prior") and not args.plane_prior:
            continue
        command = [sys.executable, __file__, "--one", name, "--gt", args.gt, "--scale", str(args.scale),
                   "--adapt", str(args.adapt), "--threads", str(args.threads),
                   *(["--plane-prior", args.plane_prior] if args.plane_prior else [])]
        rows[name] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    print(f"{Path(args.gt).name}: k-space LR x{args.scale:g} {rows['network alone']['lr_shape']}, and "
          f"{THICK_MM:g} mm slices {rows['thick slices: network alone']['lr_shape']}, -> "
          f"{rows['network alone']['output_shape']}, {args.threads} threads")
    print("| option | wall s | x network alone | peak RSS MiB | PSNR dB whole / mask |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        base = rows["thick slices: network alone" if CASES[name].get("thick") else "network alone"]["seconds"]
        row["ratio"] = round(row["seconds"] / base, 3)
        print(f"| {name} | {row['seconds']:.1f} | {row['ratio']:.2f} | {row['peak_rss_mib']:.0f} | "
              f"{row['psnr']:.2f} / {row['psnr_mask']:.2f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"gt": args.gt, "scale": args.scale, "threads": args.threads,
                                           "thick_mm": THICK_MM, "plane_prior": args.plane_prior,
                                           "cases": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
