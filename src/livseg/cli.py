"""The ``livseg`` command: a thin layer over the Python API.

Each subcommand is a pair: ``_add_<name>(subparsers)`` declares its arguments and
``_run_<name>(args)`` calls the library. Any :class:`~livseg.errors.LivsegError` becomes one line
on stderr and exit status 2; no traceback reaches the user for bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from livseg import __version__
from livseg.errors import LivsegError

log = logging.getLogger("livseg")

EXIT_BAD_INPUT = 2


def _add_preprocess(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        help="resample a dataset to the network grid and cache it",
        description="Discover a LiTS, MSD or CSV dataset, validate every pair, and write the "
        "preprocessed arrays plus a manifest (original geometry kept). Resumable.",
    )
    p.add_argument("data", type=Path, help="dataset folder (LiTS or MSD layout) or CSV of image,label pairs")
    p.add_argument("-o", "--out", type=Path, required=True, help="cache folder to write")
    p.add_argument("--preset", default="paper", help="preset whose preprocessing to use (default: paper)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. preprocess.target_shape=96,96,48 (repeatable)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share of the split (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_preprocess)


def _run_preprocess(args: argparse.Namespace) -> int:
    from livseg.config import apply_overrides, get_preset
    from livseg.data import preprocess_dataset

    config = apply_overrides(get_preset(args.preset), args.overrides)
    manifest = preprocess_dataset(
        args.data,
        args.out,
        config=config.preprocess,
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(f"cached {len(manifest['cases'])} cases in {args.out}")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_preprocess,
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
        print(f"livseg {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"livseg {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    """The exception message folded onto one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
