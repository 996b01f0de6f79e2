"""Thick slices: the orthogonal and the smooth slice correction side by side (slice steps and PSNR).

1. Slice steps (:func:`arssr.metrics.slice_steps`) on the three real clinical scans of ``--data``, never
   used for training or selection: for each scan, a slab of ``2 x receptive radius + 1`` voxels around the
   middle of each in-plane axis (the coronal and the sagittal planes cut across the slices), upsampled along
   the slices to about 1 mm with the default settings (the detail gain fitted on the slab) and each
   correction, and by cubic interpolation; the head mask is Otsu's on the cubic slab.
2. PSNR on simulated boxcar slices along axis 2, default settings (``+dc:slice+gain``) and each correction:
   the macaque ``inia19-t1-brain`` at 2 and 3 mm (the selection volume) and Colin27 ``ch2bet`` at 4 and 6 mm
   (held out, reported only), with the slice steps of each output inside the brain mask.

The rule that chose the default correction is in eval/results/slice_correction/README.md.

Usage: python eval/slice_correction.py [--data ../shared/data] [--templates $TEMPLATES] [--threads 1]
                                       [--json eval/results/slice_correction/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from arssr.evaluation.methods import model_method
from arssr.evaluation.scoring import Subject, evaluate
from arssr.inference import upsample
from arssr.metrics import brain_mask, slice_steps
from arssr.models import default_model_path, load_model
from arssr.protocol import SLICE_CORRECTIONS
from arssr.simulate import ThickSlices
from arssr.volume import load_volume

sys.path.insert(0, str(Path(__file__).parent))
from clinical_steps import SCANS, SLICE_AXIS, cubic  # noqa: E402
from figure_clinical import slab  # noqa: E402

#: ``(name, template file, slice thicknesses in mm)`` of the simulated cases.
SIMULATED = (("inia19", "inia19-t1-brain.nii.gz", (2.0, 3.0)), ("ch2bet", "ch2bet.nii.gz", (4.0, 6.0)))


def clinical_steps(data: Path, model) -> dict:
    results = {}
    for file, thickness in SCANS:
        volume = load_volume(data / file)
        scale = (1.0, 1.0, volume.spacing[SLICE_AXIS])
        for plane_axis in (1, 0):
            part = slab(volume, plane_axis, model.receptive_radius)
            outputs = {correction: upsample(part, model, scale=scale, device="cpu", slice_thickness=thickness,
                                            slice_correction=correction).data for correction in SLICE_CORRECTIONS}
            interpolated = cubic(part, outputs["smooth"].shape)
            mask = brain_mask(interpolated)
            row = {"cubic": slice_steps(interpolated, SLICE_AXIS, mask)}
            row.update({c: slice_steps(out, SLICE_AXIS, mask) for c, out in outputs.items()})
            results[f"{file} across axis {plane_axis}"] = {k: round(v, 4) for k, v in row.items()}
            print(file, plane_axis, results[f"{file} across axis {plane_axis}"], flush=True)
    means = {k: round(float(np.mean([r[k] for r in results.values()])), 4) for k in next(iter(results.values()))}
    return {"slabs": results, "mean": means}


def simulated(templates: Path, model) -> dict:
    results = {}
    for name, file, thicknesses in SIMULATED:
        subject = Subject.from_volumes(name, load_volume(templates / file))
        methods = {c: model_method(model, "cpu", consistency="slice", gain="auto", slice_correction=c)
                   for c in SLICE_CORRECTIONS}
        records = evaluate([subject], methods, slices=[ThickSlices(t, SLICE_AXIS) for t in thicknesses])
        results[name] = [{"correction": r.method, "slice_thickness": r.slice_thickness,
                          "psnr": round(r.psnr, 4), "psnr_mask": round(r.psnr_mask, 4), "ssim": round(r.ssim, 4),
                          "steps": round(r.steps, 4)} for r in records]
        for record in results[name]:
            print(name, record, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder of the clinical scans")
    parser.add_argument("--templates", default=os.environ.get("TEMPLATES", str(
        Path.home() / ".cache/arssr/mricron/usr/share/mricron/templates")), help="mricron-data templates folder")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--json", default="eval/results/slice_correction/results.json", help="where to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(None)
    report = {"model": default_model_path().name, "threads": args.threads, "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine()}
    report["clinical"] = clinical_steps(Path(args.data), model)
    report["simulated"] = simulated(Path(args.templates), model)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(args.json)


if __name__ == "__main__":
    main()
