"""``livseg phantom`` and ``livseg preprocess``: data in, before any network."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livseg.cli.common import DATA_HELP, add_liver_labels, liver_labels_override, presets_help


def add_phantom(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantom",
        help="write synthetic abdominal CT phantoms with liver labels (LiTS layout)",
        description="Write N synthetic CT volumes volume-K.nii.gz (int16 HU) with labels "
        "segmentation-K.nii.gz (0 background, 1 liver, 2 tumour). Same seed, same bytes.",
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="folder to write")
    p.add_argument("--n", type=int, default=10, help="number of cases (default 10)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                   help="array shape of every case (default: 256 x 256 x as many slices as the scan needs)")
    p.add_argument("--liver-shapes", type=Path, default=None, metavar="DIR",
                   help="folder of real liver masks (NIfTI, nonzero = liver) to use as the livers")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(func=_run_phantom)


def _run_phantom(args: argparse.Namespace) -> int:
    from livseg.phantom.generator import write_phantoms

    pairs = write_phantoms(
        args.out,
        args.n,
        seed=args.seed,
        shape=tuple(args.shape) if args.shape else None,
        liver_shapes_dir=args.liver_shapes,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(pairs)} phantoms ({2 * len(pairs)} files) to {args.out}")
    return 0


def add_preprocess(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        help="resample a dataset to the network grid and cache it",
        description="Discover a LiTS, MSD, nnU-Net raw or CSV dataset, validate every pair, and write the "
        "preprocessed arrays plus a manifest (original geometry kept). Resumable.",
    )
    p.add_argument("data", type=Path, help=DATA_HELP)
    p.add_argument("-o", "--out", type=Path, required=True, help="cache folder to write")
    p.add_argument("--preset", default="paper",
                   help=f"preset whose preprocessing to use: {presets_help()} (default: paper)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. preprocess.target_shape=96,96,48 (repeatable)")
    add_liver_labels(p)
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share of the split (default 0.2)")
    p.add_argument("--test-fraction", type=float, default=0.0,
                   help="share held out as the test split that `evaluate` scores (default 0: the paper's 80/20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_preprocess)


def _run_preprocess(args: argparse.Namespace) -> int:
    from livseg.config import apply_overrides, get_preset
    from livseg.data.cache import preprocess_dataset

    config = apply_overrides(get_preset(args.preset), args.overrides + liver_labels_override(args.liver_labels))
    manifest = preprocess_dataset(
        args.data,
        args.out,
        config=config.preprocess,
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=not args.no_progress and sys.stderr.isatty(),  # no bar residue in logs or before an error
        test_fraction=args.test_fraction,
        region=config.region,
    )
    print(f"cached {len(manifest['cases'])} cases in {args.out}")
    return 0
