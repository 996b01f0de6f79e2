"""The ``arssr`` command. Each subcommand is a thin adapter over the Python API.

Heavy imports (torch, nibabel) happen inside the commands so ``arssr --help`` is instant.
Exit codes: 0 success, 1 an input or file could not be processed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from arssr import __version__

SUFFIXES = (".nii.gz", ".nii")


class UsageError(Exception):
    """Options that do not fit together (exit code 2)."""


def _stem(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def expand_inputs(items: list[str]) -> tuple[list[Path], bool]:
    """Files, one folder, or one ``.txt`` list of paths -> ``(paths, is_batch)``. Mixing kinds is a usage error."""
    paths = [Path(item) for item in items]
    folders = [p for p in paths if p.is_dir()]
    lists = [p for p in paths if p.suffix.lower() == ".txt"]
    if (folders or lists) and len(paths) > 1:
        raise UsageError("give one folder, one .txt list, or any number of files, not a mix")
    if folders:
        found = sorted(p for p in folders[0].iterdir() if p.name.lower().endswith(SUFFIXES) and not p.name.startswith("."))
        if not found:
            raise UsageError(f"{folders[0]}: no .nii or .nii.gz files in this folder")
        return found, True
    if lists:
        if not lists[0].is_file():
            raise UsageError(f"{lists[0]}: list file not found")
        base = lists[0].parent
        entries = [line.strip() for line in lists[0].read_text().splitlines()]
        found = [(base / e) if not Path(e).is_absolute() else Path(e) for e in entries if e and not e.startswith("#")]
        if not found:
            raise UsageError(f"{lists[0]}: the list names no files")
        return found, True
    return paths, len(paths) > 1


def plan_outputs(inputs: list[Path], batch: bool, output: str | None, output_dir: str | None, suffix: str) -> list[Path]:
    """One output path per input: ``-o FILE`` for one input, else ``DIR/<stem><suffix>.nii.gz``."""
    if output and output_dir:
        raise UsageError("give -o/--output or --output-dir, not both")
    if output and not batch and not Path(output).is_dir():
        return [Path(output)]
    folder = Path(output or output_dir) if (output or output_dir) else None
    outs = [(folder or p.parent) / f"{_stem(p)}{suffix}.nii.gz" for p in inputs]
    if len(set(outs)) != len(outs):
        raise UsageError("two inputs would write the same output file; use distinct names")
    return outs


def _sidecar_path(output: Path) -> Path:
    return output.with_name(_stem(output) + ".json")


def _write_sidecar(output: Path, record: dict) -> None:
    from arssr.files import atomic_file

    with atomic_file(_sidecar_path(output)) as handle:
        handle.write((json.dumps(record, indent=2) + "\n").encode())


def cmd_upsample(args: argparse.Namespace) -> int:
    import torch

    from arssr.errors import ArssrError
    from arssr.geometry import check_scale, parse_triple
    from arssr.inference import example_volume_path, resolve_device, upsample
    from arssr.models import default_model_path, file_sha256, load_model
    from arssr.volume import save_volume

    if args.example:
        if args.inputs:
            raise UsageError("--example takes no INPUT")
        inputs, batch = [example_volume_path()], False
        if not (args.output or args.output_dir):
            args.output_dir = "."
    elif not args.inputs:
        raise UsageError("give at least one INPUT (file, folder or .txt list) or --example")
    else:
        inputs, batch = expand_inputs(args.inputs)
    outputs = plan_outputs(inputs, batch, args.output, args.output_dir, args.suffix)
    if args.scale is not None:
        check_scale(parse_triple(args.scale, "scale"))
    if args.tile is not None and args.tile < 1:
        raise UsageError(f"--tile must be a positive number of voxels, got {args.tile}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load_model(args.weights)
    weights = Path(args.weights) if args.weights else default_model_path()
    weights_sha = file_sha256(weights)
    progress = not args.quiet and sys.stderr.isatty()
    failed, skipped, done = [], 0, 0
    for source, target in zip(inputs, outputs):
        if target.exists() and args.skip_existing:
            skipped += 1
            continue
        if target.exists() and not args.overwrite:
            failed.append(source)
            print(f"error: {target}: exists (use --overwrite to replace it or --skip-existing)", file=sys.stderr)
            continue
        try:
            start = time.perf_counter()
            result = upsample(
                source, model, scale=args.scale, voxel_size=args.voxel_size, tile=args.tile,
                device=device, precision=args.precision, progress=progress,
            )
            save_volume(result, target, overwrite=args.overwrite, dtype=args.dtype)
        except ArssrError as err:
            failed.append(source)
            print(f"error: {err}", file=sys.stderr)
            continue
        done += 1
        elapsed = time.perf_counter() - start
        if not args.no_sidecar:
            _write_sidecar(target, {
                "arssr_version": __version__, "input": str(source), "output": str(target),
                "weights": str(weights), "weights_sha256": weights_sha, "output_shape": list(result.shape),
                "spacing_mm": [round(s, 6) for s in result.spacing], "device": str(device),
                "precision": args.precision, "tile": args.tile, "seconds": round(elapsed, 3),
                "arguments": sys.argv[1:],
            })
        if not args.quiet:
            shape = "x".join(map(str, result.shape))
            print(f"{target}  ({shape}, {elapsed:.1f} s)", file=sys.stderr)
    if batch:
        print(f"{done} written, {skipped} skipped, {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_info(args: argparse.Namespace) -> int:
    from arssr.info import describe

    for line in describe(Path(args.file)):
        print(line)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from arssr.training import cli_config, train

    flags = {"data": args.data, "out": args.out, "device": args.device, "amp": args.amp, "seed": args.seed,
             "threads": args.threads, "deterministic": args.deterministic or None}
    overrides = [*args.overrides, {key: value for key, value in flags.items() if value is not None}]
    print(train(cli_config(args.config, overrides, args.resume, args.out), resume=args.resume))
    return 0


def parse_numbers(text: str, option: str, kind: type = float) -> list:
    """A non-empty comma-separated list of numbers for ``option``; anything else is a usage error."""
    try:
        values = [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not values:
        raise UsageError(f"{option} takes comma-separated numbers, got none")
    return values


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from arssr.report import run_evaluation

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_evaluation(
        args.gt, args.output_dir, lr=args.lr, atlas=args.atlas, scales=parse_numbers(args.scales, "--scales"),
        degradations=_names(args.degradations), methods=_names(args.methods), lpips=not args.no_lpips,
        sharpness=not args.no_psi,
        dice=not args.no_dice, figures=not args.no_figures, device=args.device, tile=args.tile,
        overwrite=args.overwrite, log=None if args.quiet else (lambda line: print(line, file=sys.stderr)),
    )
    if not args.quiet:
        print(f"results in {args.output_dir}: results.csv, results.json, results.md"
              + ("" if args.no_figures else ", figures/"), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arssr", description="Arbitrary-scale super-resolution of 3D medical volumes.")
    parser.add_argument("--version", action="version", version=f"arssr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("upsample", help="super-resolve NIfTI volumes", description=(
        "Super-resolve 3D NIfTI volumes. The field of view is kept: n voxels at scale k give round(n*k) voxels, "
        "output voxel i sits at input voxel (i + 0.5) n/m - 0.5."))
    up.add_argument("inputs", nargs="*", metavar="INPUT", help="NIfTI files, one folder, or one .txt list of paths")
    up.add_argument("--example", action="store_true", help="upsample the sample volume shipped with arssr")
    size = up.add_mutually_exclusive_group(required=True)
    size.add_argument("--scale", help="scale factor, one value or three (e.g. 3.2 or 1,1,4); each >= 1")
    size.add_argument("--voxel-size", help="target voxel size in mm, one value or three (e.g. 0.7 or 0.7,0.7,1)")
    up.add_argument("-o", "--output", help="output file (one input) or folder")
    up.add_argument("--output-dir", help="folder for the outputs, each named <input><suffix>.nii.gz")
    up.add_argument("--suffix", default="_sr", help="added to input names in a folder of outputs (default: _sr)")
    up.add_argument("--weights", help="model file (.safetensors, or the official .pkl/.pt); default: the shipped model")
    up.add_argument("--tile", type=int, help="LR tile edge in voxels (default: chosen from free memory)")
    up.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    up.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast precision")
    up.add_argument("--threads", type=int, help="CPU threads for torch")
    up.add_argument("--dtype", default="float32", choices=["float32", "float64", "int16", "uint16", "uint8", "input"],
                    help="output data type (default: float32; 'input' keeps the input's)")
    up.add_argument("--overwrite", "--force", action="store_true", help="replace existing outputs")
    up.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone (resume a batch)")
    up.add_argument("--no-sidecar", action="store_true", help="do not write the JSON provenance file beside outputs")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-file lines")
    up.set_defaults(func=cmd_upsample)

    tr = sub.add_parser("train", help="train an ArSSR model", description=(
        "Train an ArSSR model (paper recipe by default). Options come from --config (YAML), then key=value overrides "
        "(nested keys with dots: model.encoder=rdn sampling.crop=40), then the flags below. Under torchrun the same "
        "command trains with DistributedDataParallel."))
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, values read as YAML")
    tr.add_argument("--config", help="YAML config file (e.g. train/paper.yaml)")
    tr.add_argument("--data", help="folder (searched recursively), glob pattern, CSV with a 'path' column, "
                                   "or mni-synthetic")
    tr.add_argument("--out", help="run folder (config.yaml, split.json, TensorBoard logs, checkpoints, weights)")
    tr.add_argument("--resume", help="'auto' (the run folder's checkpoint, if any) or a checkpoint file")
    tr.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    tr.add_argument("--amp", choices=["none", "bf16", "fp16"], help="mixed precision")
    tr.add_argument("--seed", type=int, help="random seed")
    tr.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower on GPUs)")
    tr.add_argument("--threads", type=int, help="CPU threads for torch")
    tr.set_defaults(func=cmd_train)

    from arssr.protocol import DEFAULT_DEGRADATIONS, DEFAULT_SCALES, METHODS

    ev = sub.add_parser("evaluate", help="score SR methods against ground truths (PSNR, SSIM, LPIPS, PSI, Dice)",
                        description=(
        "Simulate LR inputs from ground-truth volumes (or take given LR/HR pairs), upsample them back with every "
        "method on the aligned grid, and write results.csv, results.json, results.md and PNG figures."))
    ev.add_argument("--gt", nargs="+", required=True, metavar="FILE", help="ground-truth (HR) NIfTI volumes")
    ev.add_argument("--lr", nargs="+", metavar="FILE", help="LR inputs paired in order with --gt (no simulation)")
    ev.add_argument("--atlas", nargs="+", metavar="FILE",
                    help="AAL label maps on each ground truth's grid: Dice also for deep GM and cerebellum")
    ev.add_argument("--scales", default=",".join(f"{s:g}" for s in DEFAULT_SCALES),
                    help="comma-separated scales (default: %(default)s)")
    ev.add_argument("--degradations", default=",".join(DEFAULT_DEGRADATIONS),
                    help="comma-separated LR simulations: kspace, cubic, lanczos, gaussian (default: %(default)s)")
    ev.add_argument("--methods", default=",".join(METHODS), help=(
        "comma-separated methods: " + ", ".join(METHODS) + ", a weights file (.safetensors or the official "
        ".pkl/.pt), or NAME=FILE (default: all)"))
    ev.add_argument("-o", "--output-dir", required=True, help="folder for the results and figures/")
    ev.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    ev.add_argument("--no-psi", action="store_true", help="skip PSI (no-reference sharpness)")
    ev.add_argument("--no-dice", action="store_true", help="skip the ANTs Atropos segmentation and Dice")
    ev.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N for models and LPIPS")
    ev.add_argument("--tile", type=int, help="LR tile edge for models (default: chosen from free memory)")
    ev.add_argument("--threads", type=int, help="CPU threads for torch")
    ev.add_argument("--overwrite", "--force", action="store_true", help="replace existing results")
    ev.add_argument("-q", "--quiet", action="store_true", help="no per-case lines")
    ev.set_defaults(func=cmd_evaluate)

    from arssr.cli_compress import add_commands

    add_commands(sub)

    info = sub.add_parser("info", help="key facts of a volume, a model file or an .arssr file")
    info.add_argument("file", help="a NIfTI volume, a weights file or an .arssr file")
    info.set_defaults(func=cmd_info)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    from arssr.errors import ArssrError

    warnings.showwarning = _show_warning

    try:
        return args.func(args)
    except UsageError as err:
        parser.error(str(err))  # exits 2
    except ArssrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
