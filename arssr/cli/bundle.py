"""``arssr export-bundle``: a model as a MONAI bundle."""

from __future__ import annotations

import argparse
import sys

from arssr.cli.options import output_path


def run(args: argparse.Namespace) -> int:
    """Write the bundle."""
    from arssr.bundle import export_bundle

    folder = export_bundle(args.folder, args.weights, overwrite=args.overwrite)
    if not args.quiet:
        print(f"bundle written to {folder}; run it with: python -m monai.bundle run --bundle_root {folder} "
              f"--config_file {folder}/configs/inference.json --input_file LR --output_file SR --scale K",
              file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    """The ``export-bundle`` command's options."""
    bundle = sub.add_parser("export-bundle", help="write a model as a MONAI bundle", description=(
        "Write a MONAI bundle (configs/metadata.json, configs/inference.json, models/, docs/README.md) that "
        "`python -m monai.bundle run` runs exactly as `arssr upsample`."))
    bundle.add_argument("folder", type=output_path, metavar="DIR", help="bundle folder (created if missing)")
    bundle.add_argument("--weights", help="arssr .safetensors model file (default: the shipped model)")
    bundle.add_argument("--overwrite", "--force", action="store_true", help="replace an existing bundle's files")
    bundle.add_argument("-q", "--quiet", action="store_true", help="no closing line")
    bundle.set_defaults(func=run)
