"""Self-adaptation of the plane prior at several learning rates (``arssr.adapt.adapt_prior_to``), side by side:
thick axial boxcar slices simulated from a ground truth, ``SECONDS`` of adaptation at each rate, then the
default output (smooth correction, gain 1); in-mask PSNR, slice steps and the adaptation's own report. The
rule that uses it: eval/results/plane_prior/README.md, last section.

Usage: python eval/prior_adapt_rate.py [--volume inia19-t1-brain.nii.gz] [--thickness 3] [--rates 1e-4,3e-4,1e-3]
       [--seconds 180] [--templates $TEMPLATES] [--threads 1] [--json eval/results/plane_prior/adapt_rate.json]
With an existing ``--json`` the rows of other volumes are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

from arssr.adapt import AdaptOptions, adapt_prior_to
from arssr.inference import upsample_request
from arssr.metrics import brain_mask, psnr, slice_steps
from arssr.models import default_model_path, load_model
from arssr.models.planes import default_prior_path, shipped_prior
from arssr.volume import load_volume

sys.path.insert(0, str(Path(__file__).parent))
from plane_prior import thick_request  # noqa: E402

AXIS = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default="inia19-t1-brain.nii.gz")
    parser.add_argument("--thickness", type=float, default=3.0, help="slice thickness = spacing, mm")
    parser.add_argument("--rates", default="1e-4,3e-4,1e-3")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--templates", default=os.environ.get("TEMPLATES", str(
        Path.home() / ".cache/arssr/mricron/usr/share/mricron/templates")), help="mricron-data templates folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="eval/results/plane_prior/adapt_rate.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    truth = load_volume(Path(args.templates) / args.volume)
    mask = brain_mask(truth.data)
    request = thick_request(truth, args.thickness, AXIS, load_model(None))
    name = args.volume.split(".")[0]
    rows = []
    print(f"{'rate':>8} {'psnr_mask':>9} {'steps':>6} {'held-out before/after':>22} {'steps run':>9}")
    for rate in (float(r) for r in args.rates.split(",")):
        tuned, report = adapt_prior_to(request, shipped_prior(), AdaptOptions(seconds=args.seconds), learning_rate=rate)
        data = upsample_request(request, device="cpu", plane_prior=tuned).data
        row = {"volume": name, "slice_thickness": args.thickness, "axis": AXIS, "learning_rate": rate,
               "psnr_mask": round(psnr(data, truth.data, mask=mask), 3), "steps": round(slice_steps(data, AXIS, mask), 3),
               "held_out_before": round(report.before, 3), "held_out_after": round(report.after, 3),
               "kept": report.kept, "adapt_steps": report.steps}
        print(f"{rate:>8g} {row['psnr_mask']:>9.3f} {row['steps']:>6.3f} "
              f"{report.before:>10.3f} / {report.after:<9.3f} {report.steps:>9d}", flush=True)
        rows.append(row)
    out = Path(args.json)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report.update({"model": default_model_path().name, "prior": default_prior_path().name, "seconds": args.seconds,
                   "threads": args.threads, "torch": torch.__version__, "cpu": platform.processor() or platform.machine()})
    report["rows"] = [r for r in report.get("rows", []) if r["volume"] != name] + rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
