"""Is a flip self-ensemble worth its cost? The default `arssr upsample` against the mean of its results on
flipped copies of the input (flipped back), on central crops of held-out volumes.

The LR is the crop degraded by k-space truncation; every member runs with the default settings (k-space
consistency, fitted detail gain), so the mean is consistent too. PSNR inside the foreground mask (Otsu on
the whole ground truth), seconds as a ratio to one member.

Usage: python eval/flip_ensemble.py [--gt ch2bet.nii.gz inia19-t1-brain.nii.gz] [--crop 96]
                                    [--scales 2,3.2] [--threads 1] [--json eval/results/flip_ensemble.json]
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from arssr.evaluation.methods import baseline
from arssr.simulate import simulate_lr
from arssr.inference import upsample
from arssr.metrics import brain_mask, psnr
from arssr.models import load_model
from arssr.volume import Volume, load_volume

TEMPLATES = Path.home() / ".cache/arssr/mricron/usr/share/mricron/templates"
ENSEMBLES = {"default (1 member)": [()], "2 flips": [(), (0,)],
             "8 flips": [a for r in range(4) for a in itertools.combinations(range(3), r)]}


def central_crop(volume: Volume, size: int) -> tuple[Volume, tuple[slice, ...]]:
    region = tuple(slice(max(0, (n - size) // 2), max(0, (n - size) // 2) + min(n, size)) for n in volume.shape)
    return Volume(np.ascontiguousarray(volume.data[region], dtype=np.float32), volume.affine), region


def flipped_member(lr: Volume, model, shape, axes: tuple[int, ...]) -> np.ndarray:
    """The default upsample of ``lr`` flipped along ``axes`` (same affine; none for ``()``), flipped back."""
    flipped = Volume(np.ascontiguousarray(np.flip(lr.data, axes)), lr.affine)
    out = upsample(flipped, model, scale=[n / m for n, m in zip(shape, lr.shape)], device="cpu").data
    return np.ascontiguousarray(np.flip(out, axes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", nargs="+", default=[str(TEMPLATES / "ch2bet.nii.gz"),
                                                    str(TEMPLATES / "inia19-t1-brain.nii.gz")])
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--scales", default="2,3.2")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="eval/results/flip_ensemble.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    rows = []
    for path in args.gt:
        whole = load_volume(path)
        truth, region = central_crop(whole, args.crop)
        mask = brain_mask(whole.data)[region]
        for scale in (float(s) for s in args.scales.split(",")):
            lr = simulate_lr(truth, scale, "kspace")
            row = {"volume": Path(path).name.split(".")[0], "scale": scale,
                   "cubic": psnr(baseline("cubic")(lr, truth.shape).data, truth.data, mask),
                   "zero-filled k-space": psnr(baseline("kspace")(lr, truth.shape).data, truth.data, mask)}
            members, seconds = {}, {}
            for name, flips in ENSEMBLES.items():
                for axes in flips:
                    if axes not in members:
                        start = time.perf_counter()
                        members[axes] = flipped_member(lr, model, truth.shape, axes)
                        seconds[axes] = time.perf_counter() - start
                mean = np.mean([members[a] for a in flips], axis=0)
                row[name] = psnr(mean, truth.data, mask)
                row[name + " cost"] = sum(seconds[a] for a in flips) / seconds[()]
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    names = ["cubic", "zero-filled k-space", *ENSEMBLES]
    print("\n| volume | scale | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 2))
    for row in rows:
        cells = [f"{row[n]:.2f}" + (f" ({row[n + ' cost']:.1f}x)" if n in ENSEMBLES else "") for n in names]
        print(f"| {row['volume']} | x{row['scale']:g} | " + " | ".join(cells) + " |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
