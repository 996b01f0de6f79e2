"""``arssr info``: key facts of a volume, a model file or an ``.arssr`` file."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    """Print the file's facts, one per line."""
    from arssr.info import describe

    for line in describe(Path(args.file)):
        print(line)
    return 0


def add_parser(sub) -> None:
    """The ``info`` command's options."""
    info = sub.add_parser("info", help="key facts of a volume, a model file or an .arssr file")
    info.add_argument("file", help="a NIfTI volume, a weights file or an .arssr file")
    info.set_defaults(func=run)
