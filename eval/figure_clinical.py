"""Figure: real clinical thick-slice scans upsampled to about 1 mm along the slice axis.

The two scans of ``../shared/data`` (never used for training or
selection): an axial T1 post-contrast with 6.5 mm slices and an axial proton
density with 5 mm slices every 7 mm (2 mm gaps). Each is upsampled along its
slice axis only (array axis 2) to about 1 mm by cubic interpolation and by the
shipped model with the slice-model consistency (``arssr upsample --scale 1,1,K
--slice-thickness MM``), and shown in a coronal and a sagittal plane, where the
staircase of thick slices is: input (nearest neighbour), cubic, the 3D model
(``--plane-prior none``), with ``--adapt SECONDS`` the 3D model after
self-adaptation to the whole scan (in-plane views, ``arssr.adapt``), and the
default: the through-plane prior (``--plane-prior``, the shipped one unless
given; the whole scan).

For the 3D model only a slab of ``2 x receptive radius + 1`` voxels around each shown plane is
upsampled: the encoder sees nothing beyond that radius, in-plane scales are 1
and the consistency projection acts along the slice axis only, so with the
detail gain fitted on the whole scan the shown plane equals that of
whole-volume upsampling, at a fraction of the time.

Usage: python eval/figure_clinical.py [--data ../shared/data] [--threads 1] [--adapt SECONDS]
                                     [--plane-prior FILE|auto]
Writes eval/results/figures/clinical_thick_slices.png, and beside it a .json with each scan's fitted detail gains
and adaptation report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from arssr.adapt import AdaptOptions, adapt_to
from arssr.degrade import resample
from arssr.evaluation.figures import to_ras
from arssr.inference import fitted_gain, upsample
from arssr.models import load_model
from arssr.models.planes import load_prior
from arssr.volume import Volume, load_volume

#: ``(file, slice thickness in mm, title)``; the slices are along array axis 2 in both.
SCANS = (
    ("clinical_T1post_axial_6p5mm_case1.nii.gz", 6.5, "T1 post-contrast, 6.5 mm slices"),
    ("clinical_PD_axial_5mm_gap2mm.nii.gz", 5.0, "PD, 5 mm slices every 7 mm"),
)
TARGET_MM = 1.0
SLICE_AXIS = 2
#: ``(name, array axis held fixed)``: the planes that cut across the slices (both scans are L/R, A/P, S axes).
PLANES = (("coronal", 1), ("sagittal", 0))
OUT = Path("eval/results/figures/clinical_thick_slices.png")


def slab(volume: Volume, axis: int, radius: int) -> Volume:
    """The ``2 radius + 1`` voxels around the middle of ``axis``, with the affine that keeps them in place."""
    start = volume.shape[axis] // 2 - radius
    index = [slice(None)] * 3
    index[axis] = slice(start, start + 2 * radius + 1)
    shift = np.eye(4)
    shift[axis, 3] = start
    return Volume(np.ascontiguousarray(volume.data[tuple(index)]), volume.affine @ shift, volume.header)


def plane(data: np.ndarray, affine: np.ndarray, axis: int) -> np.ndarray:
    """The middle plane across ``axis`` of a slab, in RAS order, for ``imshow(origin="lower")``."""
    ras_axis = int(abs(np.asarray(affine)[:3, axis]).argmax())
    ras = to_ras(data, affine)
    return np.take(ras, ras.shape[ras_axis] // 2, axis=ras_axis).T


def panels(volume: Volume, thickness: float, model, adapt: float | None, prior="auto"
           ) -> tuple[list[tuple[str, str, np.ndarray, float]], dict]:
    """``(plane, method, image, aspect)`` for every plane and method of one scan, and what was fitted for it
    (detail gains, adaptation report)."""
    scale = (1.0, 1.0, volume.spacing[SLICE_AXIS] / TARGET_MM)
    models = {"3D model": model}
    record = {"slice_thickness_mm": thickness, "scale": scale}
    if adapt:
        adapted, report = adapt_to(volume, model, scale, options=AdaptOptions(seconds=adapt), device="cpu",
                                   slice_thickness=thickness)
        print(f"adapted: {report.as_dict()}")
        record["adaptation"] = report.as_dict()
        models[f"3D model + adapt {adapt:g} s" + ("" if report.kept else " (dropped)")] = adapted
    gains = {method: fitted_gain(volume, used, scale, slice_thickness=thickness, device="cpu", plane_prior=None)
             for method, used in models.items()}
    print(f"fitted detail gains: {gains}")
    record["detail_gains"] = gains
    whole = upsample(volume, model, scale=scale, device="cpu", slice_thickness=thickness, plane_prior=prior)
    out = []
    for name, axis in PLANES:
        part = slab(volume, axis, model.receptive_radius)
        lr = torch.from_numpy(part.data.astype(np.float64))
        srs = {method: upsample(part, used, scale=scale, device="cpu", slice_thickness=thickness, gain=gains[method],
                                plane_prior=None) for method, used in models.items()}
        sr = srs["3D model"]
        methods = {"input (nearest)": resample(lr, sr.shape, "nearest").numpy(),
                   "cubic": np.clip(resample(lr, sr.shape, "cubic").numpy(), part.data.min(), part.data.max()),
                   **{method: result.data for method, result in srs.items()}}
        methods["plane prior (default)"] = slab(whole, axis, model.receptive_radius).data
        in_plane = 1 - axis  # the other in-plane axis: 0 for coronal, 1 for sagittal
        aspect = sr.spacing[SLICE_AXIS] / sr.spacing[in_plane]
        out += [(name, method, plane(data, sr.affine, axis), aspect) for method, data in methods.items()]
    return out, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder of the clinical scans")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--adapt", type=float, help="also show the model adapted to each scan for this many seconds")
    parser.add_argument("--plane-prior", default="auto", help="the through-plane prior (default: the shipped one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(None)
    prior = args.plane_prior if args.plane_prior == "auto" else load_prior(args.plane_prior)
    rows, records = [], {}
    for file, thickness, title in SCANS:
        volume = load_volume(Path(args.data) / file)
        low, high = np.percentile(volume.data, [0.5, 99.5])
        images, records[file] = panels(volume, thickness, model, args.adapt, prior)
        rows.append((title, images, low, high))
    columns = len(rows[0][1]) // len(PLANES)
    figure = Figure(figsize=(4 * columns, 3.4 * len(rows) * len(PLANES)), layout="constrained")
    grid = figure.subplots(len(rows) * len(PLANES), columns)
    for r, (title, images, low, high) in enumerate(rows):
        for i, (plane_name, method, image, aspect) in enumerate(images):
            ax = grid[r * len(PLANES) + i // columns, i % columns]
            ax.imshow(image, cmap="gray", origin="lower", vmin=low, vmax=high, aspect=aspect,
                      interpolation="nearest")
            ax.set_title(f"{title}: {plane_name}, {method}", fontsize=9)
            ax.set_axis_off()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT, dpi=110)
    report = {"threads": args.threads, "torch": torch.__version__, "plane_prior": args.plane_prior, "scans": records}
    OUT.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(OUT)


if __name__ == "__main__":
    main()
