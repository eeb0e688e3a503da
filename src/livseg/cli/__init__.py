"""The ``livseg`` command: a thin layer over the Python API.

One module per group of subcommands (``data``: phantom, preprocess; ``training``: train, cascade;
``evaluation``: evaluate; ``inference``: predict, models; ``pacs``: send, watch, list, status, listen;
``demo``). Each subcommand is a pair:
``add_<name>(subparsers)`` declares its arguments and ``_run_<name>(args)`` calls the library.
Any :class:`~livseg.errors.LivsegError` becomes one line on stderr and exit status 2; no
traceback reaches the user for bad input, and a command that fails or is interrupted removes the
output folders it created while they hold no file. stderr carries livseg's own log lines only:
other libraries' log records below warnings and their Python warnings (nibabel, pydicom,
highdicom, torch) are shown with ``-v`` alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, NoReturn, Sequence

from livseg import __version__
from livseg.cli import data, demo, evaluation, inference, pacs, training
from livseg.errors import LivsegError, one_line

log = logging.getLogger("livseg")

EXIT_BAD_INPUT = 2


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [  # in pipeline order, as --help lists them
    demo.add_demo,
    data.add_phantom,
    data.add_preprocess,
    training.add_train,
    training.add_cascade,
    evaluation.add_evaluate,
    inference.add_predict,
    inference.add_models,
    pacs.add_pacs,
]


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every working subcommand."""
    parser = _Parser(
        prog="livseg",
        description="Liver segmentation in abdominal CT with a 3D U-Net.",
    )
    parser.add_argument("--version", action="version", version=f"livseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    from livseg.data.io.files import no_empty_output_left

    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        with no_empty_output_left(getattr(args, "out", None)):
            return int(args.func(args) or 0)
    except LivsegError as exc:
        print(f"livseg {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"livseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:  # a machine too small for the input: one line, not a traceback (not bad input: 1)
        print(f"livseg {args.command}: error: out of memory; use a machine with more memory, or fewer threads or "
              "cases at a time", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (`livseg models | head`): stop quietly as Unix tools do, and point
        # stdout at /dev/null so that the interpreter's final flush does not fail a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe closed on


def _configure_logging(verbose: bool) -> None:
    """livseg's messages at INFO (DEBUG with ``-v``); other libraries' at WARNING and up, their
    Python warnings and nibabel's own stream handler only with ``-v``."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("livseg").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)
    quiet = logging.NOTSET if verbose else logging.ERROR
    for name in ("py.warnings", "nibabel", "pydicom", "highdicom"):  # their remarks are not the user's to act on
        logging.getLogger(name).setLevel(quiet)


if __name__ == "__main__":
    raise SystemExit(main())
