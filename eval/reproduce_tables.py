"""The paper's Table 1, 2 and 4 protocol on Colin27 ``ch2bet`` (held out): every method at every scale.

LR inputs are simulated from the ground truth by k-space truncation (an MR
acquisition at lower resolution) and by the paper's cubic downsampling, at
x2, 2.5, 3, 3.5 and 4. Each is upsampled back by every baseline and the
shipped model, then scored with PSNR (whole volume and brain mask), 3D SSIM,
slice-wise LPIPS (when its weights can be loaded) and ANTs Atropos Dice per
tissue, with deep grey matter and cerebellum from the AAL atlas drawn on
this brain. Table 2's protocol (x2, 3, 4 on a second dataset) is the same
command with ``--scales 2,3,4`` on other ground truths.

Get the data with ``eval/get_data.sh templates`` (or ``apt-get install mricron-data``); the templates are looked
for in ``$TEMPLATES``, else under ``$ARSSR_DATA`` (default ``~/.cache/arssr``) where that script puts them.
Usage: python eval/reproduce_tables.py [--out eval/results/colin27] [any `arssr evaluate` option]
Writes OUT/results.{csv,json,md} and OUT/figures/.
"""

import os
import sys
from pathlib import Path

from arssr.cli import main

TEMPLATES = Path(os.environ.get("TEMPLATES") or Path(os.environ.get("ARSSR_DATA") or Path.home() / ".cache/arssr")
                 / "mricron/usr/share/mricron/templates")


def arguments(argv: list[str]) -> list[str]:
    """``arssr evaluate`` arguments: Colin27 with its AAL atlas unless ``--gt`` is given, ``--out`` as ``-o``."""
    argv = list(argv)
    out = "eval/results/colin27"
    if "--out" in argv:
        index = argv.index("--out")
        out = argv[index + 1]
        del argv[index:index + 2]
    if "--gt" not in argv:
        if not (TEMPLATES / "ch2bet.nii.gz").exists():
            sys.exit(f"Colin27 not found in {TEMPLATES}: run eval/get_data.sh templates (see docs/data.md)")
        argv = ["--gt", str(TEMPLATES / "ch2bet.nii.gz"), "--atlas", str(TEMPLATES / "aal.nii.gz"), *argv]
    return ["evaluate", *argv, "-o", out]


if __name__ == "__main__":
    sys.exit(main(arguments(sys.argv[1:])))
