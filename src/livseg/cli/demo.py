"""``livseg demo``: the whole method on synthetic CT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livseg.cli.common import add_device


def add_demo(sub: argparse._SubParsersAction) -> None:
    from livseg.demo import DEFAULT_MINUTES, N_TEST, N_TRAIN

    p = sub.add_parser(
        "demo",
        help="see the whole method work on synthetic CT in minutes (no data, no GPU needed)",
        description="Write synthetic CT phantoms, train both stages of the cascade on them within a time budget "
        "(demo: the liver on the whole CT; demo-tumour: liver and tumour on the liver's region), score "
        "held-out phantoms on their own grid, segment one of them, and print a table (liver Dice and ASSD of "
        "the cascade and of stage 1 alone, tumour Dice, lesions found) with the paths of the figures.",
    )
    p.add_argument("-o", "--out", type=Path, default=Path("livseg-demo"), help="demo folder (default: ./livseg-demo)")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                   help=f"wall-clock budget of the whole demo; training gets what is left (default {DEFAULT_MINUTES:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of phantoms, split, weights and augmentation (default 0)")
    p.add_argument("--n-train", type=int, default=N_TRAIN, help=f"training phantoms, a fifth validate (default {N_TRAIN})")
    p.add_argument("--n-test", type=int, default=N_TEST, help=f"held-out phantoms (default {N_TEST})")
    add_device(p)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from livseg.demo import run_demo

    result = run_demo(
        args.out,
        minutes=args.minutes,
        seed=args.seed,
        n_train=args.n_train,
        n_test=args.n_test,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print(result.table())
    return 0
