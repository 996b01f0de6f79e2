"""``arssr compress`` and ``arssr decompress``: thin adapters over :mod:`arssr.compress`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from arssr.cli.options import (
    UsageError, check_nifti_output, check_outputs, output_path, parse_numbers, positive_float, positive_int, usage_errors,
)
from arssr.protocol import AUTO_SCALES, AUTO_SIREN_TIME_BUDGET, OUTPUT_DTYPES, SIREN_TIME_BUDGET


def _setup(args: argparse.Namespace):
    import torch

    from arssr.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device), not args.quiet and sys.stderr.isatty()


def _inputs(args: argparse.Namespace) -> list:
    from arssr.models import default_model_path

    return [args.input, args.decoder_weights or default_model_path()]


def cmd_compress(args: argparse.Namespace) -> int:
    from arssr.compress import compress, lr_codec, make_config

    if args.sweep:
        return _sweep(args)
    if not args.output:
        raise UsageError("give -o/--output FILE.arssr (or --sweep DIR)")
    options = {"scale": args.scale, "method": args.method, "width": args.width, "depth": args.depth,
               "steps": args.steps, "quant": args.quant, "finetune": "bias" if args.finetune_decoder else None,
               "lr_codec": args.lr_codec}
    predicted = {}
    if _predicted_default(args):
        from arssr.compress.predict import predicted_choice

        with usage_errors():
            predicted = predicted_choice(args.target_bpp)
        options["lr_codec"] = predicted["codecs"][0]  # a valid config for the checks; each candidate sets its own
    with usage_errors():
        config = make_config(args.preset, **options)
        _check_lr_codec_options(args, config)
    check_outputs([Path(p) for p in (args.output, args.json) if p], _inputs(args), args.overwrite)
    device, progress = _setup(args)
    time_budget = _announced_time_budget(args, config)
    report = compress(
        args.input, args.output, sr_model=args.decoder_weights, preset=args.preset, overwrite=args.overwrite,
        target_bpp=args.target_bpp, target_psnr=args.target_psnr, time_budget=time_budget, device=device,
        progress=progress, search_scale=args.scale is None, auto=args.auto or bool(predicted), **predicted, **options,
    )
    if not args.quiet:
        print(f"{args.output}: {report['bytes']} bytes, {report['bpp']:.4f} bpp, ratio {report['compression_ratio']:.1f}:1, "
              f"PSNR {report['psnr']:.2f} dB, SSIM {report['ssim'] or float('nan'):.4f}, {lr_codec.summary(report)}, "
              f"scale {report['config']['scale']:g}{_predicted_note(predicted)}, "
              f"{report['encode_s']:.1f} s"
              + ("" if report.get("finetune_kept", True) else "; end-to-end changes dropped (they decoded worse)"),
              file=sys.stderr)
    if args.json:
        from arssr.files import atomic_file

        with atomic_file(Path(args.json)) as handle:
            handle.write((json.dumps(report, indent=2) + "\n").encode())
    return 0


#: Options that only a SIREN uses: given with --target-bpp, they keep the SIREN at the preset's scale.
SIREN_OPTIONS = ("width", "depth", "steps", "quant", "time_budget")


def _predicted_default(args: argparse.Namespace) -> bool:
    """Whether the LR codec and scale are the predicted ones (``arssr.compress.predict``): a target bpp, the
    default preset, and none of --auto, --scale, --lr-codec, --finetune-decoder or a SIREN option."""
    return (args.target_bpp is not None and not args.auto and args.scale is None and args.lr_codec is None
            and args.preset == "paper-2025" and not args.finetune_decoder
            and all(getattr(args, name) is None for name in SIREN_OPTIONS))


def _predicted_note(predicted: dict) -> str:
    """What the summary line adds after the scale of the default for a target rate."""
    if not predicted:
        return ""
    first, second = predicted["scales"]
    return f" (the better of DS 1/{first:g} and 1/{second:g}, predicted for the rate)"


def siren_time_budget(args: argparse.Namespace, config) -> float | None:
    """Seconds per SIREN fit: ``--time-budget``; else, without ``--steps``,
    :data:`arssr.protocol.AUTO_SIREN_TIME_BUDGET` per candidate of ``--auto`` and
    :data:`arssr.protocol.SIREN_TIME_BUDGET` per SIREN encode (one, or each of ``--sweep``); else none."""
    if args.time_budget is not None or args.steps is not None:
        return args.time_budget
    if args.auto and not args.sweep:
        return AUTO_SIREN_TIME_BUDGET
    return SIREN_TIME_BUDGET if config.lr_codec == "siren" else None


def _announced_time_budget(args: argparse.Namespace, config) -> float | None:
    """:func:`siren_time_budget`, with one stderr line (not with ``-q``) when it is a default."""
    time_budget = siren_time_budget(args, config)
    if time_budget != args.time_budget and not args.quiet:
        print(f"SIREN fit: at most {time_budget:g} s (the default; --steps or --time-budget to change)",
              file=sys.stderr)
    return time_budget


def _check_lr_codec_options(args: argparse.Namespace, config) -> None:
    """``--lr-codec`` and ``--auto`` options checked before any work (``InputError``)."""
    from arssr.compress.search import check_options
    from arssr.errors import InputError

    if args.auto and (args.lr_codec is not None or args.scale is not None):
        raise InputError("--auto chooses the LR codec and the scale: drop --lr-codec and --scale")
    if args.auto or config.lr_codec != "siren":
        check_options(config, args.target_bpp, args.target_psnr, args.auto)


def _sweep(args: argparse.Namespace) -> int:
    from arssr.compress import make_config
    from arssr.compress.sweep import check_report_folder, sweep, sweep_configs, write_report
    from arssr.volume import load_volume

    scales = parse_numbers(args.sweep_scales, "--sweep-scales")
    widths = parse_numbers(args.sweep_widths, "--sweep-widths", int)
    with usage_errors():
        base = make_config(args.preset, method=args.method, depth=args.depth, steps=args.steps, quant=args.quant)
        sweep_configs(base, scales, widths)
    check_report_folder(Path(args.sweep), args.overwrite)
    device, progress = _setup(args)
    records = sweep(load_volume(args.input), base, scales, widths, sr_model=args.decoder_weights,
                    time_budget=_announced_time_budget(args, base), device=device, progress=progress)
    for path in write_report(records, Path(args.sweep), overwrite=args.overwrite):
        print(path, file=sys.stderr)
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from arssr.compress import decompress

    check_nifti_output(Path(args.output))
    check_outputs([Path(args.output)], _inputs(args), args.overwrite)
    device, progress = _setup(args)
    volume = decompress(args.input, args.output, sr_model=args.decoder_weights, device=device, progress=progress,
                        overwrite=args.overwrite, dtype=args.dtype)
    if not args.quiet:
        print(f"{args.output}  ({'x'.join(map(str, volume.shape))})", file=sys.stderr)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decoder-weights", help=(
        "SR model file used as the decoder (default: compress: the shipped default model; decompress: the "
        "shipped model the file names, else the default)"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    parser.add_argument("--overwrite", "--force", action="store_true", help="replace existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary line")


def add_parser(sub) -> None:
    """The ``compress`` and ``decompress`` commands' options."""
    from arssr.compress.lr_codec import lr_codec_names  # no torch: the parser is built for every command

    co = sub.add_parser("compress", help="compress a volume into an .arssr file", description=(
        "Downsample by --scale, code the LR volume (a SIREN, or SPERR with --lr-codec sperr) into an .arssr file. "
        "Decoding decodes the LR, then runs the SR model (--decoder-weights) back to the original grid. The file "
        "records the decoder's name and sha256 but does not contain it. With --target-bpp alone (no --scale, "
        "--lr-codec, --auto, --preset or SIREN option) SPERR codes the LR at the two factors around the one "
        "that leaves it a fixed number of bits per LR voxel, and the better file is kept "
        "(arssr.compress.predict)."))
    co.add_argument("input", metavar="INPUT", help="a 3D NIfTI volume")
    co.add_argument("-o", "--output", type=output_path, help="the .arssr file to write")
    co.add_argument("--preset", default="paper-2025", help="paper-2025 (default), paper-2023 or fast")
    target = co.add_mutually_exclusive_group()
    target.add_argument("--target-bpp", type=positive_float, help="largest file size in bits per HR voxel (sets the width)")
    target.add_argument("--target-psnr", type=positive_float, help="PSNR in dB to reach with the smallest SIREN tried")
    co.add_argument("--scale", type=float, help="downsampling factor (1 = SIREN on the full grid, no SR model)")
    co.add_argument("--method", choices=["kspace", "lanczos"], help="downsampling")
    co.add_argument("--width", type=int, help="SIREN neurons per layer (at most 4096; fitting needs about "
                                             "16 bytes x width x depth x min(262144, voxels), refused beyond the "
                                             "free memory)")
    co.add_argument("--depth", type=int, help="SIREN sine layers (at most 32)")
    co.add_argument("--steps", type=int, help="most optimisation steps")
    co.add_argument("--quant", help="weights: fp32, fp16 or int2 .. int8 (per-tensor)")
    co.add_argument("--time-budget", type=positive_float,
                    help=f"seconds of fitting at most (per fit); with neither --steps nor --time-budget a SIREN fit "
                         f"stops at {SIREN_TIME_BUDGET:g} s, a SIREN candidate of --auto at "
                         f"{AUTO_SIREN_TIME_BUDGET:g} s")
    co.add_argument("--lr-codec", choices=lr_codec_names(),
                    help="what codes the LR volume: a SIREN, or another LR codec (arssr.compress.lr_codec; sperr: SPERR "
                         "wavelets), sized by --target-bpp; default siren, or with --target-bpp alone SPERR at two "
                         "predicted scales, the better kept")
    co.add_argument("--auto", action="store_true",
                    help=f"with --target-bpp: try each LR codec at scales {', '.join(f'{s:g}' for s in AUTO_SCALES)} "
                         "and keep the file that decodes closest to the input (PSNR); every candidate's score goes "
                         "into the file and the report")
    co.add_argument("--finetune-decoder", action="store_true",
                    help="end to end: train the SR model's biases with the SIREN on this volume for the last 30 %% of "
                         "the steps or time, one random block of 24^3 LR voxels a step; their changes go into "
                         "the file (and count in its size)")
    co.add_argument("--json", type=output_path, help="write the report (rate, PSNR, SSIM, times, settings) to this JSON file")
    co.add_argument("--sweep", type=output_path, metavar="DIR", help="run the trade-off sweep instead and write its table and plot here")
    co.add_argument("--sweep-scales", default="2,4", help="downsampling factors of the sweep (default: 2,4)")
    co.add_argument("--sweep-widths", default="30,70,110", help="SIREN widths of the sweep (default: 30,70,110)")
    _common(co)
    co.set_defaults(func=cmd_compress)

    de = sub.add_parser("decompress", help="decode an .arssr file to NIfTI")
    de.add_argument("input", metavar="IN.arssr", help="a file written by arssr compress")
    de.add_argument("-o", "--output", type=output_path, required=True, help="the NIfTI file to write")
    de.add_argument("--dtype", default="input", choices=OUTPUT_DTYPES,
                    help="output data type (default: input, the original's)")
    _common(de)
    de.set_defaults(func=cmd_decompress)
