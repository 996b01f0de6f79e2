"""``arssr report``: rebuild the cohort index of a folder of report pages (and sidecars); and the report options of
``arssr upsample`` (``--report``, ``--report-dir``)."""

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


def add_upsample_options(parser) -> None:
    """``--report`` and ``--report-dir`` of ``arssr upsample``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--report", metavar="FILE.html", help=(
        "write a self-contained HTML page of the run (one input): slices of the input, its cubic interpolation "
        "and the output, their difference, the consistency residual, the run's facts and flags (needs matplotlib)"))
    group.add_argument("--report-dir", metavar="DIR", help=(
        "write one such page per output, DIR/<output name>.html, and DIR/index.html of every page in DIR"))


def plan_pages(args: argparse.Namespace, todo: list[tuple[Path, Path]], batch: bool,
               protected: list[Path]) -> dict[Path, Path]:
    """Each output's report page, checked before any work like the other outputs: not an input, an output or a
    sidecar (``protected``), named ``.html``, and existing only with ``--overwrite`` (or ``--skip-existing`` when
    its volume is missing); ``{}`` without a report option."""
    from arssr.cli.options import stem
    from arssr.files import check_output
    from arssr.report import INDEX_NAME, require_imaging

    if args.report and batch:
        raise UsageError("--report FILE.html takes one input; use --report-dir for several")
    if args.report:
        pages = {target: Path(args.report) for _, target in todo}
    elif args.report_dir:
        pages = {target: Path(args.report_dir) / f"{stem(target)}.html" for _, target in todo}
        if len(set(pages.values())) != len(pages):
            raise UsageError("two outputs of the same name would write the same report page; use distinct names")
    else:
        return {}
    resolved = {path.resolve() for path in protected}
    for target, page in pages.items():
        if page.suffix.lower() != ".html":
            raise UsageError(f"{page}: a report must end in .html")
        if args.report_dir and page.name == INDEX_NAME:
            raise UsageError(f"{target}: its report page would be the folder's {INDEX_NAME}; rename the output")
        if page.resolve() in resolved:
            raise UsageError(f"{page}: the report would replace an input or an output; choose another name")
        if not target.exists():  # as its sidecar: pages of existing outputs are skipped, replaced or refused later
            check_output(page, args.overwrite or args.skip_existing, protected)
    require_imaging()
    return pages


def write_page(page: Path, source, result, residual, record: dict, card: dict, overwrite: bool) -> bool:
    """Write one run's page after its volume is safe; a failure is one ``error:`` line (the volume stays)."""
    from arssr.report import write_report

    try:
        write_report(page, source, result, residual, record, card, overwrite)
    except Exception as err:  # the volume is written: no error of the report may end the batch or lose it
        print(f"error: {page}: report not written ({err}); {record['output']} is written", file=sys.stderr)
        return False
    return True


def rebuild_index(folder: str) -> bool:
    """``upsample --report-dir``'s index of the pages present (each shard rebuilds it; none while the folder has
    no page, as when every file failed or was skipped); a failure is one line."""
    from arssr.report import index_entries, write_index

    try:
        if Path(folder).is_dir() and index_entries(folder):
            write_index(folder)
    except Exception as err:  # as for pages: the volumes are written
        print(f"error: {folder}: report index not written ({err}); rebuild it with arssr report {folder}",
              file=sys.stderr)
        return False
    return True
