"""The ``arssr`` command. Each subcommand is a thin adapter over the Python API.

Heavy imports (torch, nibabel) happen inside the commands so ``arssr --help`` is instant.
Exit codes: 0 success, 1 an input or file could not be processed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from arssr import __version__
from arssr.protocol import (
    CONSISTENCY_OPERATORS, DEFAULT_CONSISTENCY, DEFAULT_GAIN, DEFAULT_DEGRADATIONS, DEFAULT_SCALES, METHODS,
    OUTPUT_DTYPES, SLICE_AXES, SLICE_PROFILES,
)

SUFFIXES = (".nii.gz", ".nii")


class UsageError(Exception):
    """Options that do not fit together or values that cannot work whatever the input (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: outputs in progress are dropped on the way out."""


@contextmanager
def usage_errors():
    """Option values checked before any work: an ``InputError`` there is a usage error."""
    from arssr.errors import InputError

    try:
        yield
    except InputError as err:
        raise UsageError(str(err)) from None


def _option(check):
    """An argparse ``type`` from ``check(text) -> value``, which raises ``InputError`` for a bad value."""
    def convert(text: str):
        from arssr.errors import InputError

        try:
            return check(text)
        except InputError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    convert.__name__ = check.__name__
    return convert


@_option
def positive_int(text: str) -> int:
    from arssr.errors import InputError

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"expected a positive whole number, got {text!r}")
    return value


@_option
def positive_float(text: str) -> float:
    from arssr.errors import InputError

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise InputError(f"expected a positive number, got {text!r}")
    return value


@_option
def shard_option(text: str) -> tuple[int, int]:
    from arssr.shard import parse_shard

    return parse_shard(text)


@_option
def gain_option(text: str) -> float | str:
    from arssr.errors import InputError

    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise InputError(f"expected auto or a number >= 0, got {text!r}")
    return value


@_option
def thickness_option(text: str) -> float | str:
    """A slice thickness in mm, or ``spacing``."""
    return "spacing" if text == "spacing" else positive_float(text)


@_option
def scale_option(text: str) -> tuple[float, float, float]:
    from arssr.geometry import check_scale, parse_triple

    scale = parse_triple(text, "scale")
    check_scale(scale)
    return scale


@_option
def voxel_size_option(text: str) -> tuple[float, float, float]:
    from arssr.geometry import parse_triple, scale_for_voxel_size

    size = parse_triple(text, "voxel size")
    scale_for_voxel_size((1.0, 1.0, 1.0), size)  # checks that every size is positive
    return size


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


def check_outputs(outputs: list[Path], inputs: list, overwrite: bool) -> None:
    """Before any work: no output is an input, and each can be written (existing ones need ``overwrite``)."""
    from arssr.files import check_output

    for output in outputs:
        check_output(output, overwrite, inputs)


def check_nifti_output(path: Path) -> None:
    if not path.name.lower().endswith(SUFFIXES):
        raise UsageError(f"{path}: output must end in .nii or .nii.gz")


def _write_sidecar(output: Path, record: dict) -> None:
    from arssr.files import atomic_file

    with atomic_file(_sidecar_path(output)) as handle:
        handle.write((json.dumps(record, indent=2) + "\n").encode())


def cmd_upsample(args: argparse.Namespace) -> int:
    import torch

    from arssr.errors import ArssrError
    from arssr.files import check_output, refuse_inputs
    from arssr.device import resolve_device
    from arssr.inference import adapt_to, example_volume_path, upsample
    from arssr.models import default_model_path, file_sha256, load_model, save_model
    from arssr.shard import current_shard, shard_device
    from arssr.volume import load_volume, save_volume

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
    shard = current_shard(args.shard)
    todo = shard.take(list(zip(inputs, outputs))) if shard else list(zip(inputs, outputs))
    weights = Path(args.weights) if args.weights else default_model_path()
    for _, target in todo:
        check_nifti_output(target)
        refuse_inputs([target, _sidecar_path(target)], [*inputs, weights])
        if not target.exists():  # an existing one is skipped, replaced or reported in the loop below
            check_output(target)
            if not args.no_sidecar:  # a sidecar without its volume is replaced only when asked (or resuming)
                check_output(_sidecar_path(target), args.overwrite or args.skip_existing)
    adapting = args.adapt is not None or args.adapt_steps is not None
    if args.save_adapted:
        if not adapting or len(inputs) != 1:
            raise UsageError("--save-adapted needs --adapt or --adapt-steps and a single input")
        check_output(args.save_adapted, args.overwrite, [*inputs, weights, *outputs])
    if adapting:
        from arssr.adapt import AdaptOptions

        operator = args.consistency if args.consistency != "none" else DEFAULT_CONSISTENCY
        adapt_options = AdaptOptions(seconds=args.adapt, steps=args.adapt_steps, operator=operator, seed=args.seed)
    slice_thickness = args.slice_thickness or ("spacing" if args.slice_profile else None)
    slice_profile = None if slice_thickness is None else args.slice_profile or "boxcar"
    if slice_thickness is not None and args.consistency == "none":
        raise UsageError("--slice-thickness and --slice-profile set the consistency projection; "
                         "they cannot go with --consistency none")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(shard_device(args.device, shard))
    model = load_model(args.weights)
    weights_sha = file_sha256(weights)
    progress = not args.quiet and sys.stderr.isatty()
    failed, skipped, done = [], 0, 0
    for source, target in todo:
        if target.exists() and args.skip_existing:
            skipped += 1
            continue
        if target.exists() and not args.overwrite:
            failed.append(source)
            print(f"error: {target}: exists (use --overwrite to replace it or --skip-existing)", file=sys.stderr)
            continue
        try:
            start = time.perf_counter()
            volume, used, adapted = load_volume(source), model, None
            if adapting:
                used, adapted = adapt_to(volume, model, args.scale, args.voxel_size, adapt_options, device, progress)
                if not args.quiet:
                    verdict = "kept" if adapted.kept else "dropped: the default model stays"
                    print(f"{source}: adapted in {adapted.steps} steps ({adapted.seconds:.0f} s), held-out PSNR "
                          f"{adapted.before:.2f} -> {adapted.after:.2f} dB, {verdict}", file=sys.stderr)
                if args.save_adapted:
                    save_model(used, args.save_adapted, adapted_to=str(source), **used.card)
            result = upsample(
                volume, used, scale=args.scale, voxel_size=args.voxel_size, tile=args.tile,
                device=device, precision=args.precision, progress=progress, consistency=args.consistency,
                gain=args.detail_gain,
                slice_thickness=slice_thickness, slice_profile=slice_profile or "boxcar",
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
                "precision": args.precision, "consistency": args.consistency, "detail_gain": args.detail_gain,
                "slice_thickness": slice_thickness, "slice_profile": slice_profile,
                "adapt": adapted.as_dict() if adapted else None, "tile": args.tile, "seconds": round(elapsed, 3),
                "arguments": sys.argv[1:],
            })
        if not args.quiet:
            shape = "x".join(map(str, result.shape))
            print(f"{target}  ({shape}, {elapsed:.1f} s)", file=sys.stderr)
    if batch or shard:
        print(f"{f'shard {shard}: ' if shard else ''}{done} written, {skipped} skipped, {len(failed)} failed",
              file=sys.stderr)
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
    with usage_errors():
        config = cli_config(args.config, overrides, args.resume, args.out)
    print(train(config, resume=args.resume))
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


def thick_slices(args: argparse.Namespace) -> list:
    """The thick-slice cases of ``evaluate``: every ``--slice-thickness`` along every ``--slice-axis``."""
    from arssr.evaluation import ThickSlices

    if args.slice_thickness is None:
        if args.slice_axis or args.slice_profile:
            raise UsageError("--slice-axis and --slice-profile need --slice-thickness")
        return []
    if args.scales or args.degradations:
        raise UsageError("--slice-thickness replaces --scales and --degradations: give one protocol or the other")
    axes = range(3) if args.slice_axis in (None, "all") else [int(args.slice_axis)]
    thicknesses = parse_numbers(args.slice_thickness, "--slice-thickness")
    return [ThickSlices(t, axis, args.slice_profile or "boxcar") for axis in axes for t in thicknesses]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from arssr.report import check_protocol, run_evaluation

    slices = thick_slices(args)
    scales = parse_numbers(args.scales or ",".join(f"{s:g}" for s in DEFAULT_SCALES), "--scales")
    degradations = _names(args.degradations or ",".join(DEFAULT_DEGRADATIONS))
    methods = _names(args.methods)
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


def cmd_export_bundle(args: argparse.Namespace) -> int:
    from arssr.bundle import export_bundle

    folder = export_bundle(args.folder, args.weights, overwrite=args.overwrite)
    if not args.quiet:
        print(f"bundle written to {folder}; run it with: python -m monai.bundle run --bundle_root {folder} "
              f"--config_file {folder}/configs/inference.json --input_file LR --output_file SR --scale K",
              file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="arssr", description="Arbitrary-scale super-resolution of 3D medical volumes.")
    parser.add_argument("--version", action="version", version=f"arssr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("upsample", help="super-resolve NIfTI volumes", description=(
        "Super-resolve 3D NIfTI volumes. The field of view is kept: n voxels at scale k give round(n*k) voxels, "
        "output voxel i sits at input voxel (i + 0.5) n/m - 0.5."))
    up.add_argument("inputs", nargs="*", metavar="INPUT", help="NIfTI files, one folder, or one .txt list of paths")
    up.add_argument("--example", action="store_true", help="upsample the sample volume shipped with arssr")
    size = up.add_mutually_exclusive_group(required=True)
    size.add_argument("--scale", type=scale_option, help="scale factor, one value or three (e.g. 3.2 or 1,1,4); each >= 1")
    size.add_argument("--voxel-size", type=voxel_size_option, help="target voxel size in mm, one value or three (e.g. 0.7 or 0.7,0.7,1)")
    up.add_argument("-o", "--output", help="output file (one input) or folder")
    up.add_argument("--output-dir", help="folder for the outputs, each named <input><suffix>.nii.gz")
    up.add_argument("--suffix", default="_sr", help="added to input names in a folder of outputs (default: _sr)")
    up.add_argument("--weights", help="model file (.safetensors, or the official .pkl/.pt); default: the shipped model")
    up.add_argument("--consistency", default=DEFAULT_CONSISTENCY, choices=CONSISTENCY_OPERATORS, help=(
        "project the output onto the volumes that this degradation takes back to the input exactly "
        f"(default: {DEFAULT_CONSISTENCY}, as an MR acquisition; none: the network's output as it is)"))
    up.add_argument("--detail-gain", type=gain_option, default=gain_option(DEFAULT_GAIN), metavar="auto|G", help=(
        "scale of the network's detail over the consistent minimum-norm volume (zero-filled k-space for kspace); "
        f"auto fits it on the input itself (default: {DEFAULT_GAIN})"))
    up.add_argument("--slice-thickness", type=thickness_option, metavar="MM", help=(
        "the input is 2D multi-slice with slices this thick along its coarsest axis (less than the spacing: gaps), "
        "or 'spacing'; the consistency projection uses this slice model there (default: not used)"))
    up.add_argument("--slice-profile", choices=SLICE_PROFILES, help=(
        "slice profile of --slice-thickness: boxcar or gaussian (FWHM = thickness); alone, it implies "
        "--slice-thickness spacing (default: boxcar)"))
    up.add_argument("--adapt", type=positive_float, metavar="SECONDS", help=(
        "first fine-tune a copy of the model on the input itself for this long (self-adaptation); it is kept only "
        "if a held-out slab of the input improves"))
    up.add_argument("--adapt-steps", type=positive_int, metavar="N", help="most self-adaptation steps")
    up.add_argument("--save-adapted", metavar="FILE", help="write the adapted weights (.safetensors)")
    up.add_argument("--seed", type=int, default=0, help="seed of self-adaptation (default: 0)")
    up.add_argument("--tile", type=positive_int, help="LR tile edge in voxels (default: chosen from free memory)")
    up.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    up.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast precision")
    up.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    up.add_argument("--dtype", default="float32", choices=OUTPUT_DTYPES,
                    help="output data type (default: float32; 'input' keeps the input's)")
    up.add_argument("--overwrite", "--force", action="store_true", help="replace existing outputs")
    up.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone (resume a batch)")
    up.add_argument("--shard", type=shard_option, metavar="I/N", help=(
        "process only files I, I+N, I+2N, ... of the batch (0 <= I < N; e.g. a job array's task index); under "
        "torchrun the files are split over the ranks as well"))
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
    tr.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    tr.set_defaults(func=cmd_train)

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
    ev.add_argument("--methods", default=",".join(METHODS), help=(
        "comma-separated methods: " + ", ".join(METHODS) + ", a weights file (.safetensors or the official "
        ".pkl/.pt), or NAME=FILE (default: all)"))
    ev.add_argument("-o", "--output-dir", required=True, help="folder for the results and figures/")
    ev.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    ev.add_argument("--no-psi", action="store_true", help="skip PSI (no-reference sharpness)")
    ev.add_argument("--no-dice", action="store_true", help="skip the ANTs Atropos segmentation and Dice")
    ev.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N for models and LPIPS")
    ev.add_argument("--tile", type=positive_int, help="LR tile edge for models (default: chosen from free memory)")
    ev.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    ev.add_argument("--overwrite", "--force", action="store_true", help="replace existing results")
    ev.add_argument("-q", "--quiet", action="store_true", help="no per-case lines")
    ev.set_defaults(func=cmd_evaluate)

    from arssr.cli_compress import add_commands

    add_commands(sub)

    bundle = sub.add_parser("export-bundle", help="write a model as a MONAI bundle", description=(
        "Write a MONAI bundle (configs/metadata.json, configs/inference.json, models/, docs/README.md) that "
        "`python -m monai.bundle run` runs exactly as `arssr upsample`."))
    bundle.add_argument("folder", metavar="DIR", help="bundle folder (created if missing)")
    bundle.add_argument("--weights", help="arssr .safetensors model file (default: the shipped model)")
    bundle.add_argument("--overwrite", "--force", action="store_true", help="replace an existing bundle's files")
    bundle.add_argument("-q", "--quiet", action="store_true", help="no closing line")
    bundle.set_defaults(func=cmd_export_bundle)

    info = sub.add_parser("info", help="key facts of a volume, a model file or an .arssr file")
    info.add_argument("file", help="a NIfTI volume, a weights file or an .arssr file")
    info.set_defaults(func=cmd_info)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one command; warnings become ``warning:`` lines and SIGTERM acts as Ctrl-C while it runs."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    from arssr.errors import ArssrError

    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    handles_signals = threading.current_thread() is threading.main_thread()
    if handles_signals:
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except UsageError as err:
        parser.exit(2, f"error: {err} (see arssr {args.command} --help)\n")
    except ArssrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated)
        print(f"error: {'terminated (SIGTERM)' if terminated else 'interrupted'}; "
              "no partial output was left", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        warnings.showwarning = shown
        if handles_signals:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
