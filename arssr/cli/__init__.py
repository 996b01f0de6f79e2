"""The ``arssr`` command. Each subcommand is a thin adapter over the Python API, in a module of its own.

Heavy imports (torch, nibabel) happen inside the commands so ``arssr --help`` is instant.
Exit codes: 0 success, 1 an input or file could not be processed, 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import warnings
from contextlib import contextmanager

from arssr import __version__
from arssr.cli import bundle, compress, evaluate, info, report, train, upsample
from arssr.cli.options import Parser, UsageError


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: outputs in progress are dropped on the way out."""


def build_parser() -> argparse.ArgumentParser:
    """The ``arssr`` parser with every command."""
    parser = Parser(prog="arssr", description="Arbitrary-scale super-resolution of 3D medical volumes.")
    parser.add_argument("--version", action="version", version=f"arssr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (upsample, train, evaluate, compress, bundle, info, report):
        command.add_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


class _WarningLines(logging.Handler):
    """Log records of the libraries (nibabel's header fixes) as ``warning:`` lines on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"warning: {record.getMessage()}", file=sys.stderr)


@contextmanager
def _warning_lines(loggers: tuple[str, ...] = ("nibabel.global",)):
    """Python warnings and the ``loggers``' records shown as ``warning:`` lines inside the block, then restored."""
    import nibabel  # noqa: F401  (it adds its own stderr handler to "nibabel.global" when first imported)

    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    saved = []
    for name in loggers:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers[:] = [_WarningLines()]
        logger.propagate = False
    try:
        yield
    finally:
        warnings.showwarning = shown
        for logger, handlers, propagate in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises ``Terminated`` inside the block, and only there (then the previous handler is back).

    A SIGTERM that arrives as the block ends is not raised from the restoring
    code (which would give a traceback): the work is done by then.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = True

    def terminate(signum, frame) -> None:
        if armed:
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        try:
            armed = False  # a SIGTERM just before this line still ends as "terminated"
        finally:
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def _torch_threads_kept():
    """torch's thread count as the caller had it (``--threads`` sets it for the command); nothing to keep when
    torch was not imported before the command."""
    before = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        yield
    finally:
        if before is not None:
            sys.modules["torch"].set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    """Run one command; warnings become ``warning:`` lines and SIGTERM acts as Ctrl-C while it runs."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from arssr.errors import ArssrError

    try:
        with _warning_lines(), _torch_threads_kept(), _sigterm_as_interrupt():
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
