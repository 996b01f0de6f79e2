"""``arssr evaluate`` as a Python API: files in; ``results.csv``, ``results.json``, ``results.md`` and figures out."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from arssr import geometry
from arssr.degrade import DEGRADATIONS, SliceModel
from arssr.errors import InputError, OutputError
from arssr.evaluation.methods import baseline, method
from arssr.evaluation.scoring import Record, Scorer, Subject, evaluate, scale_label
from arssr.protocol import DEFAULT_DEGRADATIONS, DEFAULT_SCALES, METHODS, SLICE_CONSISTENCY
from arssr.files import atomic_file, check_output
from arssr.simulate import ThickSlices
from arssr.volume import load_volume

RESULT_FILES = ("results.csv", "results.json", "results.md")
#: ``(attribute, heading, format)`` of the method x scale tables; ``dice`` is the mean over classes.
TABLES = (
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("psnr_mask", "PSNR inside the brain mask (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("lpips", "LPIPS (lower is better)", "{:.4f}"),
    ("psi", "PSI (no reference, higher is sharper)", "{:.4f}"),
    ("dice", "Dice, mean over classes", "{:.4f}"),
    ("steps", "Slice steps in the mask (thick slices; 1 is smooth, the ground truth's in the notes)", "{:.2f}"),
)


def _value(record: Record, attribute: str) -> float | None:
    if attribute == "dice":
        values = [v for v in record.dice.values() if not math.isnan(v)]
        return float(np.mean(values)) if values else None
    return getattr(record, attribute)


def _mean(values: list[float | None]) -> float | None:
    """Mean over subjects; ``None`` if any subject lacks the value."""
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def case_label(record: Record) -> str:
    """A table column: the slice thickness (``5 mm``, ``5 mm + 2 mm gap``) for thick slices, else the scale
    (``x2.5``)."""
    if record.slice_thickness is None:
        return scale_label(record.scale)
    return f"{record.slice_thickness:g} mm" + (f" + {record.slice_gap:g} mm gap" if record.slice_gap else "")


def _section(degradation: str, slice_axis: int | None) -> str:
    if degradation == "given":
        return "## Given LR inputs"
    if slice_axis is not None:
        return f"## LR by {degradation.removeprefix('slices-')} slices along axis {slice_axis}"
    return f"## LR by {degradation} degradation"


def markdown_report(records: list[Record], notes: Sequence[str] = ()) -> str:
    """Method x scale (or slice thickness) tables per degradation and slice axis (means over subjects), then Dice
    per class as in the paper's Table 4."""
    subjects = list(dict.fromkeys(r.subject for r in records))
    lines = ["# Evaluation", "", f"Subjects: {', '.join(subjects)}. Values are means over subjects.", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    for degradation, slice_axis in dict.fromkeys((r.degradation, r.slice_axis) for r in records):
        rows = [r for r in records if (r.degradation, r.slice_axis) == (degradation, slice_axis)]
        scales = list(dict.fromkeys(case_label(r) for r in rows))
        methods = list(dict.fromkeys(r.method for r in rows))
        lines += [_section(degradation, slice_axis), ""]
        for attribute, heading, fmt in TABLES:
            cells = {(m, s): _mean([_value(r, attribute) for r in rows if r.method == m and case_label(r) == s])
                     for m in methods for s in scales}
            if all(v is None for v in cells.values()):
                continue
            lines += [f"| {heading} | " + " | ".join(scales) + " |", "|---" * (len(scales) + 1) + "|"]
            for m in methods:
                lines.append(f"| {m} | " + " | ".join("-" if cells[m, s] is None else fmt.format(cells[m, s])
                                                      for s in scales) + " |")
            lines.append("")
        classes = list(dict.fromkeys(c for r in rows for c in r.dice))
        if classes:
            lines += ["| Dice: scale | method | " + " | ".join(classes) + " |", "|---|---" + "|---" * len(classes) + "|"]
            for s in scales:
                for m in methods:
                    picked = [r for r in rows if r.method == m and case_label(r) == s]
                    values = [np.nanmean([r.dice.get(c, np.nan) for r in picked]) for c in classes]
                    lines.append(f"| {s} | {m} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
            lines.append("")
    return "\n".join(lines)


def csv_text(records: list[Record]) -> str:
    """One row per record; Dice classes become ``dice_<class>`` columns; missing values are empty."""
    classes = list(dict.fromkeys(c for r in records for c in r.dice))
    columns = ["method", "scale", "degradation", "subject", "psnr", "psnr_mask", "ssim", "lpips", "psi",
               *(f"dice_{c}" for c in classes), "seconds", "slice_axis", "slice_thickness", "slice_gap", "steps"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = record.as_dict()
        dice = row.pop("dice")
        row["scale"] = scale_label(record.scale)[1:]
        row.update({f"dice_{c}": dice.get(c) for c in classes})
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def write_results(records: list[Record], folder: Path, notes: Sequence[str] = ()) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    texts = {
        "results.csv": csv_text(records),
        "results.json": json.dumps([r.as_dict() for r in records], indent=2) + "\n",
        "results.md": markdown_report(records, notes) + "\n",
    }
    for name, text in texts.items():
        with atomic_file(folder / name) as handle:
            handle.write(text.encode())
    return [folder / name for name in texts]


def _paired(paths: Sequence[str] | None, count: int, what: str) -> list[str | None]:
    if not paths:
        return [None] * count
    if len(paths) != count:
        raise InputError(f"give one {what} per ground truth: {len(paths)} {what} for {count} ground truths")
    return list(paths)


def load_subjects(gt: Sequence[str], lr: Sequence[str] | None = None, atlas: Sequence[str] | None = None) -> list[Subject]:
    """Ground truths with optional paired LR inputs and atlases (label maps on the ground truth's grid)."""
    if not gt:
        raise InputError("no ground-truth volume given")
    subjects, names = [], set()
    for gt_path, lr_path, atlas_path in zip(gt, _paired(lr, len(gt), "LR input"), _paired(atlas, len(gt), "atlas")):
        name = Path(gt_path).name.split(".")[0]
        name = name if name not in names else f"{name}-{len(names)}"
        names.add(name)
        subjects.append(Subject.from_volumes(
            name, load_volume(gt_path),
            atlas=load_volume(atlas_path) if atlas_path else None,
            lr=load_volume(lr_path) if lr_path else None,
        ))
    return subjects


def check_protocol(
    scales: Sequence[float], degradations: Sequence[str], slices: Sequence[ThickSlices] = (),
    methods: Sequence[str] = (),
) -> None:
    """``InputError`` for an unknown degradation, a scale below 1, a bad thick-slice case, or a ``+dc:slice``
    method without thick slices."""
    unknown = [d for d in degradations if d not in DEGRADATIONS]
    if unknown:
        raise InputError(f"unknown degradation {unknown[0]!r}: choose from {', '.join(DEGRADATIONS)}")
    for scale in scales:
        geometry.check_scale([scale] * 3)
    for thick in slices:
        SliceModel(thick.thickness, thick.profile)  # checks both
        if thick.axis not in (0, 1, 2):
            raise InputError(f"slice axis must be 0, 1 or 2, got {thick.axis!r}")
        if not thick.gap >= 0:
            raise InputError(f"slice gap must be >= 0 mm, got {thick.gap!r}")
    if not slices and any(f"+dc:{SLICE_CONSISTENCY}" in spec for spec in methods):
        raise InputError(f"+dc:{SLICE_CONSISTENCY} needs thick slices: give a slice thickness")


def _method_files(methods: Sequence[str]) -> list[str]:
    """The weights files among method specs (``FILE`` or ``NAME=FILE``)."""
    return [spec.rpartition("=")[2] for spec in methods if spec.split("+")[0] not in METHODS]


def _segment_or_warn(segment: Callable, notes: list[str]) -> Callable:
    """``segment`` for a :class:`Scorer`; after its first failure one warning (and note), then no labels (no Dice)."""
    failures: list[str] = []

    def labels(subject: Subject, data: np.ndarray) -> np.ndarray | None:
        if failures:
            return None
        try:
            return segment(data, subject.mask, subject.gt.spacing, subject.atlas)
        except Exception as err:  # ANTs raises a bare Exception when Atropos stops
            failures.append(f"Dice: unavailable (segmentation of {subject.name} failed: "
                            f"{(str(err).splitlines() or [type(err).__name__])[0]})")
            notes.append(failures[0])
            warnings.warn(failures[0], stacklevel=2)
            return None

    return labels


def run_evaluation(
    gt: Sequence[str],
    out_dir: str | Path,
    *,
    lr: Sequence[str] | None = None,
    atlas: Sequence[str] | None = None,
    scales: Sequence[float] = DEFAULT_SCALES,
    degradations: Sequence[str] = DEFAULT_DEGRADATIONS,
    methods: Sequence[str] = METHODS,
    lpips: bool = True,
    sharpness: bool = True,
    dice: bool = True,
    figures: bool = True,
    device: str = "auto",
    tile: int | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    slices: Sequence[ThickSlices] = (),
) -> list[Record]:
    """Evaluate every method on every ground truth and write the result files (and figures) into ``out_dir``.

    ``slices`` replaces ``scales`` x ``degradations`` by thick-slice simulations (``arssr.evaluation``).

    ``sharpness`` adds PSI (:mod:`arssr.evaluation.sharpness`) of every result and of each ground truth.

    LPIPS or Dice that cannot be computed here (no pretrained AlexNet weights
    offline, no antspyx) are reported as unavailable with the reason, in a
    warning and in ``results.md``; everything else is still produced.
    """
    from arssr.device import resolve_device
    from arssr.metrics import MetricUnavailable, load_lpips

    out = Path(out_dir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"{out}: is a file; -o/--output-dir takes a folder for the results")
    inputs = [*gt, *(lr or ()), *(atlas or ()), *_method_files(methods)]
    for name in RESULT_FILES:
        check_output(out / name, overwrite, inputs)
    check_protocol(scales, degradations, slices, methods)
    subjects = load_subjects(gt, lr, atlas)
    runs = dict(method(spec, device, tile) for spec in methods)

    notes, scorer = [], Scorer()
    if lpips:
        try:
            scorer.lpips = load_lpips(str(resolve_device(device)))
        except MetricUnavailable as err:
            notes.append(f"LPIPS: unavailable ({err})")
    if sharpness:
        from arssr.evaluation.sharpness import volume_psi

        scorer.sharpness = volume_psi
        notes.append("PSI of the ground truth: " + ", ".join(f"{s.name} {volume_psi(s.gt.data):.4f}" for s in subjects))
    if dice:
        try:
            from arssr.evaluation.segmentation import REGIONS, TISSUES, segment

            import ants  # noqa: F401  (antspyx present)
        except ImportError as err:
            notes.append(f"Dice: unavailable ({err})")
        else:
            scorer.segment = _segment_or_warn(segment, notes)
            scorer.classes = REGIONS if any(s.atlas is not None for s in subjects) else TISSUES
            notes.append("Dice: ANTs Atropos (k-means, 3 classes, inside the ground truth's brain mask) on the GT "
                         "and on each result" + ("; deep GM and cerebellum from the atlas" if atlas else ""))
    if slices:
        from arssr.metrics import slice_steps

        notes.append("Slice steps of the ground truth in its mask: " + ", ".join(
            f"{s.name} axis {axis} {slice_steps(s.gt.data, axis, s.mask):.2f}" for s in subjects
            for axis in dict.fromkeys(thick.axis for thick in slices)))
    for note in notes:
        if "unavailable" in note:
            warnings.warn(note, stacklevel=2)

    def draw(subject: Subject, lr_volume, degradation: str, scale, outputs: dict[str, np.ndarray]) -> None:
        from arssr.evaluation.figures import case_figures

        lr_on_grid = baseline("nearest")(lr_volume, subject.gt.shape).data
        stem = f"{subject.name}_{degradation}_{scale_label(scale)}"
        case_figures(out / "figures", stem, subject.gt.data, subject.gt.affine, subject.mask, lr_on_grid, outputs,
                     title=f"{subject.name}, {degradation} {scale_label(scale)}")

    records = evaluate(subjects, runs, scales, degradations, scorer, on_case=draw if figures else None, log=log,
                       slices=slices)
    write_results(records, out, notes)
    return records
