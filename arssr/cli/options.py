"""Option types and checks shared by the commands: a bad value is one ``error:`` line and exit code 2."""

from __future__ import annotations

import argparse
import math
from contextlib import contextmanager
from pathlib import Path

SUFFIXES = (".nii.gz", ".nii")


class UsageError(Exception):
    """Options that do not fit together or values that cannot work whatever the input (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


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


#: The largest whole number an option takes (C's int, which torch and the file formats use).
LARGEST_WHOLE = 2**31 - 1


def _positive(text: str, kind: type, what: str):
    """``text`` as a finite ``kind`` above 0 (a whole one below 2^31), else an ``InputError``."""
    from arssr.errors import InputError

    try:
        value = kind(text)
    except ValueError:
        value = kind(0)
    largest = LARGEST_WHOLE if kind is int else float("inf")
    if not (0 < value <= largest and math.isfinite(value)):
        raise InputError(f"expected a positive {what}{' below 2^31' if kind is int else ''}, got {text[:24]!r}")
    return value


@_option
def positive_int(text: str) -> int:
    return _positive(text, int, "whole number")


@_option
def positive_float(text: str) -> float:
    return _positive(text, float, "number")


@_option
def output_path(text: str) -> str:
    """An output file or folder: an empty one would mean the current folder, which nobody asks for that way."""
    from arssr.errors import InputError

    if not text.strip():
        raise InputError("an output path is empty; give a file or folder name ('.' for the current folder)")
    return text


def read_list(path: Path) -> str:
    """The text of a ``.txt`` list of paths, or a usage error saying why it cannot be one."""
    from arssr.errors import InputError
    from arssr.files import check_input_file

    try:
        raw = check_input_file(path, "list of paths").read_bytes()
    except InputError as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read list of paths ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        raise UsageError(f"{path}: not a text list of paths (it holds bytes that are not UTF-8 text)")
    return text


@_option
def seed_option(text: str) -> int:
    """A random seed: a whole number from 0 to 2^31 - 1."""
    from arssr.errors import InputError

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= LARGEST_WHOLE:
        raise InputError(f"expected a seed from 0 to 2^31 - 1, got {text[:24]!r}")
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
    """A slice thickness in mm, ``spacing``, or ``none`` (not 2D multi-slice, whatever the voxels look like)."""
    return text if text in ("spacing", "none") else positive_float(text)


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


def stem(path: Path) -> str:
    from arssr.volume import nifti_stem

    return nifti_stem(path)


def check_outputs(outputs: list[Path], inputs: list, overwrite: bool) -> None:
    """Before any work: no output is an input or another output, and each can be written (existing ones need
    ``overwrite``)."""
    from arssr.files import check_distinct, check_output

    check_distinct(outputs)
    for output in outputs:
        check_output(output, overwrite, inputs)


def check_nifti_output(path: Path) -> None:
    """A NIfTI output's name must say so."""
    if not path.name.lower().endswith(SUFFIXES):
        raise UsageError(f"{path}: output must end in .nii or .nii.gz")


def parse_numbers(text: str, option: str, kind: type = float) -> list:
    """A non-empty comma-separated list of numbers for ``option``; anything else is a usage error."""
    try:
        values = [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not values:
        raise UsageError(f"{option} takes comma-separated numbers, got none")
    return values


def names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


