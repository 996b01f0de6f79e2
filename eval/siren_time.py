"""The SIREN path's encode time against what it reaches: ``arssr compress --lr-codec siren --target-bpp 0.775`` at
the CLI's defaults (preset ``paper-2025``: k-space DS 1/2, a 3-layer SIREN as wide as the rate allows, at most
5000 steps, int8 with 10 % quantisation-aware steps) under ``--time-budget`` 30, 60, 120 and 240 s, on a 64^3
patch from the middle of the macaque template (inia19) and of Colin27 (``ch2bet``); one thread.

Per run: the whole-volume PSNR of the decoded patch, the optimisation steps done (counted at the optimiser), the
file's bytes and bpp, the encode's wall and CPU seconds.

Rule for the default budget, fixed before the first run: the smallest budget whose macaque PSNR is within
0.3 dB of the 240 s one. Colin27 is only reported (it is never used to select).

Usage: OMP_NUM_THREADS=1 python eval/siren_time.py [--budgets 30,60,120,240]
       [--json eval/results/siren_time/siren_time_0.775.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from arssr.compress import compress
from arssr.volume import Volume, load_volume

TEMPLATES = Path(os.environ.get("TEMPLATES", "/root/.cache/arssr/mricron/usr/share/mricron/templates"))
VOLUMES = {"inia19": TEMPLATES / "inia19-t1-brain.nii.gz", "ch2bet": TEMPLATES / "ch2bet.nii.gz"}
#: The volume whose PSNR picks the default budget.
SELECT_ON = "inia19"
#: How far below the longest budget's PSNR the chosen budget may be (dB).
TOLERANCE_DB = 0.3
PATCH = 64
TARGET_BPP = 0.775


def middle_patch(volume: Volume, size: int) -> Volume:
    """The ``size``^3 block at the middle of ``volume``, its affine moved to the block's first voxel."""
    start = [(n - size) // 2 for n in volume.shape]
    block = volume.data[tuple(slice(s, s + size) for s in start)]
    affine = volume.affine.copy()
    affine[:3, 3] = (volume.affine @ np.array([*start, 1.0]))[:3]
    return Volume(np.ascontiguousarray(block), affine)


def encode(patch: Volume, budget: float, folder: Path) -> dict:
    """One encode at the CLI's SIREN defaults for ``--lr-codec siren --target-bpp`` under ``budget`` seconds."""
    original_step = torch.optim.Adam.step
    with mock.patch.object(torch.optim.Adam, "step", autospec=True, side_effect=original_step) as step:
        cpu = time.process_time()
        report = compress(patch, folder / f"patch_{budget:g}.arssr", preset="paper-2025", overwrite=True,
                          lr_codec="siren", target_bpp=TARGET_BPP, time_budget=budget, device="cpu",
                          search_scale=True)
        cpu = time.process_time() - cpu
    return {"budget_s": budget, "psnr": report["psnr"], "steps": step.call_count, "bytes": report["bytes"],
            "bpp": report["bpp"], "width": report["config"]["width"], "encode_s": report["encode_s"], "cpu_s": cpu}


def chosen_budget(rows: list[dict]) -> float:
    """The rule: the smallest budget whose PSNR on :data:`SELECT_ON` is within :data:`TOLERANCE_DB` of the
    longest budget's."""
    mine = sorted((r for r in rows if r["volume"] == SELECT_ON), key=lambda r: r["budget_s"])
    best = mine[-1]["psnr"]
    return next(r["budget_s"] for r in mine if r["psnr"] >= best - TOLERANCE_DB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="30,60,120,240")
    parser.add_argument("--json", type=Path, default=Path("eval/results/siren_time/siren_time_0.775.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    budgets = [float(b) for b in args.budgets.split(",")]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": "arssr compress PATCH --lr-codec siren --target-bpp 0.775 --time-budget B --threads 1",
              "patch": PATCH, "target_bpp": TARGET_BPP, "rule": f"smallest budget within {TOLERANCE_DB} dB of the "
              f"longest one's PSNR on {SELECT_ON}", "hardware": f"{platform.processor() or platform.machine()}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} thread", "rows": []}
    print("| volume | budget s | steps | PSNR dB | bytes | bpp | encode s | CPU s | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, path in VOLUMES.items():
            patch = middle_patch(load_volume(path), PATCH)
            for budget in budgets:
                row = {"volume": name, **encode(patch, budget, Path(folder)), "load_avg": os.getloadavg()[0]}
                record["rows"].append(row)
                print(f"| {name} | {budget:g} | {row['steps']} | {row['psnr']:.2f} | {row['bytes']} | {row['bpp']:.4f} "
                      f"| {row['encode_s']:.0f} | {row['cpu_s']:.0f} | {row['load_avg']:.1f} |", flush=True)
                args.json.write_text(json.dumps(record, indent=2) + "\n")
    if any(r["volume"] == SELECT_ON for r in record["rows"]):
        record["chosen_budget_s"] = chosen_budget(record["rows"])
        print(f"chosen default budget: {record['chosen_budget_s']:g} s")
    args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
