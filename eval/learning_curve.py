"""Learning-curve study: what more CPU training buys the default model (issue 27).

Each recipe ``train/curve_*.yaml`` trains on one thread for a fixed CPU time and keeps its weights at fixed
steps (``export_steps``); every kept model, and v9 itself, is scored with the default settings of
``arssr upsample`` (k-space consistency, fitted detail gain) on k-space LR at x2 and x3.2, in the mask, on
two held-out crops: the macaque ``inia19-t1-brain`` and a slab of the real whole head ds000031 that the
study's recipes never train on (v9 itself did). The gain over v9 is fitted against CPU-hours per recipe.

  D=/work/runs/curve_data
  python eval/learning_curve.py prepare --out $D          # train.csv less the slab; the two scored crops
  arssr train --config train/curve_X.yaml --out RUN --resume auto --threads 1 data=$D/train.csv
  python eval/learning_curve.py score --data $D RUN ...   # v9 into $D/scores_v9.json, each RUN's kept models
  python eval/learning_curve.py time --source $D/train.csv --out $D/timing.json   # s and FLOPs per step (added to the file)
  python eval/learning_curve.py report --data $D RUN ...  # fit, table and plot in eval/results/learning_curve/
  python eval/learning_curve.py score-model WEIGHTS VOLUME... --out JSON          # one model (train/gpu_run.sh)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = Path(os.environ.get("TEMPLATES") or Path(os.environ.get("ARSSR_DATA") or Path.home() / ".cache/arssr")
                 / "mricron/usr/share/mricron/templates")
RECIPES = sorted((REPO / "train").glob("curve_*.yaml"))
V9 = REPO / "pretrained/arssr_rdn_v9.safetensors"
HEAD = "ds000031_sub-01_T1w.nii.gz"
#: ds000031 (192 x 256 x 256, LAS, 0.9 x 0.94 x 0.94 mm): the study's recipes train on x >= TRAIN_FROM only;
#: the scored crop lies in x < 56, 16 voxels (14 mm) from the training part.
TRAIN_FROM = 72
#: The scored crops (voxel index ranges per axis) of the held-out slab and of the macaque (168 x 206 x 128).
HEAD_CROP = ((8, 56), (64, 176), (120, 232))
MACAQUE_CROP = ((36, 132), (55, 151), (16, 112))
SCALES = (2.0, 3.2)
#: The scored crops that ``prepare`` writes (file stems).
HELD_OUT = ("macaque", "heldout_head")
#: Gains over v9 (dB) whose CPU-hours each fit is asked for.
TARGETS = [0.25, 0.5, 1.0]
#: The GPU-hours estimate: FLOPs per step over an assumed sustained throughput of an H100 SXM card.
GPU_ASSUMPTION = {"card": "H100 SXM", "peak_bf16_dense_flops": 989e12, "sustained_fraction": 0.1,
                  "sustained_flops": 98.9e12}


def crop_image(image: nib.Nifti1Image, box) -> nib.Nifti1Image:
    """``image`` cut to ``box`` (index ranges per axis), its affine moved with it."""
    return image.slicer[tuple(slice(lo, hi) for lo, hi in box)]


def prepare(out: Path, source_csv: Path) -> None:
    """The training CSV with ds000031 cut to x >= TRAIN_FROM, and the two scored crops, under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(source_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = []
    for row in rows:
        path = (source_csv.parent / row["path"]).resolve()
        if path.name == HEAD:
            image = nib.load(path)
            part = out / f"ds000031_sub-01_T1w_x{TRAIN_FROM}-{image.shape[0]}.nii.gz"
            nib.save(crop_image(image, ((TRAIN_FROM, image.shape[0]), (0, image.shape[1]), (0, image.shape[2]))),
                     part)
            nib.save(crop_image(image, HEAD_CROP), out / "heldout_head.nii.gz")
            path = part
        paths.append(path)
    with open(out / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "split"])
        writer.writerows([str(p), "train"] for p in paths)
    nib.save(crop_image(nib.load(TEMPLATES / "inia19-t1-brain.nii.gz"), MACAQUE_CROP), out / "macaque.nii.gz")


def time_recipes(source: str, steps: int, recipes, out: Path, device: str = "cpu", overrides=()) -> dict:
    """Seconds per training step (wall and this process's CPU, after 2 warm-up steps) and FLOPs of one step
    (forward and backward, as ``torch.utils.flop_counter`` counts them) of each recipe trained on ``source``
    with ``overrides``; into the JSON file ``out`` (other recipes already in it are kept)."""
    import tempfile

    from torch.utils.flop_counter import FlopCounterMode

    from arssr.training import load_config
    from arssr.training.trainer import Trainer

    timing = json.loads(out.read_text()) if out.is_file() else {}
    for recipe in recipes:
        with tempfile.TemporaryDirectory() as folder:
            config = load_config(recipe, [f"data={source}", f"out={folder}", f"device={device}", *overrides])
            trainer = Trainer(config)
            trainer.train_step()
            counter = FlopCounterMode(display=False)
            with counter:
                trainer.train_step()
            synchronize = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
            synchronize()
            start = time.process_time(), time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            synchronize()
            timing[Path(recipe).stem] = {
                "s_per_step": round((time.perf_counter() - start[1]) / steps, 4),
                "cpu_s_per_step": round((time.process_time() - start[0]) / steps, 4),
                "flops_per_step": counter.get_total_flops(), "device": str(trainer.device),
                "source": source, "steps": steps, "overrides": list(overrides)}
            print(json.dumps({"recipe": Path(recipe).stem, **timing[Path(recipe).stem]}), flush=True)
    write_json(out, timing)
    return timing


def write_json(path: Path, value) -> None:
    """``value`` as JSON at ``path``, written atomically."""
    from arssr.files import atomic_file

    with atomic_file(path) as handle:
        handle.write((json.dumps(value, indent=1) + "\n").encode())


def score_model(weights: Path, volumes, device: str = "cpu") -> dict:
    """In-mask PSNR of ``weights`` with the default settings of ``arssr upsample`` (k-space consistency, fitted
    gain) on k-space LR at each of SCALES of each volume (named by its file's stem); and the scoring's own CPU
    and wall seconds."""
    from arssr.evaluation.methods import method
    from arssr.evaluation.scoring import Subject, evaluate
    from arssr.models.checkpoint import read_metadata
    from arssr.volume import load_volume

    clock = time.process_time(), time.perf_counter()
    subjects = [Subject.from_volumes(Path(path).name.split(".")[0], load_volume(path)) for path in volumes]
    _, run = method(f"model={weights}+dc+gain", device=device)
    records = evaluate(subjects, {"model": run}, scales=SCALES, degradations=("kspace",))
    card = read_metadata(weights)
    return {
        "file": str(weights), "step": int(card.get("step", 0)), "cpu_seconds": float(card.get("cpu_seconds", 0)),
        "psnr_mask": {f"{r.subject} x{r.scale:g}": r.psnr_mask for r in records},
        "scoring_cpu_seconds": round(time.process_time() - clock[0], 1),
        "scoring_wall_seconds": round(time.perf_counter() - clock[1], 1),
    }


def score(data: Path, runs) -> None:
    """Score v9 (once, into DATA/scores_v9.json) and every kept model of each run not yet in RUN/scores.json."""
    baseline, volumes = data / "scores_v9.json", [data / f"{name}.nii.gz" for name in HELD_OUT]
    if not baseline.exists():
        write_json(baseline, score_model(V9, volumes))
        print(json.dumps(json.loads(baseline.read_text())), flush=True)
    for run in runs:
        path = run / "scores.json"
        scores = json.loads(path.read_text()) if path.exists() else {}
        for weights in sorted(run.glob("step_*.safetensors")):
            if weights.name not in scores:
                scores[weights.name] = score_model(weights, volumes)
                write_json(path, scores)
                print(json.dumps(scores[weights.name]), flush=True)


def gains(scores: dict, baseline: dict) -> float:
    """Mean in-mask PSNR gain over v9 of one model's cases."""
    return float(np.mean([value - baseline["psnr_mask"][case] for case, value in scores["psnr_mask"].items()]))


def report(data: Path, runs, out: Path) -> None:
    """The fit of each run's gain over v9 against CPU-hours, the CPU and GPU hours to each target gain,
    as OUT/results.json, OUT/table.md (printed) and OUT/learning_curve.png."""
    from arssr.evaluation.curve import hours_for, log_linear_fit

    baseline = json.loads((data / "scores_v9.json").read_text())
    timing = json.loads((data / "timing.json").read_text())
    results = {"baseline_v9": baseline, "targets_db": TARGETS, "gpu_assumption": GPU_ASSUMPTION, "recipes": {}}
    for run in runs:
        scores = sorted(json.loads((run / "scores.json").read_text()).values(), key=lambda r: r["step"])
        hours = [r["cpu_seconds"] / 3600 for r in scores]
        gain = [gains(r, baseline) for r in scores]
        fit = log_linear_fit(hours, gain)
        steps_per_hour = scores[-1]["step"] / hours[-1]
        flops = timing[run.name]["flops_per_step"]
        gpu_hours_per_cpu_hour = steps_per_hour * flops / (GPU_ASSUMPTION["sustained_flops"] * 3600)
        crossings = {}
        for target in TARGETS:
            crossing = hours_for(fit, target)
            crossings[f"{target:g}"] = None if crossing is None else {
                "cpu_hours": crossing.hours, "cpu_hours_interval": [crossing.low, crossing.high],
                "gpu_hours_estimate": crossing.hours * gpu_hours_per_cpu_hour}
        results["recipes"][run.name] = {
            "points": [{"step": r["step"], "cpu_hours": h, "gain_db": g, "psnr_mask": r["psnr_mask"]}
                       for r, h, g in zip(scores, hours, gain)],
            "fit": {"a": fit.a, "b": fit.b, "se_a": fit.se_a, "se_b": fit.se_b, "cov_ab": fit.cov_ab,
                    "p_slope": fit.p_slope, "n": fit.n},
            "flops_per_step": flops, "cpu_s_per_step_timed": timing[run.name]["cpu_s_per_step"],
            "steps_per_cpu_hour": steps_per_hour, "gpu_hours_per_cpu_hour_estimate": gpu_hours_per_cpu_hour,
            "scoring_cpu_seconds_per_model": float(np.mean([r["scoring_cpu_seconds"] for r in scores])),
            "crossings": crossings,
        }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    table = markdown_table(results)
    (out / "table.md").write_text(table)
    print(table)
    plot(results, out / "learning_curve.png")


def markdown_table(results: dict) -> str:
    """The scores of every kept model and each recipe's fit and hours to each target, as Markdown."""
    baseline = results["baseline_v9"]["psnr_mask"]
    cases = list(baseline)
    lines = ["| model | step | CPU-h | " + " | ".join(cases) + " | mean gain (dB) |",
             "|---|---:|---:|" + "---:|" * len(cases) + "---:|",
             "| v9 | 0 | 0 | " + " | ".join(f"{baseline[c]:.3f}" for c in cases) + " | 0 |"]
    for name, recipe in results["recipes"].items():
        for point in recipe["points"]:
            lines.append(f"| {name} | {point['step']} | {point['cpu_hours']:.3f} | "
                         + " | ".join(f"{point['psnr_mask'][c]:.3f}" for c in cases) + f" | {point['gain_db']:+.3f} |")
    lines += ["", "| recipe | a (dB) | b (dB per ln h) | SE a | SE b | p (b > 0) | FLOPs/step | "
              + " | ".join(f"+{t:g} dB: CPU-h [68 %] / GPU-h est." for t in results["targets_db"]) + " |",
              "|---|---:|---:|---:|---:|---:|---:|" + "---|" * len(results["targets_db"])]
    for name, recipe in results["recipes"].items():
        fit, cells = recipe["fit"], []
        for target in results["targets_db"]:
            crossing = recipe["crossings"][f"{target:g}"]
            cells.append("never" if crossing is None else
                         f"{crossing['cpu_hours']:.3g} [{crossing['cpu_hours_interval'][0]:.3g}, "
                         f"{crossing['cpu_hours_interval'][1]:.3g}] / {crossing['gpu_hours_estimate']:.2g}")
        lines.append(f"| {name} | {fit['a']:+.3f} | {fit['b']:+.4f} | {fit['se_a']:.3f} | {fit['se_b']:.4f} | "
                     f"{fit['p_slope']:.3f} | {recipe['flops_per_step']:.3g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """Left: the mean gain over v9 against CPU-hours (log axis), points and fits per recipe, the targets as
    lines. Right: the gain on each crop (mean of its two scales)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baseline = results["baseline_v9"]["psnr_mask"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for (name, recipe), colour in zip(results["recipes"].items(), plt.cm.tab10.colors):
        hours = np.array([p["cpu_hours"] for p in recipe["points"]])
        fit = recipe["fit"]
        grid = np.geomspace(hours.min(), max(hours.max(), 10.0), 50)
        left.plot(hours, [p["gain_db"] for p in recipe["points"]], "o", color=colour,
                  label=f"{name} (b = {fit['b']:+.3f} ± {fit['se_b']:.3f} dB per ln h)")
        left.plot(grid, fit["a"] + fit["b"] * np.log(grid), "-", color=colour, lw=1)
        for crop, marker, fill in (("macaque", "o-", colour), ("heldout_head", "s--", "white")):
            gain = [np.mean([p["psnr_mask"][c] - baseline[c] for c in baseline if c.startswith(crop + " ")])
                    for p in recipe["points"]]
            right.plot(hours, gain, marker, color=colour, markerfacecolor=fill, lw=0.8,
                       label=f"{name}, {crop}")
    for target in results["targets_db"]:
        left.axhline(target, color="grey", ls=":", lw=0.8)
    for ax in (left, right):
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("CPU-hours of training (one thread, 2-core AMD EPYC Zen 3)")
    left.set_ylabel("mean in-mask PSNR gain over v9 (dB)")
    right.set_ylabel("in-mask PSNR gain over v9, mean of x2 and x3.2 (dB)")
    left.set_title("mean of 4 cases; lines: log-linear fits to 10 h; dotted: +0.25 / +0.5 / +1 dB")
    right.set_title("per crop: macaque (filled), held-out head slab (open)")
    left.legend(fontsize=7, loc="upper left")
    right.legend(fontsize=6, loc="upper center", ncol=2)
    right.set_ylim(top=right.get_ylim()[1] + 0.25)
    fig.suptitle("k-space LR x2 and x3.2, default arssr upsample settings, in the mask")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--csv", type=Path, default=REPO / "train/real_t1.csv")
    t = sub.add_parser("time", help="seconds and FLOPs per training step of each recipe")
    t.add_argument("--source", required=True, help="training data (as arssr train's data)")
    t.add_argument("--out", type=Path, required=True, help="JSON file")
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--device", default="cpu")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    t.add_argument("recipes", nargs="*", type=Path, default=RECIPES)
    c = sub.add_parser("score")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("runs", nargs="+", type=Path)
    m = sub.add_parser("score-model", help="score one weights file on the given volumes into a JSON file")
    m.add_argument("weights", type=Path)
    m.add_argument("volumes", nargs="+", type=Path)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--device", default="cpu")
    r = sub.add_parser("report")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, default=REPO / "eval/results/learning_curve")
    r.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "prepare":
        prepare(args.out, args.csv)
    elif args.command == "time":
        time_recipes(args.source, args.steps, args.recipes, args.out, args.device, args.set)
    elif args.command == "score":
        score(args.data, args.runs)
    elif args.command == "score-model":
        write_json(args.out, score_model(args.weights, args.volumes, args.device))
        print(args.out.read_text(), end="")
    elif args.command == "report":
        report(args.data, args.runs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
