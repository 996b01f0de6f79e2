"""The ``arssr`` command. Each subcommand is a thin adapter over the Python API, in a module of its own.

Heavy imports (torch, nibabel) happen inside the commands so ``arssr --help`` is instant.
Exit codes: 0 success, 1 an input or file could not be processed, 2 usage error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from arssr import __version__
from arssr.cli import bundle, compress, evaluate, info, train, upsample
from arssr.cli.options import Parser, UsageError


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: outputs in progress are dropped on the way out."""


def build_parser() -> argparse.ArgumentParser:
    """The ``arssr`` parser with every command."""
    parser = Parser(prog="arssr", description="Arbitrary-scale super-resolution of 3D medical volumes.")
    parser.add_argument("--version", action="version", version=f"arssr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (upsample, train, evaluate, compress, bundle, info):
        command.add_parser(sub)
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
