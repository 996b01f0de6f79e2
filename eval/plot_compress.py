"""Rate-distortion plot of ``eval/bench_compress.py`` records: PSNR against the real bpp, one panel per volume
and PSNR kind (whole volume, inside the foreground mask), one line per method.

Panels start 8 dB below SPERR's lowest point: slice codecs far below it at the lowest rates are cut off there
(the table has their values). A stream more than 10 % above its target rate (a codec that cannot get down to
it) is left out of the plot; the table shows it with its real bpp.

Usage: python eval/plot_compress.py RECORDS.json [MORE.json ...] -o curves.png [--table curves.md]
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: Line labels of the methods.
LABELS = {
    "sperr": "SPERR", "jpeg2000": "JPEG 2000 (slices)", "jpegxl": "JPEG XL (slices)",
    "arssr": "arssr, SIREN LR", "arssr-sperr": "arssr, SPERR LR", "arssr-auto": "arssr --auto",
    "single-siren": "single SIREN", "arssr-finetuned": "arssr, SIREN LR, end to end",
}
PANELS = (("psnr", "whole volume"), ("psnr_mask", "inside the mask"))
#: dB shown below the reference codec's lowest point.
MARGIN_DB = 8.0
#: Real rate above the target, as a share of it, beyond which a point is not plotted.
PLOT_OVERSHOOT = 0.1


def load_records(paths) -> list[dict]:
    """Every record of ``paths``; the later file wins for a repeated (volume, method, target bpp)."""
    found = {}
    for path in paths:
        for row in json.loads(Path(path).read_text()):
            found[(row["volume"], row["method"], row.get("target_bpp", row["bpp"]))] = row
    return list(found.values())


def curves(records: list[dict]) -> dict:
    """``{volume: {method: rows sorted by bpp}}``, without the lossless rows."""
    grouped = defaultdict(lambda: defaultdict(list))
    for row in records:
        if row["method"] != "zstd-lossless":
            grouped[row["volume"]][row["method"]].append(row)
    order = {method: rank for rank, method in enumerate(LABELS)}
    return {volume: {method: sorted(methods[method], key=lambda r: r["bpp"])
                     for method in sorted(methods, key=lambda m: order.get(m, len(order)))}
            for volume, methods in grouped.items()}


def plot(grouped: dict, path: Path) -> None:
    volumes = sorted(grouped)
    fig, axes = plt.subplots(len(volumes), len(PANELS), figsize=(5.5 * len(PANELS), 4 * len(volumes)),
                             squeeze=False)
    for row_axes, volume in zip(axes, volumes):
        for ax, (key, where) in zip(row_axes, PANELS):
            for method, rows in grouped[volume].items():
                rows = [r for r in rows if r["bpp"] <= (1 + PLOT_OVERSHOOT) * r.get("target_bpp", r["bpp"])]
                ax.plot([r["bpp"] for r in rows], [r[key] for r in rows], marker="o", ms=3,
                        label=LABELS.get(method, method))
            reference = grouped[volume].get("sperr")
            if reference:
                ax.set_ylim(bottom=min(r[key] for r in reference) - MARGIN_DB)
            ax.set_xscale("log")
            ax.set_xlabel("bits per voxel (real bytes)")
            ax.set_ylabel("PSNR (dB)")
            ax.set_title(f"{volume}, {where}")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(grouped: dict) -> str:
    """Markdown: per volume and target bpp, each method's bpp and PSNR whole / in mask."""
    lines = []
    for volume in sorted(grouped):
        methods = list(grouped[volume])
        lines += [f"\n{volume}: PSNR dB whole / in mask (real bpp)\n",
                  "| target bpp | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        targets = sorted({r.get("target_bpp", r["bpp"]) for rows in grouped[volume].values() for r in rows})
        for target in targets:
            cells = []
            for method in methods:
                row = next((r for r in grouped[volume][method] if r.get("target_bpp", r["bpp"]) == target), None)
                cells.append("-" if row is None else
                             f"{row['psnr']:.2f} / {row['psnr_mask']:.2f} ({row['bpp']:.3f})")
            lines.append(f"| {target:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines).lstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+")
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--table", type=Path)
    args = parser.parse_args()
    grouped = curves(load_records(args.records))
    plot(grouped, args.output)
    text = table(grouped)
    print(text, end="")
    if args.table:
        args.table.write_text(text)


if __name__ == "__main__":
    main()
