"""``arssr upsample``: super-resolve files, a folder or a list, one process or a shard of a batch."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from arssr import __version__
from arssr.cli.options import (
    SUFFIXES, UsageError, check_nifti_output, gain_option, output_path, positive_float, positive_int, read_list,
    scale_option, seed_option, shard_option, stem, thickness_option, usage_errors, voxel_size_option,
)
from arssr.cli.report import add_upsample_options, plan_pages, rebuild_index, write_page
from arssr.protocol import (
    CONSISTENCY_OPERATORS, CUBIC_GAIN, DEFAULT_CONSISTENCY, DEFAULT_GAIN, DEFAULT_PRIOR_MIRRORS,
    DEFAULT_SLICE_CORRECTION, OUTPUT_DTYPES, PRIOR_MIRRORS, SLICE_CORRECTIONS, SLICE_PROFILES,
)


def expand_inputs(items: list[str]) -> tuple[list[Path], bool]:
    """Files, one folder, or one ``.txt`` list of paths -> ``(paths, is_batch)``. Mixing kinds is a usage error."""
    paths = [Path(item) for item in items]
    folders = [p for p in paths if os.path.isdir(p)]
    lists = [p for p in paths if p.suffix.lower() == ".txt"]
    if (folders or lists) and len(paths) > 1:
        raise UsageError("give one folder, one .txt list, or any number of files, not a mix")
    if folders:
        found = sorted(p for p in folders[0].iterdir() if p.name.lower().endswith(SUFFIXES) and not p.name.startswith("."))
        if not found:
            raise UsageError(f"{folders[0]}: no .nii or .nii.gz files in this folder")
        return found, True
    if lists:
        entries = [line.strip() for line in read_list(lists[0]).splitlines()]
        base = lists[0].parent
        found = [(base / e) if not Path(e).is_absolute() else Path(e) for e in entries if e and not e.startswith("#")]
        if not found:
            raise UsageError(f"{lists[0]}: the list names no files")
        return found, True
    return paths, len(paths) > 1


def plan_outputs(inputs: list[Path], batch: bool, output: str | None, output_dir: str | None, suffix: str) -> list[Path]:
    """One output path per input: ``-o FILE`` for one input, else ``DIR/<stem><suffix>.nii.gz``."""
    if output is not None and output_dir is not None:
        raise UsageError("give -o/--output or --output-dir, not both")
    if output and not batch and not os.path.isdir(output):
        return [Path(output)]
    if output and batch and Path(output).name.lower().endswith(SUFFIXES):
        raise UsageError(f"-o {output} names one file, but there are {len(inputs)} inputs; give a folder "
                         "(-o DIR or --output-dir DIR)")
    if any(mark in suffix for mark in ("/", os.sep, "\0")):
        raise UsageError(f"--suffix {suffix!r}: a suffix is part of a file name and cannot hold '/'")
    folder = Path(output or output_dir) if (output or output_dir) else None
    outs = [(folder or p.parent) / f"{stem(p)}{suffix}.nii.gz" for p in inputs]
    if len(set(outs)) != len(outs):
        raise UsageError("two inputs would write the same output file; use distinct names")
    return outs


def _sidecar_path(output: Path) -> Path:
    return output.with_name(stem(output) + ".json")


def _write_sidecar(output: Path, record: dict) -> None:
    from arssr.files import atomic_file

    with atomic_file(_sidecar_path(output)) as handle:
        handle.write((json.dumps(record, indent=2) + "\n").encode())


def run(args: argparse.Namespace) -> int:
    """Upsample every input of the batch (or of this process's shard); 1 if one failed."""
    import torch

    from arssr.errors import ArssrError, InputError
    from arssr.files import check_distinct, check_output, refuse_existing, refuse_inputs
    from arssr.device import resolve_device
    from arssr.gain import fits_gain
    from arssr.inference import example_volume_path, upsample_request
    from arssr.models.planes import load_prior
    from arssr.models import default_model_path, file_sha256, load_model
    from arssr.request import prepare
    from arssr.report import kept_warnings, peak_memory_mib
    from arssr.shard import current_shard, shard_device
    from arssr.volume import load_volume, save_volume

    output_dir = args.output_dir
    if args.example:
        if args.inputs:
            raise UsageError("--example takes no INPUT")
        inputs, batch = [example_volume_path()], False
        if not (args.output or args.output_dir):
            output_dir = "."  # the example's output lands here, not beside the installed file
    elif not args.inputs:
        raise UsageError("give at least one INPUT (file, folder or .txt list) or --example")
    else:
        inputs, batch = expand_inputs(args.inputs)
    outputs = plan_outputs(inputs, batch, args.output, output_dir, args.suffix)
    with usage_errors():
        shard = current_shard(args.shard)
    todo = shard.take(list(zip(inputs, outputs))) if shard else list(zip(inputs, outputs))
    weights = Path(args.weights) if args.weights else default_model_path()
    prior_path = _plane_prior_path(args.plane_prior)
    models = [weights] if prior_path is None else [weights, prior_path]
    check_distinct([*outputs, *([] if args.no_sidecar else map(_sidecar_path, outputs)),
                    *([args.save_adapted] if args.save_adapted else [])])
    for _, target in todo:
        check_nifti_output(target)
        refuse_inputs([target, _sidecar_path(target)], [*inputs, *models])
        if not os.path.exists(target):  # an existing one is skipped, replaced or reported in the loop below
            check_output(target, args.overwrite)  # a dangling link is replaced as a file would be
            if not args.no_sidecar:  # a sidecar without its volume is replaced only when asked (or resuming)
                check_output(_sidecar_path(target), args.overwrite or args.skip_existing)
    pages = plan_pages(args, todo, batch, [*inputs, *models, *outputs, *map(_sidecar_path, outputs)])
    adapting = args.adapt is not None or args.adapt_steps is not None
    if args.save_adapted:
        if not adapting or len(inputs) != 1:
            raise UsageError("--save-adapted needs --adapt or --adapt-steps and a single input")
        check_output(args.save_adapted, args.overwrite, [*inputs, *models, *outputs])
    if adapting:
        from arssr.adapt import AdaptOptions

        operator = args.consistency if args.consistency != "none" else DEFAULT_CONSISTENCY
        adapt_options = AdaptOptions(seconds=args.adapt, steps=args.adapt_steps, operator=operator, seed=args.seed)
    asked_thickness = args.slice_thickness or ("spacing" if args.slice_profile else None)
    slice_options = [name for name, given in (
        ("--slice-thickness", args.slice_thickness not in (None, "none")), ("--slice-profile", args.slice_profile),
        ("--slice-correction", args.slice_correction), ("--equalize-slices", args.equalize_slices)) if given]
    if slice_options and args.consistency == "none":
        raise UsageError(f"{', '.join(slice_options)}: slices are made consistent by the projection; they cannot "
                         "go with --consistency none")
    if slice_options and asked_thickness == "none":
        raise UsageError(f"{', '.join(slice_options)}: they are for slices; they cannot go with --slice-thickness "
                         "none")
    slice_correction = args.slice_correction or DEFAULT_SLICE_CORRECTION
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(shard_device(args.device, shard))
    model = load_model(args.weights)
    weights_sha = file_sha256(weights)
    prior = None if prior_path is None else load_prior(prior_path)
    progress = not args.quiet and sys.stderr.isatty()
    failed, skipped, done, unreported = [], 0, 0, 0
    for source, target in todo:
        if os.path.exists(target) and args.skip_existing:
            skipped += 1
            continue
        try:
            refuse_existing([target], args.overwrite, "use --overwrite to replace it or --skip-existing")
            start = time.perf_counter()
            with kept_warnings() as caught:  # for the sidecar and the report, shown as well
                volume = load_volume(source)
                slice_thickness, thickness_from = _slices(volume, source, asked_thickness, args)
                slice_profile = None if slice_thickness is None else args.slice_profile or "boxcar"
                volume, alternation = _equalized(volume, source, slice_thickness, args)
                request = prepare(volume, model, args.scale, args.voxel_size, args.consistency, slice_thickness,
                                  slice_profile or "boxcar", slice_correction)
                upsampled = upsample_request(
                    request, tile=args.tile, device=device, precision=args.precision, progress=progress,
                    gain=args.detail_gain, details=True, plane_prior=prior,
                    adapt=adapt_options if adapting else None, prior_mirrors=args.prior_mirrors,
                )
                if adapting and upsampled.adaptation is None and args.save_adapted:
                    raise InputError(f"{source}: the volume is constant, there is nothing to adapt to: "
                                     f"{args.save_adapted} is not written")
                if upsampled.adaptation is not None:
                    _report_adaptation(source, upsampled, args)
            result, residual = upsampled.volume, upsampled.residual
            save_volume(result, target, overwrite=args.overwrite, dtype=args.dtype)
        except ArssrError as err:
            failed.append(source)
            print(f"error: {err}", file=sys.stderr)
            continue
        done += 1
        elapsed = time.perf_counter() - start
        record = {
            "arssr_version": __version__, "input": str(source), "output": str(target),
            "weights": str(weights), "weights_sha256": weights_sha, "estimator": upsampled.estimator,
            "plane_prior": str(prior_path) if upsampled.estimator == "plane prior" else None,
            "prior_mirrors": args.prior_mirrors if upsampled.estimator == "plane prior" else None,
            "output_shape": list(result.shape),
            "spacing_mm": [round(s, 6) for s in result.spacing], "device": str(device),
            "precision": args.precision, "consistency": args.consistency, "detail_gain": upsampled.gain,
            "detail_gain_fitted": (args.detail_gain == "auto" and upsampled.estimator == "model"
                                   and fits_gain(args.consistency, slice_thickness)),
            "slice_thickness": slice_thickness, "slice_thickness_from": thickness_from, "slice_profile": slice_profile,
            "slice_correction": None if slice_thickness is None else slice_correction,
            "slice_intensity": alternation,
            "adapt": upsampled.adaptation.as_dict() if upsampled.adaptation else None, "tile": args.tile,
            "seconds": round(elapsed, 3),
            "warnings": caught, "peak_memory_mib": peak_memory_mib(), "arguments": sys.argv[1:],
        }
        if not args.no_sidecar:
            _write_sidecar(target, record)
        if target in pages and not write_page(pages[target], volume, result, residual, record, model.card,
                                              args.overwrite or args.skip_existing):
            unreported += 1
        if not args.quiet:
            shape = "x".join(map(str, result.shape))
            print(f"{target}  ({shape}, {elapsed:.1f} s)", file=sys.stderr)
    if batch or shard:
        print(f"{f'shard {shard}: ' if shard else ''}{done} written, {skipped} skipped, {len(failed)} failed",
              file=sys.stderr)
    if args.report_dir and not rebuild_index(args.report_dir):
        unreported += 1
    return 1 if failed or unreported else 0


def _slices(volume, source: Path, asked: float | str | None, args: argparse.Namespace):
    """``(slice thickness, where it came from)`` for one input: the option, else 2D multi-slice detected (with
    the thickness of a BIDS sidecar, else the spacing, and one line saying so; a sidecar's
    ``MRAcquisitionType`` of ``3D`` says otherwise), else ``(None, None)``."""
    from arssr.consistency import thick_slice_axis
    from arssr.request import resolve_scale
    from arssr.volume import bids_sidecar, bids_slice_thickness

    if asked is not None:
        return (None, None) if asked == "none" else (asked, "option")
    if args.consistency == "none":
        return None, None
    axis = thick_slice_axis(volume.spacing, resolve_scale(volume, args.scale, args.voxel_size))
    if axis is None:
        return None, None
    fields = bids_sidecar(source)
    if fields.get("MRAcquisitionType") == "3D":
        if not args.quiet:
            print(f"{source}: its JSON sidecar says MRAcquisitionType 3D: taken as a 3D volume, not as slices",
                  file=sys.stderr)
        return None, None
    thickness, origin = bids_slice_thickness(fields), "sidecar"
    if thickness is None:
        thickness, origin = "spacing", "spacing"
    if not args.quiet:
        size = volume.spacing[axis] if thickness == "spacing" else thickness
        print(f"{source}: 2D multi-slice along axis {axis}, slices {size:g} mm thick "
              f"({'SliceThickness of its JSON sidecar' if origin == 'sidecar' else 'as spaced'}); "
              "--slice-thickness none treats it as a 3D volume", file=sys.stderr)
    return thickness, origin


def _report_adaptation(source: Path, upsampled, args: argparse.Namespace) -> None:
    """The line on what adaptation did (not with ``-q``), and the adapted estimator saved (``--save-adapted``)."""
    from arssr.models import save_model
    from arssr.models.planes import save_prior

    adapted, report = upsampled.adapted, upsampled.adaptation
    prior = upsampled.estimator == "plane prior"
    if not args.quiet:
        verdict = "kept" if report.kept else f"dropped: the {'plane prior' if prior else 'default model'} stays"
        print(f"{source}: {'plane prior ' if prior else ''}adapted in {report.steps} steps ({report.seconds:.0f} s), "
              f"held-out PSNR {report.before:.2f} -> {report.after:.2f} dB, {verdict}", file=sys.stderr)
    if args.save_adapted:
        (save_prior if prior else save_model)(adapted, args.save_adapted,
                                              **{**adapted.card, "adapted_to": str(source)})


def _plane_prior_path(option: str | None) -> Path | None:
    """The plane prior's file: the option's, none for ``none``, else the shipped one when it is installed."""
    from arssr.models.planes import installed_prior_path

    if option == "none":
        return None
    return Path(option) if option is not None else installed_prior_path()


def _equalized(volume, source: Path, slice_thickness, args: argparse.Namespace):
    """With ``--equalize-slices``: the volume with its even and odd slices at one brightness where they
    alternate (one line says what was found), and what was found for the sidecar; else ``(volume, None)``."""
    from arssr.consistency import slice_axis
    from arssr.geometry import output_shape
    from arssr.request import resolve_scale
    from arssr.errors import InputError
    from arssr.slice_intensity import equalize_slices

    if not args.equalize_slices:
        return volume, None
    if slice_thickness is None:
        raise InputError(f"{source}: --equalize-slices works on 2D multi-slice inputs; this one is taken as 3D "
                         "(give --slice-thickness)")
    axis = slice_axis(volume.spacing, volume.shape,
                      output_shape(volume.shape, resolve_scale(volume, args.scale, args.voxel_size)))
    equalized, found = equalize_slices(volume, axis)
    if not args.quiet:
        print(f"{source}: {found}{'; equalized' if found.alternates else '; left as it is'}", file=sys.stderr)
    record = {"axis": axis, "even_over_odd": round(found.ratio, 5), "spread": round(found.spread, 5),
              "equalized": found.alternates}
    return (equalized if found.alternates else volume), record


def add_parser(sub) -> None:
    """The ``upsample`` command's options."""
    up = sub.add_parser("upsample", help="super-resolve NIfTI volumes", description=(
        "Super-resolve 3D NIfTI volumes. The field of view is kept: n voxels at scale k give round(n*k) voxels, "
        "output voxel i sits at input voxel (i + 0.5) n/m - 0.5."))
    up.add_argument("inputs", nargs="*", metavar="INPUT", help="NIfTI files, one folder, or one .txt list of paths")
    up.add_argument("--example", action="store_true", help="upsample the sample volume shipped with arssr")
    size = up.add_mutually_exclusive_group(required=True)
    size.add_argument("--scale", type=scale_option, help="scale factor, one value or three (e.g. 3.2 or 1,1,4); each >= 1")
    size.add_argument("--voxel-size", type=voxel_size_option, help="target voxel size in mm, one value or three (e.g. 0.7 or 0.7,0.7,1)")
    up.add_argument("-o", "--output", type=output_path, help="output file (one input) or folder")
    up.add_argument("--output-dir", type=output_path, help="folder for the outputs, each named <input><suffix>.nii.gz")
    up.add_argument("--suffix", default="_sr", help="added to input names in a folder of outputs (default: _sr)")
    up.add_argument("--weights", help="model file (.safetensors, or the official .pkl/.pt); default: the shipped model")
    up.add_argument("--consistency", default=DEFAULT_CONSISTENCY, choices=CONSISTENCY_OPERATORS, help=(
        "project the output onto the volumes that this degradation takes back to the input exactly "
        f"(default: {DEFAULT_CONSISTENCY}, as an MR acquisition; none: the network's output as it is)"))
    up.add_argument("--detail-gain", type=gain_option, default=gain_option(DEFAULT_GAIN), metavar="auto|G", help=(
        "scale of the network's detail over the consistent minimum-norm volume (zero-filled k-space for kspace); "
        f"auto fits it on the input itself, or is {CUBIC_GAIN:g} with --consistency cubic without --slice-thickness "
        f"(default: {DEFAULT_GAIN})"))
    up.add_argument("--slice-thickness", type=thickness_option, metavar="MM", help=(
        "the input is 2D multi-slice with slices this thick along its coarsest axis (less than the spacing: gaps), "
        "or 'spacing'; the consistency projection uses this slice model there. Default: when one axis is more than "
        "1.5x coarser than the others and the only one upsampled, the SliceThickness of a BIDS JSON sidecar beside "
        "the input, else 'spacing' (one line says so); 'none' treats such an input as a 3D volume"))
    up.add_argument("--slice-profile", choices=SLICE_PROFILES, help=(
        "slice profile of --slice-thickness: boxcar or gaussian (FWHM = thickness); alone, it implies "
        "--slice-thickness spacing (default: boxcar)"))
    up.add_argument("--slice-correction", choices=SLICE_CORRECTIONS, help=(
        "2D multi-slice inputs: how the consistency projection spreads each slice's residual along the slices; "
        "orthogonal (least squares, constant over a slice: steps at slice boundaries) or smooth (ramps between "
        f"slice centres, no steps; as exact) (default: {DEFAULT_SLICE_CORRECTION})"))
    up.add_argument("--equalize-slices", action="store_true", help=(
        "2D multi-slice inputs: where the even and odd slices differ in brightness (interleaved acquisitions; "
        "'arssr info' measures it), bring them to one before SR (default: off)"))
    up.add_argument("--plane-prior", metavar="FILE|none", help=(
        "2D multi-slice inputs upsampled along their slices only: the through-plane prior (a 2D network on the "
        "planes that contain the slice axis) that makes the estimate instead of the 3D model; 'none' keeps the "
        "3D model (default: the shipped prior, when one is installed)"))
    up.add_argument("--prior-mirrors", type=int, choices=PRIOR_MIRRORS, default=DEFAULT_PRIOR_MIRRORS, help=(
        "the plane prior's estimate as the mean over this many copies of the volume, mirrored and back (1: the "
        "volume as it is, about 3x faster); 4 scored 0.02-0.28 dB higher where measured "
        "(docs/results/thick-slices.md) "
        f"(default: {DEFAULT_PRIOR_MIRRORS})"))
    up.add_argument("--adapt", type=positive_float, metavar="SECONDS", help=(
        "first fine-tune a copy of the model on the input itself for this long (self-adaptation; with "
        "--slice-thickness, on its in-plane detail); it is kept only if a held-out slab of the input improves, a "
        "check that serves thick slices; on isotropic inputs it has kept copies that were worse (docs/usage/upsample.md)"))
    up.add_argument("--adapt-steps", type=positive_int, metavar="N", help="most self-adaptation steps")
    up.add_argument("--save-adapted", type=output_path, metavar="FILE", help="write the adapted weights (.safetensors)")
    up.add_argument("--seed", type=seed_option, default=0, help="seed of self-adaptation (default: 0)")
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
    add_upsample_options(up)
    up.add_argument("--no-sidecar", action="store_true", help="do not write the JSON provenance file beside outputs")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-file lines")
    up.set_defaults(func=run)
