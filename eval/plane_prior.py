"""The through-plane prior against the 3D model on thick slices: PSNR on simulated slices, slice steps on
real clinical scans, side by side in one run.

1. Selection (eval/results/plane_prior/README.md): the macaque ``inia19-t1-brain`` with boxcar slices of
   2 and 3 mm along axis 2 and of 3 mm along axis 1.
2. Reported only: Colin27 ``ch2bet`` and ``ch2`` with boxcar slices of 4 and 6 mm along axis 2.
3. Reported only: :func:`arssr.metrics.slice_steps` on the three clinical scans upsampled to about 1 mm
   along their slices (whole scan, one head mask from the cubic output, as eval/clinical_steps.py).
4. ``steps``, reported only: where the slice steps come from, on the macaque with axial boxcar slices of 3 and
   5 mm and on Colin27's whole head ``ch2`` with 4 and 6 mm: the steps and in-mask PSNR of the truth, cubic,
   the prior's own estimate and that estimate after the default (smooth) correction.

Methods: cubic, the 3D default (``arssr+dc:slice+gain``: smooth correction, fitted detail gain), the
prior (smooth correction, gain 1), each with the default settings of ``arssr upsample`` otherwise; on
Colin27 ``ch2bet`` at 6 mm also the prior after ``--adapt 180`` (self-adaptation on the input's own
in-plane axes).

The prior restores ``--prior-mirrors`` mirrored copies of each volume (``arssr upsample --prior-mirrors``; the
default's unless given), with the detail gains of ``--prior-gains`` (``auto``: the default's); the prior method
runs once for each mirrors with the gain ``auto`` and once for each other gain with the first mirrors, named
``prior`` with the defaults and ``prior:mirrors=N``, ``prior:gain=G`` or ``prior:mirrors=N:gain=G`` otherwise;
``--adapt`` uses the first mirrors (``prior+adapt:180``, or ``prior:mirrors=N+adapt:180``), and so do the
clinical and steps parts, with the default gain. The report records the mirrors and gains asked for.

Usage: python eval/plane_prior.py --prior PRIOR.safetensors [--parts selection,reported,clinical,steps]
       [--methods cubic,arssr,prior] [--prior-mirrors 4] [--prior-gains auto] [--templates $TEMPLATES]
       [--data ../shared/data] [--threads 1] [--json eval/results/plane_prior/results.json]

With ``--methods`` a subset runs, and its rows replace those of the same method and case in an existing
``--json`` (the others are kept), so the methods that do not depend on the prior can run first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from arssr.evaluation.methods import baseline, model_method
from arssr.evaluation.scoring import Subject, evaluate
from arssr.inference import prior_estimate, upsample, upsample_request
from arssr.metrics import brain_mask, psnr, slice_steps
from arssr.models import default_model_path, load_model
from arssr.models.planes import load_prior
from arssr.protocol import DEFAULT_PRIOR_MIRRORS, PRIOR_MIRRORS
from arssr.request import prepare
from arssr.simulate import ThickSlices, simulate_thick_slices
from arssr.volume import load_volume

sys.path.insert(0, str(Path(__file__).parent))
from clinical_steps import SCANS, SLICE_AXIS, TARGET_MM, cubic  # noqa: E402

#: ``(part, template file, [(thickness mm, axis)])``.
CASES = (
    ("selection", "inia19-t1-brain.nii.gz", ((2.0, 2), (3.0, 2), (3.0, 1))),
    ("reported", "ch2bet.nii.gz", ((4.0, 2), (6.0, 2))),
    ("reported", "ch2.nii.gz", ((4.0, 2), (6.0, 2))),
)
#: ``(template file, thicknesses mm, axis)`` of the ``steps`` part.
STEP_CASES = (("inia19-t1-brain.nii.gz", (3.0, 5.0), 2), ("ch2.nii.gz", (4.0, 6.0), 2))
#: Self-adaptation of the prior (``--adapt``), on these ``(volume, thickness)`` cases only.
ADAPT_SECONDS = 180.0
ADAPT_CASES = (("ch2bet", 6.0),)


def simulated(templates: Path, part: str, methods: dict, adapted: dict) -> list[dict]:
    if not methods and not adapted:
        return []
    rows = []
    for _, file, cases in (c for c in CASES if c[0] == part):
        subject = Subject.from_volumes(file.split(".")[0], load_volume(templates / file))
        records = evaluate([subject], methods, slices=[ThickSlices(t, axis) for t, axis in cases]) if methods else []
        extra = [ThickSlices(t, axis) for t, axis in cases if (subject.name, t) in ADAPT_CASES]
        records += evaluate([subject], adapted, slices=extra) if extra else []
        for record in records:
            row = {"volume": subject.name, "method": record.method, "slice_thickness": record.slice_thickness,
                   "axis": record.slice_axis,
                   "psnr": round(record.psnr, 3), "psnr_mask": round(record.psnr_mask, 3),
                   "ssim": round(record.ssim, 4), "steps": round(record.steps, 3),
                   "seconds": round(record.seconds, 1)}
            print(row, flush=True)
            rows.append(row)
    return rows


def clinical(data: Path, model, prior, mirrors: int) -> list[dict]:
    rows = []
    for file, thickness in SCANS:
        volume = load_volume(data / file)
        scale = (1.0, 1.0, volume.spacing[SLICE_AXIS] / TARGET_MM)
        outputs = {}
        for name, used in (("arssr", None), ("prior", prior)):  # the 3D model, the prior
            start = time.perf_counter()
            outputs[name] = upsample(volume, model, scale=scale, device="cpu", slice_thickness=thickness,
                                     plane_prior=used, prior_mirrors=mirrors).data
            print(file, name, f"{time.perf_counter() - start:.1f} s", flush=True)
        outputs["cubic"] = cubic(volume, outputs["arssr"].shape)
        mask = brain_mask(outputs["cubic"])
        row = {"scan": file, **{k: round(slice_steps(v, SLICE_AXIS, mask), 3) for k, v in outputs.items()}}
        print(row, flush=True)
        rows.append(row)
    return rows


def thick_request(truth, thickness: float, axis: int, model):
    """The request ``arssr upsample --slice-thickness`` makes of ``truth`` acquired as boxcar slices ``thickness``
    mm thick and apart along ``axis``, upsampled back to the truth's grid."""
    lr = simulate_thick_slices(truth, ThickSlices(thickness, axis))
    return prepare(lr, model, tuple(truth.shape[a] / lr.shape[a] for a in range(3)), slice_thickness=thickness)


def step_sources(templates: Path, model, prior, mirrors: int) -> list[dict]:
    """Slice steps and in-mask PSNR of the truth, cubic, the prior's own estimate and the default output."""
    rows = []
    for file, thicknesses, axis in STEP_CASES:
        truth = load_volume(templates / file)
        mask = brain_mask(truth.data)
        for thickness in thicknesses:
            request = thick_request(truth, thickness, axis, model)
            estimate, interpolated = prior_estimate(request, prior, mirrors)
            outputs = {"truth": truth.data, "cubic": request.space.from_model(interpolated),
                       "prior estimate": request.space.from_model(estimate),
                       "prior, default": upsample_request(request, device="cpu", plane_prior=prior,
                                                          prior_mirrors=mirrors).data}
            row = {"volume": file.split(".")[0], "slice_thickness": thickness, "axis": axis}
            for name, data in outputs.items():
                row[name] = {"steps": round(slice_steps(data, axis, mask), 3)}
                if name != "truth":
                    row[name]["psnr_mask"] = round(psnr(data, truth.data, mask=mask), 3)
            print(row, flush=True)
            rows.append(row)
    return rows


def prior_name(mirrors: int, gain: float | str) -> str:
    """The prior method's name in the report: ``prior``, then what differs from the defaults."""
    return "".join(["prior", f":mirrors={mirrors}" if mirrors != DEFAULT_PRIOR_MIRRORS else "",
                    f":gain={gain:g}" if gain != "auto" else ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", help="the plane prior's weights (needed for the prior and the clinical part)")
    parser.add_argument("--parts", default="selection,reported,clinical")
    parser.add_argument("--methods", default="cubic,arssr,prior", help="which of cubic, arssr, prior to run")
    parser.add_argument("--prior-mirrors", default=str(DEFAULT_PRIOR_MIRRORS),
                        help=f"comma-separated mirrored copies the prior restores, of {PRIOR_MIRRORS}")
    parser.add_argument("--prior-gains", default="auto",
                        help="comma-separated detail gains of the prior (auto: the default's), with the first mirrors")
    parser.add_argument("--templates", default=os.environ.get("TEMPLATES", str(
        Path.home() / ".cache/arssr/mricron/usr/share/mricron/templates")), help="mricron-data templates folder")
    parser.add_argument("--data", default="../shared/data", help="folder of the clinical scans")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--json", default="eval/results/plane_prior/results.json", help="where to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.prior and ("prior" in args.methods.split(",") or {"clinical", "steps"} & set(args.parts.split(","))):
        parser.error("--prior is needed for the prior method and the clinical and steps parts")
    mirrors = [int(m) for m in args.prior_mirrors.split(",")]
    if not set(mirrors) <= set(PRIOR_MIRRORS):
        parser.error(f"--prior-mirrors: each one of {PRIOR_MIRRORS}")
    model, prior = load_model(None), load_prior(args.prior) if args.prior else None
    chosen = args.methods.split(",")
    methods = {"cubic": baseline("cubic"),
               "arssr": model_method(model, "cpu", consistency="slice", gain="auto", plane_prior=None)}
    methods = {name: run for name, run in methods.items() if name in chosen}
    variants = [(m, "auto") for m in mirrors] + [(mirrors[0], float(g)) for g in args.prior_gains.split(",")
                                                 if g != "auto"]
    for m, gain in variants if "prior" in chosen else ():
        methods[prior_name(m, gain)] = model_method(model, "cpu", consistency="slice", gain=gain, plane_prior=prior,
                                                    prior_mirrors=m)
    adapted = {f"{prior_name(mirrors[0], 'auto')}+adapt:{ADAPT_SECONDS:g}": model_method(
        model, "cpu", consistency="slice", gain="auto", plane_prior=prior, adapt=ADAPT_SECONDS,
        prior_mirrors=mirrors[0])} if "prior" in chosen else {}
    out = Path(args.json)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report.update({"model": default_model_path().name, "threads": args.threads, "torch": torch.__version__,
                   "cpu": platform.processor() or platform.machine()})
    if args.prior:
        report.update({"prior": Path(args.prior).name, "prior_card": prior.card,
                       "prior_mirrors": mirrors, "prior_gains": args.prior_gains.split(",")})
    parts = args.parts.split(",")
    for part in ("selection", "reported"):
        if part in parts:
            rows = simulated(Path(args.templates), part, methods, adapted if part == "reported" else {})
            report[part] = merged(report.get(part, []), rows)
    if {"arssr", "prior"} <= {row["method"] for row in report.get("selection", [])}:
        report["rule"] = selection_rule(report["selection"])
        print("rule:", report["rule"])
    if "clinical" in parts:
        report["clinical"] = clinical(Path(args.data), model, prior, mirrors[0])
    if "steps" in parts:
        report["steps"] = step_sources(Path(args.templates), model, prior, mirrors[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(out)


def merged(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` rows with those of the same volume, method, thickness and axis as a ``new`` row replaced."""
    def key(row):
        return row["volume"], row["method"], row["slice_thickness"], row["axis"]

    replaced = {key(row) for row in new}
    return [row for row in old if key(row) not in replaced] + new


def selection_rule(rows: list[dict]) -> dict:
    """The rule of eval/results/plane_prior/README.md on the selection rows."""
    def scores(method):
        ordered = sorted((r for r in rows if r["method"] == method), key=lambda r: (r["slice_thickness"], r["axis"]))
        return [r["psnr_mask"] for r in ordered]

    differences = np.subtract(scores("prior"), scores("arssr"))
    passed = bool(differences.mean() >= 0.3 and differences.min() >= -0.05)
    return {"differences": [round(float(d), 3) for d in differences], "mean": round(float(differences.mean()), 3),
            "passed": passed}


if __name__ == "__main__":
    main()
