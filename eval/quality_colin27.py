"""Held-out quality on Colin27 (``ch2bet``): the model against cubic and zero-filled k-space interpolation.

LR inputs are simulated from the ground truth by each degradation (default:
k-space truncation, an MR acquisition at lower resolution, and the paper's
cubic protocol) at each scale, then upsampled back to the ground truth's grid.
PSNR uses the ground truth's data range, over the whole volume and inside the
brain (``ch2bet > 0``); SSIM is 3D.

Get the data with ``../shared/get-eval-data.sh`` or ``apt-get install mricron-data``.
Usage: python eval/quality_colin27.py [--weights FILE] [--scales 2,3.2,4] [--out eval/results/quality_colin27]
"""

import argparse
import json
from pathlib import Path


from arssr.evaluation import BASELINES, baseline, evaluate, markdown_table, model_method
from arssr.models import load_model
from arssr.volume import load_volume

DEFAULT_GT = Path.home() / ".cache/arssr/mricron/usr/share/mricron/templates/ch2bet.nii.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gt", default=str(DEFAULT_GT), help="ground truth (default: Colin27 ch2bet)")
    parser.add_argument("--weights", help="model file (default: the shipped model); 'none' scores baselines only")
    parser.add_argument("--scales", default="2,3.2,4")
    parser.add_argument("--degradations", default="kspace,cubic")
    parser.add_argument("--baselines", default="cubic,kspace", help=f"any of {','.join(BASELINES)}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="eval/results/quality_colin27", help="writes OUT.json and OUT.md")
    args = parser.parse_args()

    gt = load_volume(args.gt).data
    methods = {name: baseline(name) for name in args.baselines.split(",") if name}
    if args.weights != "none":
        methods["arssr"] = model_method(load_model(args.weights), device=args.device)
    records = evaluate(
        gt, methods, [float(s) for s in args.scales.split(",")], args.degradations.split(","),
        subject=Path(args.gt).name.split(".")[0], mask=gt > 0, log=print,
    )
    table = "\n".join(markdown_table(records, metric) for metric in ("psnr", "psnr_mask", "ssim"))
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps([r.as_dict() for r in records], indent=2) + "\n")
    out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
