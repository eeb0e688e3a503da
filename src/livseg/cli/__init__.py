"""The ``livseg`` command: a thin layer over the Python API.

One module per group of subcommands (``data``: phantom, preprocess; ``training``: train, cascade;
``evaluation``: evaluate; ``inference``: predict, models; ``demo``). Each subcommand is a pair:
``add_<name>(subparsers)`` declares its arguments and ``_run_<name>(args)`` calls the library.
Any :class:`~livseg.errors.LivsegError` becomes one line on stderr and exit status 2; no
traceback reaches the user for bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Sequence

from livseg import __version__
from livseg.cli import data, demo, evaluation, inference, training
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
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every working subcommand."""
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except LivsegError as exc:
        print(f"livseg {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"livseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`livseg models | head`): stop quietly as Unix tools do, and point
        # stdout at /dev/null so that the interpreter's final flush does not fail a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe closed on


if __name__ == "__main__":
    raise SystemExit(main())
