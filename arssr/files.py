"""Safe outputs: written whole or not at all, never over an existing file unasked, never over an input.

On Linux the bytes go to an unnamed file in the output's folder (``O_TMPFILE``)
that is linked into place only once complete, so even a SIGKILL leaves no
file behind. Where that is not supported they go to a hidden
``.NAME.tmp-<pid>`` file beside the output, renamed over it at the end; such
files of earlier runs that were killed are removed by the next write.
"""

from __future__ import annotations

import errno
import os
import re
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from arssr.errors import OutputError, OutputExistsError

#: errno values of a file system or kernel without ``O_TMPFILE``.
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT}


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file (same path, a symlink or a hard link); ``False`` if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None]) -> None:
    """``OutputError`` if an output is one of the inputs (compared as files, not as names)."""
    inputs = [source for source in inputs if source is not None]
    for output in outputs:
        for source in inputs:
            if same_file(output, source):
                raise OutputError(f"{output}: is the input {source}; choose another output (inputs are never replaced)")


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(path: Path) -> None:
    """Remove the ``.NAME.tmp-<pid>`` files of ``path`` left by processes that no longer run."""
    pattern = re.compile(re.escape(f".{path.name}.tmp-") + r"(\d+)")
    with suppress(OSError):
        for entry in os.scandir(path.parent):
            match = pattern.fullmatch(entry.name)
            if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
                with suppress(OSError):
                    os.unlink(entry.path)


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
    path = Path(path)
    refuse_inputs([path], inputs)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    refuse_existing([path], overwrite)
    folder = _nearest_folder(path)
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
        raise OutputError(f"{path}: cannot write in {folder} ({err.strerror or err})") from None
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
        _remove_stale(path)
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
