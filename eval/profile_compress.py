"""Where ``arssr compress`` spends its time: one encode (``--lr-codec``/``--scale``), ``--auto``, or the default
for a target rate, timed by stage and by candidate.

Each stage is a library function wrapped in a timer for the run, wall and CPU seconds (``STAGE`` and
``STAGE_cpu``; ``other``: the candidate's time less its stages: metadata, packing, normalising the reference). CPU
seconds (the process's, one thread) are what other jobs on a shared machine do not inflate as they do wall
seconds; the table gives the stages' CPU seconds:
  load_model    reading the SR model file (once per candidate and per decode)
  degrade       the LR volume (k-space or Lanczos downsampling) and its intensity window
  siren_fit     fitting the SIREN (quantisation-aware phase included)
  siren_eval    evaluating the SIREN on the LR grid
  sperr_fit     SPERR's bpp bisection (``sperr_calls``: SPERR encodes it made)
  sperr_decode  decoding the SPERR stream
  sr_pass       the SR model on the whole volume (``arssr.inference.super_resolve``)
  terms         the LR's interpolation, the projection bands of it and of the SR result, the decoded foreground
  fit           the detail gains and band weights (16 gains, least squares each, two regions)
  consistent    applying them
  quality       PSNR and SSIM of the decoded volume against the original

Each candidate's decoded volume (the one a reader decodes, as the encoder scores it) is also scored inside the
original's foreground mask (``arssr.metrics.brain_mask``, as ``eval/bench_compress.py``'s ``psnr_mask``).

Usage: OMP_NUM_THREADS=1 python eval/profile_compress.py VOLUME --target-bpp 0.05 [--auto | --lr-codec sperr --scale 2]
       [--time-budget 30] [--threads 1] [--json eval/results/compress_speed/NAME.json]
Without --auto, --lr-codec or --scale: the default for a target rate (``arssr.compress.predict``).
       python eval/profile_compress.py --tables   # eval/results/compress_speed/tables.md from the runs' JSON
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import torch

STAGES = ("load_model", "degrade", "siren_fit", "siren_eval", "sperr_fit", "sperr_decode", "sr_pass", "terms", "fit",
          "consistent", "quality")


class StageClock:
    """Seconds per stage of the candidate being encoded; a list of finished candidates."""

    def __init__(self, mask=None) -> None:
        self.current: dict = defaultdict(float)
        self.candidates: list[dict] = []
        self.mask = mask  # where the decoded volumes are also scored (outside the timers)
        self.decoded = None  # the last volume that ``quality`` scored: the one a reader decodes

    def quality(self, function):
        """``arssr.compress.rate.quality`` timed, its decoded volume kept."""
        timed = self.wrap("quality", function)

        def keep(decoded, original):
            self.decoded = decoded
            return timed(decoded, original)
        return keep

    def wrap(self, stage: str, function):
        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.current[stage] += time.perf_counter() - start
                self.current[stage + "_cpu"] += time.process_time() - cpu
                if stage == "sperr_call":
                    self.current["sperr_calls"] += 1
        return timed

    def candidate(self, function):
        """``function`` (one candidate's encode, returning ``(blob, report)``) recorded as one candidate."""
        def timed(volume, config, *args, **kwargs):
            self.current = defaultdict(float)
            start, cpu = time.perf_counter(), time.process_time()
            error = None
            try:
                blob, report = function(volume, config, *args, **kwargs)
            except Exception as err:  # a candidate that does not fit: recorded, then raised to --auto as before
                error = err
                raise
            finally:
                total, cpu_s = time.perf_counter() - start, time.process_time() - cpu
                stages = {stage: self.current.get(stage, 0.0) for stage in STAGES}
                stages_cpu = {stage + "_cpu": self.current.get(stage + "_cpu", 0.0) for stage in STAGES}
                row = {"lr_codec": config.lr_codec, "scale": config.scale, "total_s": total, "cpu_s": cpu_s, **stages,
                       "other": total - sum(stages.values()), **stages_cpu,
                       "other_cpu": cpu_s - sum(stages_cpu.values()), "sperr_calls": int(self.current["sperr_calls"])}
                if error is None:
                    row.update(psnr=report["psnr"], bytes=report["bytes"])
                    if self.mask is not None:
                        from arssr.metrics import psnr

                        row["psnr_mask"] = psnr(self.decoded.data, volume.data, self.mask)
                else:
                    row["error"] = str(error)
                self.candidates.append(row)
            return blob, report
        return timed


@contextmanager
def timed_stages(clock: StageClock):
    """The library's stage functions wrapped in ``clock``'s timers while the block runs."""
    import arssr.compress.auto as auto
    import arssr.compress.codec as codec
    import arssr.compress.decoding as decoding
    import arssr.compress.lr_codec as lr_codec
    import arssr.compress.rate as rate
    import arssr.compress.sperr as sperr
    import arssr.inference as inference
    import arssr.models as models

    targets = [
        (models, "load_model", "load_model"), (codec, "degrade", "degrade"),
        (codec, "intensity_window", "degrade"), (codec, "fit_siren", "siren_fit"),
        (codec, "evaluate_siren", "siren_eval"), (lr_codec, "fit_stream", "sperr_fit"),
        (sperr, "sperr_encode", "sperr_call"), (codec, "decode_lr", "sperr_decode"),
        (inference, "super_resolve", "sr_pass"), (decoding, "fit", "fit"), (decoding, "consistent", "consistent"),
    ]
    with ExitStack() as stack:
        for module, name, stage in targets:
            stack.enter_context(mock.patch.object(module, name, clock.wrap(stage, getattr(module, name))))
        stack.enter_context(mock.patch.object(rate, "quality", clock.quality(rate.quality)))
        terms_of = decoding.Terms.of
        stack.enter_context(mock.patch.object(decoding.Terms, "of", staticmethod(clock.wrap("terms", terms_of))))
        import arssr.compress.api as api
        for module in (auto, api):  # each candidate of --auto, or the one encode
            stack.enter_context(mock.patch.object(module, "compress_with_codec",
                                                  clock.candidate(module.compress_with_codec)))
        yield


def candidates_table(rows: list[dict]) -> str:
    """An ``--auto`` run's candidates: wall and CPU seconds, the CPU seconds of the SIREN fit and evaluation, the SR
    pass and the rest, and PSNR; then the sums."""
    lines = ["| LR codec | DS | wall s | CPU s | SIREN CPU s | SR pass CPU s | rest CPU s | PSNR |", "|" + "---|" * 8]
    sums = defaultdict(float)
    for row in rows:
        parts = {"wall": row["total_s"], "cpu": row["cpu_s"], "siren": row["siren_fit_cpu"] + row["siren_eval_cpu"],
                 "sr": row["sr_pass_cpu"]}
        parts["rest"] = parts["cpu"] - parts["siren"] - parts["sr"]
        for key, value in parts.items():
            sums[key] += value
        psnr = f"{row['psnr']:.2f}" if "psnr" in row else "does not fit"
        lines.append(f"| {row['lr_codec']} | 1/{row['scale']:g} | " + " | ".join(f"{v:.1f}" for v in parts.values())
                     + f" | {psnr} |")
    lines.append("| all | | " + " | ".join(f"{sums[k]:.1f}" for k in ("wall", "cpu", "siren", "sr", "rest")) + " | |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    """The candidates' times as a Markdown table: wall and CPU seconds in all, then CPU seconds by stage."""
    columns = ["total_s", "cpu_s", *(stage + "_cpu" for stage in STAGES), "other_cpu"]
    lines = ["| LR codec | DS | " + " | ".join(columns) + " | SPERR calls | PSNR | PSNR mask |",
             "|" + "---|" * (len(columns) + 5)]
    for row in rows:
        psnr = f"{row['psnr']:.2f} | {row.get('psnr_mask', float('nan')):.2f}" if "psnr" in row else "does not fit |"
        lines.append(f"| {row['lr_codec']} | 1/{row['scale']:g} | "
                     + " | ".join(f"{row[c]:.1f}" for c in columns) + f" | {row['sperr_calls']} | {psnr} |")
    sums = {c: sum(row[c] for row in rows) for c in columns}
    lines.append("| all | | " + " | ".join(f"{sums[c]:.1f}" for c in columns) + " | | | |")
    return "\n".join(lines)


RESULTS = Path(__file__).resolve().parent / "results/compress_speed"
AUTO_RESULTS = Path(__file__).resolve().parent / "results/bench_compress_curves"


def _label(file_name: str) -> str:
    return file_name.removesuffix(".gz").removesuffix(".nii")


def selection_runs(folder: Path) -> dict:
    """``{(volume, bpp): {scale: run}}`` of the selection (``select/``: this script's runs, or
    ``eval/bench_compress.py``'s records)."""
    runs = defaultdict(dict)
    for path in sorted(folder.glob("*.json")):
        found = json.loads(path.read_text())
        for run in found if isinstance(found, list) else [found]:
            scale = run["scale"] if isinstance(found, list) else run["choice"]["scale"]
            runs[_label(run["volume"]), run["target_bpp"]][scale] = run
    return dict(sorted(runs.items()))


def choose_lr_bits(runs: dict) -> tuple[float, list[tuple]]:
    """The rule's ``LR_BITS`` as ``arssr.compress.predict`` states it: of 0.10, 0.11, ..., 1.00 (those whose
    choices were all measured), the ones of least mean shortfall against each volume and rate's best measured
    factor; the geometric mean of their smallest and largest, 2 decimals. Also each run of values with the same
    choices: ``(first, last, choices, mean shortfall or None)``."""
    from arssr.compress.predict import predicted_scale

    groups = []
    for bits in (round(0.01 * k, 2) for k in range(10, 101)):
        choices = tuple(predicted_scale(bpp, bits) for _, bpp in runs)
        measured = all(scale in found for scale, found in zip(choices, runs.values()))
        loss = statistics.mean(max(r["psnr"] for r in found.values()) - found[scale]["psnr"]
                               for scale, found in zip(choices, runs.values())) if measured else None
        if groups and groups[-1][2] == choices:
            groups[-1] = (groups[-1][0], bits, choices, loss)
        else:
            groups.append((bits, bits, choices, loss))
    least = min(loss for *_, loss in groups if loss is not None)
    best = [group for group in groups if group[3] is not None and group[3] <= least + 1e-12]
    return round(math.sqrt(best[0][0] * best[-1][1]), 2), groups


def selection_tables(folder: Path) -> tuple[str, str, float]:
    """Whole-volume PSNR of SPERR LR at each measured factor per selection volume and rate, with the best factor;
    the choices and mean shortfall of each run of ``LR_BITS`` values; the chosen value."""
    runs = selection_runs(folder)
    scales = sorted({scale for found in runs.values() for scale in found})
    lines = ["| volume | bpp | " + " | ".join(f"DS 1/{s:g}" for s in scales) + " | best DS |",
             "|" + "---|" * (len(scales) + 3)]
    for (volume, bpp), found in runs.items():
        best = max(found, key=lambda scale: found[scale]["psnr"])
        cells = [f"{found[s]['psnr']:.2f}" if s in found else "" for s in scales]
        lines.append(f"| {volume} | {bpp:g} | " + " | ".join(cells) + f" | 1/{best:g} |")
    chosen, groups = choose_lr_bits(runs)
    rows = ["| LR bits from | to | " + " | ".join(f"{v} {b:g}" for v, b in runs) + " | mean shortfall, dB |",
            "|" + "---|" * (len(runs) + 3)]
    for first, last, choices, loss in groups:
        rows.append(f"| {first:.2f} | {last:.2f} | " + " | ".join(f"1/{c:g}" for c in choices)
                    + f" | {'not all measured' if loss is None else f'{loss:.3f}'} |")
    return "\n".join(lines), "\n".join(rows), chosen


def colin_table(folder: Path) -> str:
    """A default's runs (``colin27/``: one predicted factor; ``colin27_pair/``: the two around it) against
    ``--auto``'s earlier records on Colin27, whole volume and in the mask."""
    auto = {}
    for name, volume in (("auto_v9_regions_colin27.json", "ch2bet"), ("auto_v9_regions_head.json", "ch2")):
        for row in json.loads((AUTO_RESULTS / name).read_text()):
            auto[volume, row["target_bpp"]] = row
    lines = ["| volume | bpp | default | PSNR | PSNR mask | encode s | CPU s | --auto | PSNR | PSNR mask | encode s "
             "| default - auto | in the mask |", "|" + "---|" * 13]
    for path in sorted(folder.glob("*.json")):
        run = json.loads(path.read_text())
        volume = _label(run["volume"])
        ref = auto[volume, run["target_bpp"]]
        lines.append(
            f"| {volume} | {run['target_bpp']:g} | {run['choice']['lr_codec']} DS 1/{run['choice']['scale']:g} | "
            f"{run['psnr']:.2f} | {run['psnr_mask']:.2f} | {run['total_s']:.0f} | {run['cpu_s']:.0f} | "
            f"{ref['lr_codec']} DS 1/{ref['scale']:g} | {ref['psnr']:.2f} | {ref['psnr_mask']:.2f} | "
            f"{ref['encode_s']:.0f} | {run['psnr'] - ref['psnr']:+.2f} | {run['psnr_mask'] - ref['psnr_mask']:+.2f} |")
    return "\n".join(lines)


def encodes_table(paths: list[Path]) -> str:
    """One row per single encode: wall and CPU seconds, and the CPU seconds of the SR pass, SPERR, the decoding's
    fit (terms, fit, consistent) and the scores, with the SR pass's share of the CPU time."""
    lines = ["| volume | voxels | bpp | DS | wall s | CPU s | SR pass CPU s | SPERR CPU s | decoding fit CPU s | "
             "PSNR and SSIM CPU s | SR pass share, % |", "|" + "---|" * 11]
    for path in paths:
        run = json.loads(path.read_text())
        if isinstance(run, list) or len(run["candidates"]) != 1 or "sr_pass_cpu" not in run["candidates"][0]:
            continue  # eval/bench_compress.py's records, --auto, or a run from before stages had CPU times
        row = run["candidates"][0]
        fit = row["terms_cpu"] + row["fit_cpu"] + row["consistent_cpu"]
        lines.append(f"| {_label(run['volume'])} | {math.prod(run['shape'])} | {run['target_bpp']:g} | "
                     f"1/{row['scale']:g} | {row['total_s']:.1f} | {row['cpu_s']:.1f} | {row['sr_pass_cpu']:.1f} | "
                     f"{row['sperr_fit_cpu'] + row['sperr_decode_cpu']:.1f} | {fit:.1f} | {row['quality_cpu']:.1f} | "
                     f"{100 * row['sr_pass_cpu'] / row['cpu_s']:.0f} |")
    return "\n".join(lines)


def write_tables(folder: Path = RESULTS) -> Path:
    """``tables.md``: the selection of the rule, the default on Colin27 against ``--auto``, and each profile."""
    measured, sweep, chosen = selection_tables(folder / "select")
    parts = ["# Compression speed: tables from the JSON files of this folder (python eval/profile_compress.py --tables)",
             "", "## The rule's selection: whole-volume PSNR (dB) of a SPERR LR at each factor", "", measured, "",
             "## LR_BITS values, their choices, and the mean shortfall against the best measured factor", "", sweep,
             "", f"Chosen LR_BITS: {chosen:.2f}"]
    if (folder / "colin27").is_dir():
        parts += ["", "## The default on Colin27 against --auto (auto: eval/results/bench_compress_curves)", "",
                  colin_table(folder / "colin27")]
    if (folder / "colin27_pair").is_dir():
        parts += ["", "## The default of two candidates on Colin27 against --auto", "",
                  colin_table(folder / "colin27_pair")]
    parts += ["", "## Single encodes by stage (CPU seconds, one thread)", "",
              encodes_table(sorted((folder / "colin27").glob("*.json")) + sorted((folder / "select").glob("*.json")))]
    for path in sorted(folder.glob("profile_*.json")):
        run = json.loads(path.read_text())
        parts += ["", f"## {path.name}: {run['volume']} {'x'.join(map(str, run['shape']))}, {run['mode']}, "
                  f"{run['target_bpp']:g} bpp, {run['total_s']:.1f} s ({run['cpu_s']:.1f} s CPU)", "",
                  candidates_table(run["candidates"]) if run["mode"] == "auto" else table(run["candidates"])]
    out = folder / "tables.md"
    out.write_text("\n".join(parts) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("volume", nargs="?")
    parser.add_argument("--tables", action="store_true", help="write tables.md from the JSON files and stop")
    parser.add_argument("--target-bpp", type=float)
    parser.add_argument("--auto", action="store_true")
    parser.add_argument("--lr-codec")
    parser.add_argument("--scale", type=float)
    parser.add_argument("--time-budget", type=float, help="seconds per SIREN fit")
    parser.add_argument("--steps", type=int, help="most steps per SIREN fit (default: the preset's 5000)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the run's record here")
    args = parser.parse_args()
    if args.tables:
        print(write_tables())
        return
    if args.volume is None or args.target_bpp is None:
        parser.error("give VOLUME and --target-bpp (or --tables)")
    torch.set_num_threads(args.threads)

    from arssr.compress import compress_volume, make_config
    from arssr.compress.predict import predicted_choice
    from arssr.metrics import brain_mask
    from arssr.volume import load_volume

    volume = load_volume(args.volume)
    mask = brain_mask(volume.data)  # the foreground mask of eval/bench_compress.py's "psnr_mask"
    candidates = {}
    if args.auto:
        mode, options = "auto", {}
    elif args.lr_codec is None and args.scale is None:
        candidates = predicted_choice(args.target_bpp)
        mode, options = "default", {"lr_codec": candidates["codecs"][0]}
    else:
        mode, options = "one", {"lr_codec": args.lr_codec, "scale": args.scale}
    config = make_config("paper-2025", steps=args.steps, **options)
    clock = StageClock(mask)
    start, cpu = time.perf_counter(), time.process_time()
    searched = mode != "one"
    with timed_stages(clock):
        blob, report = compress_volume(volume, config, target_bpp=args.target_bpp, time_budget=args.time_budget,
                                       device="cpu", auto=searched, **candidates)
    total, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    print(table(clock.candidates))
    print(f"{args.volume}: {mode}, {args.target_bpp:g} bpp: {report['config']['lr_codec']} DS 1/"
          f"{report['config']['scale']:g}, {len(blob)} bytes, PSNR {report['psnr']:.2f} dB, {total:.1f} s "
          f"({cpu_s:.1f} s CPU, {args.threads} thread)")
    if args.json:
        record = {
            "volume": Path(args.volume).name, "shape": list(volume.shape), "target_bpp": args.target_bpp, "mode": mode,
            "time_budget": args.time_budget, "steps": config.steps, "threads": args.threads, "total_s": total, "cpu_s": cpu_s, "bytes": len(blob),
            "psnr": report["psnr"], "psnr_mask": clock.candidates[-1].get("psnr_mask") if not searched else next(
                row["psnr_mask"] for row in clock.candidates if "psnr" in row and row["psnr"] == report["psnr"]),
            "choice": {"lr_codec": report["config"]["lr_codec"],
                                               "scale": report["config"]["scale"]},
            "candidates": clock.candidates, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
