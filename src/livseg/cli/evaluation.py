"""``livseg evaluate``: scoring a network on labelled cases."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livseg.cli.common import add_device, add_liver_labels, liver_labels_override


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint on labelled cases",
        description="Dice, VOE, RVD, ASSD, MSSD, HD95 and volumes per case, on the network grid "
        "(the paper's measurement) and on each CT's own grid (LiTS), and the quality estimate's "
        "predicted Dice against the actual one. Writes metrics.csv, summary.json, figures/<case>.png, "
        "quality.png and report.html. The split's ids come from splits.json "
        "beside the checkpoint, else from the cache's splits.json; by default the test split when "
        "there is one (train --test-fraction), else the validation split. Every output names the split.",
    )
    p.add_argument("data", type=Path, help="livseg cache folder, or a dataset folder (LiTS, MSD, nnU-Net raw) or CSV")
    p.add_argument("--checkpoint", default=None, metavar="PT",
                   help="livseg checkpoint (best.pt), or builtin:NAME (default: the built-in model, which scores every case)")
    p.add_argument("--compare", default=None, metavar="PT",
                   help="also score this checkpoint (or builtin:NAME) on the same cases and print both side by side "
                   "(before = --checkpoint, after = --compare: e.g. the built-in model and a fine-tuned best.pt); "
                   "the split comes from the --compare checkpoint's run folder; outputs in OUT/before, OUT/after "
                   "and OUT/comparison.csv")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--split", default="auto", choices=("auto", "test", "val", "all"),
                   help="cases to score (default auto: test when the split has one, else val)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    add_device(p)
    add_liver_labels(p)
    p.add_argument("--no-postprocess", action="store_true", help="score the raw original-grid prediction")
    p.add_argument("--no-figures", action="store_true", help="skip the per-case figures")
    p.add_argument("--overwrite", action="store_true", help="replace existing results")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from livseg.config import RunConfig, apply_overrides
    from livseg.evaluation.evaluate import evaluate

    liver_labels = None
    if args.liver_labels is not None:  # checked as --set preprocess.liver_labels=... is
        liver_labels = apply_overrides(RunConfig(), liver_labels_override(args.liver_labels)).preprocess.liver_labels
    options = dict(split=args.split, out_dir=args.out, postprocess=not args.no_postprocess, threshold=args.threshold,
                   device=args.device, progress=not args.no_progress and sys.stderr.isatty(),
                   figures=not args.no_figures, overwrite=args.overwrite, liver_labels=liver_labels)
    if args.compare is not None:
        from livseg.evaluation.compare import compare, format_comparison

        print(format_comparison(compare(args.checkpoint, args.compare, args.data, **options)))
        print(f"results in {args.out} (before/, after/, comparison.csv)")
        return 0
    summary = evaluate(args.checkpoint, args.data, **options)
    from livseg.evaluation.scoring import GRIDS, quality_note, tumour_note

    for grid in (g for g in GRIDS if g in summary):
        dice = summary[grid]["metrics"]["dice"]
        print(f"{grid}: mean Dice {dice['mean']:.4f} (median {dice['median']:.4f}), "
              f"global Dice {summary[grid]['global_dice']:.4f}, {summary[grid]['n_cases']} cases, "
              f"{summary['split']} split")
    if "tumour" in summary:
        print(tumour_note(summary["tumour"]))
    print(f"{quality_note(summary['quality'])}; {summary['split']} split")
    print(f"results in {args.out}")
    return 0
