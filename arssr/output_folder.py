"""Outputs of several files (a MONAI bundle, a sweep's report) written whole or not at all.

:func:`atomic_folder` gives a hidden temporary folder beside the output folder; the files are written there
and, once all of them are complete, the temporary folder is renamed into place (or, where the output folder
already holds other files, each file is renamed into it, after a check that none of them would replace a
folder or need a folder where a file is). An error, a full disk or a Ctrl-C / SIGTERM while the files are
written leaves the output folder as it was and removes the temporary one; a SIGKILL can leave only the hidden
``.NAME.tmp-*`` folder. Only an interruption during the final renames into an existing, non-empty folder
can leave some of its files replaced and others not (each file is whole either way).
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from arssr.errors import OutputError


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its ancestors that do not exist, outermost first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


@contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder to write ``folder``'s files into; they replace those of ``folder`` (created if missing)
    if the block succeeds, else nothing changes. An ``OSError`` becomes one ``OutputError``."""
    folder = Path(os.path.abspath(folder))  # "." and ".." have no name to put a staging folder beside
    created = _missing_folders(folder.parent)
    staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # the usual permissions (mkdtemp's are the owner's only)
        yield staging
        if not os.path.lexists(folder) or folder.is_dir() and not any(folder.iterdir()):
            os.replace(staging, folder)  # a missing or empty folder is replaced in one step
        else:
            _move_into(staging, folder)
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        for made in reversed(created):
            try:
                made.rmdir()
            except OSError:
                break
        if isinstance(err, OSError):
            raise OutputError(f"{folder}: cannot write ({err.strerror or err})") from None
        raise


def _move_into(staging: Path, folder: Path) -> None:
    """Rename every file below ``staging`` to the same place below ``folder`` (folders made as needed), once
    it is known that none of them meets a folder where it goes, or a file where a folder goes."""
    for root, dirs, names in os.walk(staging):
        target = folder / Path(root).relative_to(staging)
        for name in names:
            if (target / name).is_dir():
                raise OutputError(f"{target / name}: is a folder where the output writes a file")
        for name in [*dirs, ""]:
            if os.path.lexists(target / name) and not (target / name).is_dir():
                raise OutputError(f"{target / name}: is a file where the output writes a folder")
    for root, _, names in os.walk(staging):
        target = folder / Path(root).relative_to(staging)
        target.mkdir(exist_ok=True)
        for name in names:
            os.replace(Path(root) / name, target / name)
