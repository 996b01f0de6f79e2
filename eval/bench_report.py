"""Size and write time of ``arssr upsample --report`` pages for whole heads, and the rebuild time of a cohort index.

Pages: each input is super-resolved once with the shipped model (``upsample(details=True)``, not
timed), then its page is written ``--repeats`` times (``arssr.report.write_report``: the slices, PNGs and
HTML, written atomically); the median time and the page's size are reported, and a screenshot of the
template's page in headless Chromium is saved where the browser is installed.
Index: ``--pages`` real pages (the first input's pictures, each page with facts of its own: names, times,
a warning on every tenth) are written to a folder, and ``arssr.report.write_index`` rebuilds the index
``--repeats`` times; ``arssr report FOLDER`` is timed once as a command (Python start-up and imports included).

Inputs: the MNI152 example (3 mm, x3.2) and, where present, ds000031 sub-01 (a whole head with face and
neck, 192 x 256 x 256 at 0.9-0.94 mm) taken to 3x coarser by k-space truncation, then x3.

Usage: python eval/bench_report.py [--out eval/results/report] [--threads 1] [--pages 100] [--repeats 3]
                                  [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from arssr.files import atomic_file
from arssr.inference import example_volume_path, upsample
from arssr.models import default_model_path, file_sha256, load_model
from arssr.report import render_page, run_facts, write_index, write_report
from arssr.report_images import render_images
from arssr.simulate import simulate_lr
from arssr.volume import Volume, load_volume

DS000031 = Path("/work/shared/data/ds000031_sub-01_T1w.nii.gz")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def cases() -> list[tuple[str, object, float]]:
    """``(name, input volume, scale)`` of each whole head."""
    out = [("mni152_example_x3.2", load_volume(example_volume_path()), 3.2)]
    if DS000031.exists():
        out.append(("ds000031_sub-01_kspace3_x3", simulate_lr(load_volume(DS000031), 3.0, "kspace"), 3.0))
    return out


def super_resolved(name: str, source: Volume, model, scale: float, cache: Path):
    """``(result, residual, gain, seconds)`` of ``source`` at ``scale`` as ``arssr upsample`` computes them, kept in
    ``cache`` for the next run (the SR is not what this measures)."""
    stored = cache / f"{name}.npz"
    if stored.exists():
        saved = np.load(stored)
        result = Volume(saved["result"], saved["affine"], source.header)
        return result, saved["residual"], float(saved["gain"]), float(saved["seconds"])
    start = time.perf_counter()
    upsampled = upsample(source, model, scale=scale, device="cpu", details=True)
    result, residual, gain = upsampled.volume, upsampled.residual, upsampled.gain
    seconds = time.perf_counter() - start
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(stored, result=result.data, affine=result.affine, residual=residual, gain=gain, seconds=seconds)
    return result, residual, gain, seconds


def record_of(name: str, source, result, gain, seconds: float, warnings: list[str]) -> dict:
    """A sidecar record as ``arssr upsample`` writes it."""
    return {
        "arssr_version": "bench", "input": f"{name}.nii.gz", "output": f"{name}_sr.nii.gz",
        "weights": str(default_model_path()), "weights_sha256": file_sha256(default_model_path()),
        "output_shape": list(result.shape), "spacing_mm": [round(s, 6) for s in result.spacing], "device": "cpu",
        "precision": "fp32", "consistency": "kspace", "detail_gain": gain, "detail_gain_fitted": True,
        "slice_thickness": None, "slice_profile": None, "adapt": None, "tile": None, "seconds": round(seconds, 3),
        "warnings": warnings, "peak_memory_mib": None, "arguments": ["upsample", f"{name}.nii.gz"],
    }


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def screenshot(page: Path, png: Path) -> bool:
    """A 1400 x 1000 screenshot of ``page`` in headless Chromium, in 256 colours; False where it is not installed."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                        "--window-size=1400,1000", page.as_uri()], check=True, capture_output=True, timeout=120)
    Image.open(png).convert("RGB").quantize(256).save(png, optimize=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="eval/results/report")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "arssr_bench_report"),
                        help="folder that keeps the SR results between runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(None)
    results = {"cpu": cpu_name(), "threads": args.threads,
               "torch": torch.__version__, "pages": []}
    work = Path(tempfile.mkdtemp(prefix="bench_report_"))
    first = None
    for name, source, scale in cases():
        result, residual, gain, seconds = super_resolved(name, source, model, scale, Path(args.cache))
        record = record_of(name, source, result, gain, seconds, [])
        page = work / f"{name}.html"
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            write_report(page, source, result, residual, record, model.card, overwrite=True)
            times.append(time.perf_counter() - start)
        entry = {"case": name, "input_shape": list(source.shape), "output_shape": list(result.shape),
                 "sr_seconds": round(seconds, 1), "page_bytes": page.stat().st_size,
                 "write_seconds_median": round(statistics.median(times), 3),
                 "write_seconds": [round(t, 3) for t in times]}
        if first is None and screenshot(page, out / f"{name}.png"):  # the template only: no real person's face
            entry["screenshot"] = f"{name}.png"
        results["pages"].append(entry)
        print(json.dumps(entry), file=sys.stderr)
        if first is None:
            first = (name, source, result, residual, record)

    name, source, result, residual, record = first
    pictures = render_images(source, result, residual, run_facts(source, result, record, model.card))
    cohort = work / "cohort"
    cohort.mkdir()
    for i in range(args.pages):
        warnings = ["input voxel size outside the card's range (bench)"] if i % 10 == 0 else []
        facts = run_facts(source, result, record_of(f"sub-{i:03d}", source, result, record["detail_gain"], 60.0 + i,
                                                    warnings), model.card)
        with atomic_file(cohort / f"sub-{i:03d}_sr.html") as handle:
            handle.write(render_page(facts, pictures).encode("utf-8"))
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        _, rows = write_index(cohort)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    subprocess.run(["arssr", "report", str(cohort)], check=True, capture_output=True)
    command = time.perf_counter() - start
    results["index"] = {"pages": rows, "page_bytes_total": sum(p.stat().st_size for p in cohort.glob("sub-*.html")),
                        "index_bytes": (cohort / "index.html").stat().st_size,
                        "rebuild_seconds_median": round(statistics.median(times), 3),
                        "rebuild_seconds": [round(t, 3) for t in times],
                        "arssr_report_command_seconds": round(command, 3)}
    print(json.dumps(results["index"]), file=sys.stderr)
    screenshot(cohort / "index.html", out / "index.png")
    (out / "bench_report.json").write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
