"""The staircase of real clinical thick-slice scans upsampled to about 1 mm: slice steps of each method.

Each scan of ``--data`` (never used for training or selection) is upsampled along its slice axis only
(array axis 2) to about 1 mm by nearest neighbour, cubic interpolation and ``arssr upsample``'s defaults
with the scan's slice thickness (the model, k-space consistency in-plane, the slice model along the
slices, the fitted detail gain) with each ``--slice-correction``, and by cubic and the smooth correction
after ``--equalize-slices`` (the even and odd slices brought to one brightness, :mod:`arssr.slice_intensity`). :func:`arssr.metrics.slice_steps` is measured on
the whole output inside one head mask (Otsu on the cubic output) shared by the methods: 1 is a change
spread evenly over the planes, about ``K`` a change made in steps every ``K`` planes. Prints a table and
writes JSON.

Usage: python eval/clinical_steps.py [--data ../shared/data] [--threads 1]
                                     [--json eval/results/clinical_steps/steps.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from arssr.degrade import resample
from arssr.inference import upsample
from arssr.metrics import brain_mask, slice_steps
from arssr.models import default_model_path, load_model
from arssr.slice_intensity import equalize_slices
from arssr.volume import load_volume

#: ``(file, slice thickness in mm)``: two axial T1 post-contrast scans, an axial PD with 2 mm gaps.
SCANS = (
    ("clinical_T1post_axial_6p5mm_case1.nii.gz", 6.5),
    ("clinical_T1post_axial_6p5mm_case2.nii.gz", 6.5),
    ("clinical_PD_axial_5mm_gap2mm.nii.gz", 5.0),
)
SLICE_AXIS = 2
TARGET_MM = 1.0


def cubic(volume, shape) -> np.ndarray:
    lr = torch.from_numpy(volume.data.astype(np.float64))
    return np.clip(resample(lr, shape, "cubic").numpy(), volume.data.min(), volume.data.max())


def scan_steps(path: Path, thickness: float, model) -> dict:
    volume = load_volume(path)
    equalized, alternation = equalize_slices(volume, SLICE_AXIS)
    scale = (1.0, 1.0, volume.spacing[SLICE_AXIS] / TARGET_MM)
    start = time.perf_counter()
    sr = upsample(volume, model, scale=scale, device="cpu", slice_thickness=thickness, slice_correction="orthogonal")
    seconds = time.perf_counter() - start
    outputs = {
        "input (nearest)": resample(torch.from_numpy(volume.data.astype(np.float64)), sr.shape, "nearest").numpy(),
        "cubic": cubic(volume, sr.shape),
        "arssr, orthogonal": sr.data,
        "arssr, smooth": upsample(volume, model, scale=scale, device="cpu", slice_thickness=thickness,
                                  slice_correction="smooth").data,
        "cubic, equalized": cubic(equalized, sr.shape),
        "arssr, smooth, equalized": upsample(equalized, model, scale=scale, device="cpu", slice_thickness=thickness,
                                             slice_correction="smooth").data,
    }
    mask = brain_mask(outputs["cubic"])
    return {"slice_thickness_mm": thickness, "scale": list(scale), "output_shape": list(sr.shape),
            "arssr_seconds": round(seconds, 1), "even_over_odd": round(alternation.ratio, 4),
            "even_over_odd_spread": round(alternation.spread, 4), "alternates": alternation.alternates,
            "steps": {name: round(slice_steps(data, SLICE_AXIS, mask), 4) for name, data in outputs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder of the clinical scans")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--json", default="eval/results/clinical_steps/steps.json", help="where to write results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(None)
    results = {file: scan_steps(Path(args.data) / file, thickness, model) for file, thickness in SCANS}
    methods = list(next(iter(results.values()))["steps"])
    print("| scan | " + " | ".join(methods) + " |\n|---" * 1 + "|---" * len(methods) + "|")
    for file, record in results.items():
        print(f"| {file} | " + " | ".join(f"{record['steps'][m]:.2f}" for m in methods) + " |")
    report = {"model": default_model_path().name, "threads": args.threads, "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "scans": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(args.json)


if __name__ == "__main__":
    main()
