"""``arssr report``: rebuild the cohort index of a folder of report pages (and sidecars)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arssr.cli.options import UsageError


def run(args: argparse.Namespace) -> int:
    """Write ``FOLDER/index.html`` from the pages and sidecars present."""
    from arssr.report import write_index

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    path, rows = write_index(folder, args.overwrite)
    print(f"{path}  ({rows} files)", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    """The ``report`` command's options."""
    report = sub.add_parser("report", help="rebuild the index of a folder of upsample reports", description=(
        "Rebuild FOLDER/index.html, one row per report page (arssr upsample --report-dir) and per sidecar "
        "without a page: a thumbnail, the flags, the time and a link to the page. Run it after the shards of "
        "a batch have finished; an earlier index is replaced."))
    report.add_argument("folder", metavar="FOLDER", help="a folder of report pages or sidecars")
    report.add_argument("--overwrite", action="store_true", help="replace an index.html that arssr did not write")
    report.set_defaults(func=run)
