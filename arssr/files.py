"""Safe outputs: written whole or not at all, never over an existing file unasked, never over an input.

On Linux the bytes go to an unnamed file in the output's folder (``O_TMPFILE``)
that is linked into place only once complete, so even a SIGKILL leaves no
file behind. Where that is not supported they go to a hidden
``.NAME.tmp-<pid>`` file beside the output, renamed over it at the end. Such
a file left by a killed run is never removed by another run: its process id
may belong to a live process of another host or container sharing the folder.
"""

from __future__ import annotations

import errno
import os
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


def _nearest_folder(path: Path) -> Path:
    """The closest existing ancestor of ``path`` (the folder a write would start from)."""
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


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
