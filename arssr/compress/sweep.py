"""The trade-off-point search of the ``paper-2025`` preset's paper (README section Compression): compress one
volume over DS x SIREN width and pick the balance.

Every point is a real file (rate from its bytes). The score of that paper's
eq. 7 is ``1 / PSNR + (1 - SSIM) + (1 - CR)`` with ``CR = 1 - file bytes /
raw bytes`` (the file's rate in place of the paper's parameter count); the
trade-off point is the setting with the lowest score. 1 / PSNR is small
(0.025 at 40 dB) next to the other two terms, so the score mostly trades
SSIM against size, as in the paper.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import replace
from pathlib import Path

import torch

from arssr.compress.api import compress_volume
from arssr.compress.config import CompressionConfig
from arssr.errors import InputError, OutputError
from arssr.files import atomic_file, atomic_folder, refuse_existing
from arssr.volume import Volume

COLUMNS = ("scale", "width", "depth", "siren_params", "bytes", "bpp", "compression_ratio", "paper_cr", "psnr", "ssim",
           "score", "encode_s", "decode_s")


def score(record: dict) -> float:
    """The paper's eq. 7 at one point: ``1/PSNR + 1 - |SSIM| + (1 - CR)``."""
    return 1 / record["psnr"] + 1 - abs(record["ssim"]) + record["bytes"] / record["raw_bytes"]


def sweep_configs(base: CompressionConfig, scales: list[float], widths: list[int]) -> list[CompressionConfig]:
    """``base`` at every (scale, width), each checked (``InputError`` for a value that cannot work), before any
    fitting."""
    if not scales or not widths:
        raise InputError("a sweep needs at least one scale and one width")
    return [replace(base, scale=scale, width=width) for scale in scales for width in widths]


def sweep(
    volume: Volume,
    base: CompressionConfig,
    scales: list[float],
    widths: list[int],
    sr_model: str | os.PathLike | None = None,
    time_budget: float | None = None,
    device: torch.device = torch.device("cpu"),
    progress: bool = False,
) -> list[dict]:
    """One record per (scale, width): rate, quality, score (lowest = the trade-off point, flagged ``best``)."""
    records = []
    for config in sweep_configs(base, scales, widths):
        _, report = compress_volume(volume, config, sr_model, time_budget=time_budget, device=device,
                                    progress=progress)
        record = {**report, "scale": config.scale, "width": config.width, "depth": config.depth}
        record["score"] = score(record)
        records.append(record)
    best = min(records, key=lambda r: r["score"])
    for record in records:
        record["best"] = record is best
    return records


def table_markdown(records: list[dict]) -> str:
    head = "| DS | width | params | bytes | bpp | ratio | paper CR | PSNR | SSIM | eq. 7 score | encode s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        mark = " **(trade-off point)**" if r.get("best") else ""
        lines.append(
            f"| 1/{r['scale']:g} | {r['width']} | {r['siren_params']} | {r['bytes']} | {r['bpp']:.3f} | "
            f"{r['compression_ratio']:.1f} | {100 * r['paper_cr']:.2f} % | {r['psnr']:.2f} | {r['ssim']:.4f} | "
            f"{r['score']:.4f}{mark} | {r['encode_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def table_csv(records: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*COLUMNS, "best"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def plot(records: list[dict], path: Path) -> None:
    """PSNR against bpp, one line per DS, the trade-off point circled."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone

    fig = Figure(figsize=(5, 3.6), dpi=120)
    ax = fig.subplots()
    for scale in sorted({r["scale"] for r in records}):
        points = sorted((r["bpp"], r["psnr"]) for r in records if r["scale"] == scale)
        ax.plot(*zip(*points), marker="o", label=f"DS 1/{scale:g}")
    best = next(r for r in records if r.get("best"))
    ax.scatter([best["bpp"]], [best["psnr"]], s=160, facecolors="none", edgecolors="k", label="trade-off point")
    ax.set_xlabel("bits per voxel (real file)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as handle:
        fig.savefig(handle, format="png")


def report_paths(folder: Path) -> list[Path]:
    """The files :func:`write_report` writes in ``folder``."""
    return [folder / "sweep.csv", folder / "sweep.md", folder / "sweep.png"]


def check_report_folder(folder: Path, overwrite: bool = False) -> None:
    """Refuse a report folder before any work: a file in its place, or report files there without ``overwrite``."""
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputError(f"{folder}: is a file; --sweep takes a folder")
    refuse_existing(report_paths(folder), overwrite)


def write_report(records: list[dict], folder: Path, overwrite: bool = False) -> list[Path]:
    """``sweep.csv``, ``sweep.md`` and ``sweep.png`` in ``folder``, written whole or not at all
    (``arssr.files.atomic_folder``)."""
    check_report_folder(folder, overwrite)
    with atomic_folder(folder) as staging:
        csv_path, markdown_path, plot_path = report_paths(staging)
        for path, text in ((csv_path, table_csv(records)), (markdown_path, table_markdown(records))):
            path.write_text(text)
        plot(records, plot_path)
    return report_paths(folder)
