"""Safe outputs: written whole or not at all, never over an existing file unasked, never over an input.

On Linux the bytes go to an unnamed file in the output's folder (``O_TMPFILE``)
that is linked into place only once complete, so even a SIGKILL leaves no
file behind. Where that is not supported they go to a hidden
``.NAME.tmp-<pid>`` file beside the output, renamed over it at the end. Such
a file left by a killed run is never removed by another run: its process id
may belong to a live process of another host or container sharing the folder.

Outputs of several files (a MONAI bundle, a sweep's report) are written the
same way as a whole: :func:`atomic_folder` gives a hidden temporary folder
beside the output folder; once all files are complete it is renamed into place
(or, where the output folder already holds other files, each file is renamed
into it, after a check that none of them would replace a folder or need a
folder where a file is). An error, a full disk or a Ctrl-C / SIGTERM while the
files are written leaves the output folder as it was; a SIGKILL can leave only
the hidden ``.NAME.tmp-*`` folder. Only an interruption during the final
renames into an existing, non-empty folder can leave some of its files
replaced and others not (each file whole either way).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from arssr.errors import InputError, OutputError, OutputExistsError

#: errno values of a file system or kernel without ``O_TMPFILE``.
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT}


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file (same path, a symlink or a hard link); ``False`` if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` if it is a readable regular file (through links), else an ``InputError`` saying what it is instead.

    Checked before reading, so a FIFO is never opened (it would block) and a
    folder or a device is named as such rather than as a missing file.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"{path}: is a link to a missing {what}") from None
        raise InputError(f"{path}: {what} not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read {what} ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise InputError(f"{path}: is {kind}, not a {what}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: cannot read {what} (permission denied)")
    return path


def refuse_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None]) -> None:
    """``OutputError`` if an output is one of the inputs (compared as files, not as names)."""
    inputs = [source for source in inputs if source is not None]
    for output in outputs:
        for source in inputs:
            if same_file(output, source):
                raise OutputError(f"{output}: is the input {source}; choose another output (inputs are never replaced)")


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _open_unnamed(folder: Path) -> int | None:
    """A write descriptor of an unnamed file in ``folder``, or ``None`` where ``O_TMPFILE`` is unsupported."""
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, os.O_TMPFILE | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as err:
        if err.errno in _NO_TMPFILE:
            return None
        raise


def _link_unnamed(fd: int, name: Path) -> None:
    """Give the unnamed file open as ``fd`` the name ``name`` (``linkat`` following ``/proc/self/fd``)."""
    folder = os.open(name.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:  # a dir_fd argument makes os.link call linkat, which follows the /proc link to the file itself
        os.link(f"/proc/self/fd/{fd}", name.name, dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its ancestors that do not exist, outermost first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _nearest_folder(path: Path) -> Path:
    """The closest existing ancestor of ``path`` (the folder a write would start from)."""
    missing = _missing_folders(path.parent)
    return missing[0].parent if missing else path.parent


def refuse_existing(paths: Iterable[str | os.PathLike], overwrite: bool = False,
                    advice: str = "use --overwrite to replace it") -> None:
    """``OutputExistsError`` naming the first of ``paths`` that exists (a dangling link counts), unless ``overwrite``."""
    existing = [path for path in paths if os.path.lexists(path)]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]}: exists ({advice})")


def check_output(path: str | os.PathLike, overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse an output before any work: one of ``inputs``, a folder, existing without ``overwrite``, or unwritable.

    Writability is tried for real (creating and dropping a file in the nearest
    existing folder), so a read-only file system is caught also for root.
    """
    if not os.fspath(path):
        raise OutputError("an output path is empty; give a file name")
    path = Path(path)
    try:
        return _check_output(path, overwrite, inputs)
    except OSError as err:  # a name too long for the file system, a loop of links, ...
        raise OutputError(f"{_shown(path)}: cannot write ({err.strerror or err})") from None


def check_distinct(outputs: Iterable[str | os.PathLike]) -> None:
    """``OutputError`` if two of ``outputs`` name one file (the second would replace the first): the same
    normalised path, or, for files that exist, the same device and inode (a link)."""
    seen: dict[object, Path] = {}
    for output in map(Path, outputs):
        keys = [os.path.normpath(os.path.abspath(output))]
        with suppress(OSError):
            found = os.stat(output)
            keys.append((found.st_dev, found.st_ino))
        for key in keys:
            if key in seen:
                raise OutputError(f"{_shown(output)}: given for two outputs ({_shown(seen[key])} too); each output "
                                  "needs its own file")
        seen.update((key, output) for key in keys)


def _shown(path: Path, limit: int = 120) -> str:
    """``path`` for an error line, its middle cut when it is longer than ``limit`` characters."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 2:]}"


def _check_output(path: Path, overwrite: bool, inputs: Iterable[str | os.PathLike | None]) -> Path:
    refuse_inputs([path], inputs)
    folder = _nearest_folder(path)
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = -1
    if longest > 0 and any(len(os.fsencode(part)) > longest for part in path.parts):
        raise OutputError(f"{_shown(path)}: cannot write (a name longer than the file system's {longest} bytes)")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    refuse_existing([path], overwrite)
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot write ({folder} is not a folder)")
    try:
        fd = _open_unnamed(folder)
        if fd is None:
            probe = _temporary_name(folder / path.name)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.unlink(probe)
        os.close(fd)
    except OSError as err:
        raise OutputError(f"{_shown(path)}: cannot write in {folder} ({err.strerror or err})") from None
    return path


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s bytes to; it replaces ``path`` if the block succeeds, else vanishes.

    Missing folders are created. An ``OSError`` while writing becomes one ``OutputError``.
    """
    path = Path(path)
    named = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_unnamed(path.parent)
        if fd is None:
            named = _temporary_name(path)
            fd = os.open(named, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if named is None:
                named = _temporary_name(path)
                _link_unnamed(fd, named)
        os.replace(named, path)
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None
    finally:
        if named is not None:
            with suppress(OSError):
                os.unlink(named)


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
