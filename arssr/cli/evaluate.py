"""``arssr evaluate``: simulate LR inputs (or take given ones), upsample them with every method, score them."""

from __future__ import annotations

import argparse
import sys

from arssr.cli.options import UsageError, names, output_path, parse_numbers, positive_int, usage_errors
from arssr.protocol import DEFAULT_DEGRADATIONS, DEFAULT_SCALES, METHODS, SLICE_AXES, SLICE_PROFILES


def thick_slices(args: argparse.Namespace) -> list:
    """The thick-slice cases of ``evaluate``: every ``--slice-thickness`` along every ``--slice-axis``."""
    from arssr.simulate import ThickSlices

    if args.slice_thickness is None:
        if args.slice_axis or args.slice_profile or args.slice_gap is not None:
            raise UsageError("--slice-axis, --slice-profile and --slice-gap need --slice-thickness")
        return []
    if args.scales is not None or args.degradations is not None:
        raise UsageError("--slice-thickness replaces --scales and --degradations: give one protocol or the other")
    axes = range(3) if args.slice_axis in (None, "all") else [int(args.slice_axis)]
    thicknesses = parse_numbers(args.slice_thickness, "--slice-thickness")
    gap = args.slice_gap or 0.0
    return [ThickSlices(t, axis, args.slice_profile or "boxcar", gap) for axis in axes for t in thicknesses]


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and write its results."""
    from arssr.evaluation.runner import check_protocol, run_evaluation

    slices = thick_slices(args)
    scales = parse_numbers(",".join(f"{s:g}" for s in DEFAULT_SCALES) if args.scales is None else args.scales,
                           "--scales")
    degradations = names(",".join(DEFAULT_DEGRADATIONS) if args.degradations is None else args.degradations)
    methods = names(args.methods)
    for option, given in (("--degradations", degradations), ("--methods", methods)):
        if not given:
            raise UsageError(f"{option} takes comma-separated names, got none")
    with usage_errors():
        check_protocol(scales, degradations, slices, methods)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_evaluation(
        args.gt, args.output_dir, lr=args.lr, atlas=args.atlas, scales=scales,
        degradations=degradations, methods=methods, lpips=not args.no_lpips, slices=slices,
        sharpness=not args.no_psi,
        dice=not args.no_dice, figures=not args.no_figures, device=args.device, tile=args.tile,
        overwrite=args.overwrite, log=None if args.quiet else (lambda line: print(line, file=sys.stderr)),
    )
    if not args.quiet:
        print(f"results in {args.output_dir}: results.csv, results.json, results.md"
              + ("" if args.no_figures else ", figures/"), file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    """The ``evaluate`` command's options."""
    ev = sub.add_parser("evaluate", help="score SR methods against ground truths (PSNR, SSIM, LPIPS, PSI, Dice)",
                        description=(
        "Simulate LR inputs from ground-truth volumes (or take given LR/HR pairs), upsample them back with every "
        "method on the aligned grid, and write results.csv, results.json, results.md and PNG figures."))
    ev.add_argument("--gt", nargs="+", required=True, metavar="FILE", help="ground-truth (HR) NIfTI volumes")
    ev.add_argument("--lr", nargs="+", metavar="FILE", help="LR inputs paired in order with --gt (no simulation)")
    ev.add_argument("--atlas", nargs="+", metavar="FILE",
                    help="AAL label maps on each ground truth's grid: Dice also for deep GM and cerebellum")
    ev.add_argument("--scales", help="comma-separated scales (default: "
                    + ",".join(f"{s:g}" for s in DEFAULT_SCALES) + ")")
    ev.add_argument("--degradations", help="comma-separated LR simulations: kspace, cubic, lanczos, gaussian "
                    "(default: " + ",".join(DEFAULT_DEGRADATIONS) + ")")
    ev.add_argument("--slice-thickness", metavar="MM[,MM...]", help=(
        "thick-slice protocol instead of --scales/--degradations: LR made of slices this thick (mm) along "
        "--slice-axis, the other axes untouched; use method arssr+dc:slice for the slice-model consistency"))
    ev.add_argument("--slice-axis", choices=SLICE_AXES, help="array axis of the slices, or all (default: all)")
    ev.add_argument("--slice-profile", choices=SLICE_PROFILES, help="slice profile (default: boxcar)")
    ev.add_argument("--slice-gap", type=float, metavar="MM", help=(
        "gap between the slices (mm): slices every thickness + gap mm (default: 0, contiguous)"))
    ev.add_argument("--methods", default=",".join(METHODS), help=(
        "comma-separated methods: " + ", ".join(METHODS) + ", a weights file (.safetensors or the official "
        ".pkl/.pt), or NAME=FILE (default: all)"))
    ev.add_argument("-o", "--output-dir", type=output_path, required=True, help="folder for the results and figures/")
    ev.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    ev.add_argument("--no-psi", action="store_true", help="skip PSI (no-reference sharpness)")
    ev.add_argument("--no-dice", action="store_true", help="skip the ANTs Atropos segmentation and Dice")
    ev.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N for models and LPIPS")
    ev.add_argument("--tile", type=positive_int, help="LR tile edge for models (default: chosen from free memory)")
    ev.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    ev.add_argument("--overwrite", "--force", action="store_true", help="replace existing results")
    ev.add_argument("-q", "--quiet", action="store_true", help="no per-case lines")
    ev.set_defaults(func=run)
