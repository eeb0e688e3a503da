"""The ``livseg`` command: a thin layer over the Python API.

Each subcommand is a pair: ``_add_<name>(subparsers)`` declares its arguments and
``_run_<name>(args)`` calls the library. Any :class:`~livseg.errors.LivsegError` becomes one line
on stderr and exit status 2; no traceback reaches the user for bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from livseg import __version__
from livseg.errors import LivsegError, one_line

log = logging.getLogger("livseg")

EXIT_BAD_INPUT = 2


def _add_liver_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--liver-labels", metavar="V[,V...]", default=None,
                   help="label values that count as liver (preprocess.liver_labels; default 1,2 as LiTS, where 2 "
                   "is tumour inside the liver; e.g. 5 for TotalSegmentator masks)")


def _liver_labels_override(text: str | None) -> list[str]:
    """``--liver-labels 1,2`` as a ``--set`` override (checked like one)."""
    from livseg.errors import ConfigError

    if text is None:
        return []
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise ConfigError(f"--liver-labels: expected label values like 1,2 or 5, got {text!r}")
    return [f"preprocess.liver_labels={','.join(parts)}"]


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
    _add_liver_labels(p)
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share of the split (default 0.2)")
    p.add_argument("--test-fraction", type=float, default=0.0,
                   help="share held out as the test split that `evaluate` scores (default 0: the paper's 80/20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_preprocess)


def _run_preprocess(args: argparse.Namespace) -> int:
    from livseg.config import apply_overrides, get_preset
    from livseg.data.cache import preprocess_dataset

    config = apply_overrides(get_preset(args.preset), args.overrides + _liver_labels_override(args.liver_labels))
    manifest = preprocess_dataset(
        args.data,
        args.out,
        config=config.preprocess,
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=not args.no_progress,
        test_fraction=args.test_fraction,
        region=config.region,
    )
    print(f"cached {len(manifest['cases'])} cases in {args.out}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the 3D U-Net",
        description="Train on a dataset folder or CSV (preprocessed into OUT/cache first) or on a cache "
        "from `livseg preprocess`. Writes config.json, splits.json, metrics.csv, curves.png, best.pt "
        "(best validation Dice) and last.pt (for --resume) into the run folder. Under "
        "`torchrun --nproc_per_node=N -m livseg train ...` it trains with DistributedDataParallel.",
    )
    p.add_argument("data", type=Path, help="dataset folder (LiTS or MSD layout), CSV of image,label pairs, or cache folder")
    p.add_argument("-o", "--out", type=Path, required=True, help="run folder")
    p.add_argument("--preset", default=None,
                   help="paper, default, demo; tumour or demo-tumour for stage 2 of a cascade (default: paper; "
                   "with --resume: the run's own config.json)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. train.lr=3e-4 or model.channels=16,32,64 (repeatable)")
    _add_liver_labels(p)
    p.add_argument("--epochs", type=int, help="number of epochs (train.epochs)")
    p.add_argument("--seed", type=int, help="seed of initialisation, data order and augmentation (train.seed)")
    p.add_argument("--test-fraction", type=float,
                   help="share of a dataset held out as the test split for `evaluate` (train.test_fraction; default 0)")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="bitwise-repeatable kernels and seeds (slower; train.deterministic)")
    augment = p.add_mutually_exclusive_group()
    augment.add_argument("--augment", dest="augment", action="store_true", default=None,
                         help="random flips, rotation/scaling, intensity and noise (train.augment.enabled)")
    augment.add_argument("--no-augment", dest="augment", action="store_false", help="no augmentation")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes (train.num_workers)")
    p.add_argument("--threads", type=int, help="CPU threads per process (train.num_threads; default: all cores)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget: stop after the epoch that crosses it (best.pt/last.pt still written)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    mode.add_argument("--overwrite", action="store_true", help="discard a run already in --out and start afresh")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import json
    import os

    from livseg.config import RunConfig, apply_overrides, from_dict, get_preset
    from livseg.errors import ConfigError
    from livseg.training.train import train

    saved = args.out / "config.json"
    if args.preset is None and args.resume and saved.is_file():
        try:
            base = from_dict(RunConfig, json.loads(saved.read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{saved}: cannot read the run's configuration ({exc}); pass --preset") from None
    else:
        base = get_preset(args.preset or "paper")
    flags = {
        "train.epochs": args.epochs,
        "train.seed": args.seed,
        "train.test_fraction": args.test_fraction,
        "train.deterministic": args.deterministic,
        "train.augment.enabled": args.augment,
        "train.num_workers": args.workers,
        "train.num_threads": args.threads,
    }
    overrides = list(args.overrides) + [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    overrides += _liver_labels_override(args.liver_labels)
    config = apply_overrides(base, overrides)
    result = train(
        args.data,
        args.out,
        config,
        resume=args.resume,
        overwrite=args.overwrite,
        device=args.device,
        progress=not args.no_progress and sys.stderr.isatty(),
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60.0,
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"best validation Dice {result.best_score:.4f} at epoch {result.best_epoch}; run folder {args.out}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment the liver in CT volumes",
        description="Segment NIfTI files, DICOM series folders or folders of NIfTI files. Per case "
        "writes <case>_liver.nii.gz (the input's grid) and/or <case>_seg.dcm (DICOM SEG, --output-type), "
        "<case>_stats.json, with --preview <case>_preview.png and with --save-probabilities "
        "<case>_liver_probability.nii.gz; report.html for more than one case. Reading and writing overlap "
        "the network; under `torchrun --nproc_per_node=N -m livseg predict ...` the cases are shared among "
        "the ranks (one GPU each) and rank 0 writes one report.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="NIfTI file, DICOM series folder, or folder of NIfTI files")
    p.add_argument("--checkpoint", default=None, metavar="PT",
                   help="livseg checkpoint (best.pt), or builtin:NAME (default: the built-in model, see `livseg models`)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    p.add_argument("--no-postprocess", action="store_true",
                   help="keep every component and hole (default: largest component, holes filled)")
    p.add_argument("--output-type", default="nifti", choices=("nifti", "dicom-seg", "both"),
                   help="mask as NIfTI (default), as a DICOM SEG referencing the source series (DICOM input only), or both")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write the liver probability on the input grid (<case>_liver_probability.nii.gz)")
    p.add_argument("--series-id", default=None, metavar="UID",
                   help="SeriesInstanceUID to read from DICOM folders holding several series (default: the largest; "
                   "the log lists them)")
    p.add_argument("--preview", action="store_true", help="also write a three-plane PNG per case")
    overlap = p.add_mutually_exclusive_group()
    overlap.add_argument("--overlap", dest="overlap", action="store_true", default=None,
                         help="read the next CT and write the last case while the network runs (up to four CTs "
                              "in memory; default on a GPU or with one CPU thread per torchrun rank)")
    overlap.add_argument("--no-overlap", dest="overlap", action="store_false",
                         help="one case at a time, start to end (default when the network uses several CPU threads)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    import os

    from livseg.inference.predict import predict

    results = predict(
        args.inputs,
        checkpoint=args.checkpoint,
        out_dir=args.out,
        threshold=args.threshold,
        postprocess=not args.no_postprocess,
        device=args.device,
        preview=args.preview,
        overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),  # no bar residue in logs or on error
        output_type=args.output_type,
        save_probabilities=args.save_probabilities,
        series_id=args.series_id,
        overlap=args.overlap,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 reports every rank's cases
        return 0
    for stats in results:
        written = ", ".join(str(args.out / stats["outputs"][key]) for key in ("mask", "seg") if key in stats["outputs"])
        tumour = (f", {stats['tumour_count']} tumour(s) {stats['tumour_volume_ml']:.1f} mL "
                  f"(burden {stats['tumour_burden_percent']:.1f} %)" if "tumour_count" in stats else "")
        print(f"{stats['case']}: liver {stats['liver_volume_ml']:.1f} mL{tumour}, {stats['seconds']:.1f} s -> {written}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint on labelled cases",
        description="Dice, VOE, RVD, ASSD, MSSD, HD95 and volumes per case, on the network grid "
        "(the paper's measurement) and on each CT's own grid (LiTS). Writes metrics.csv, "
        "summary.json, figures/<case>.png and report.html. The split's ids come from splits.json "
        "beside the checkpoint, else from the cache's splits.json; by default the test split when "
        "there is one (train --test-fraction), else the validation split. Every output names the split.",
    )
    p.add_argument("data", type=Path, help="livseg cache folder, or dataset folder / CSV")
    p.add_argument("--checkpoint", default=None, metavar="PT",
                   help="livseg checkpoint (best.pt), or builtin:NAME (default: the built-in model, which scores every case)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--split", default="auto", choices=("auto", "test", "val", "all"),
                   help="cases to score (default auto: test when the split has one, else val)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    p.add_argument("--no-postprocess", action="store_true", help="score the raw original-grid prediction")
    p.add_argument("--no-figures", action="store_true", help="skip the per-case figures")
    p.add_argument("--overwrite", action="store_true", help="replace existing results")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from livseg.evaluation.evaluate import evaluate

    summary = evaluate(
        args.checkpoint,
        args.data,
        split=args.split,
        out_dir=args.out,
        postprocess=not args.no_postprocess,
        threshold=args.threshold,
        device=args.device,
        progress=not args.no_progress and sys.stderr.isatty(),
        figures=not args.no_figures,
        overwrite=args.overwrite,
    )
    from livseg.evaluation.evaluate import GRIDS, tumour_note

    for grid in (g for g in GRIDS if g in summary):
        dice = summary[grid]["metrics"]["dice"]
        print(f"{grid}: mean Dice {dice['mean']:.4f} (median {dice['median']:.4f}), "
              f"global Dice {summary[grid]['global_dice']:.4f}, {summary[grid]['n_cases']} cases, "
              f"{summary['split']} split")
    if "tumour" in summary:
        print(tumour_note(summary["tumour"]))
    print(f"results in {args.out}")
    return 0


def _add_cascade(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cascade",
        help="join a liver checkpoint and a tumour (stage 2) checkpoint into one cascade file",
        description="Write one self-describing checkpoint holding both stages: stage 1 finds the liver on "
        "the whole CT, stage 2 (trained with --preset tumour or demo-tumour) segments liver and tumour on "
        "the liver's region. `livseg predict --checkpoint CASCADE` then writes 0/1/2 label maps (LiTS).",
    )
    p.add_argument("--liver", type=Path, required=True, help="stage 1: a liver run's best.pt")
    p.add_argument("--tumour", type=Path, required=True, help="stage 2: a tumour run's best.pt")
    p.add_argument("-o", "--out", type=Path, required=True, help="cascade checkpoint to write (e.g. cascade.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_run_cascade)


def _run_cascade(args: argparse.Namespace) -> int:
    from livseg.nn.checkpoint import save_cascade

    path = save_cascade(args.out, args.liver, args.tumour, overwrite=args.overwrite)
    print(f"wrote cascade {path} (stage 1 {args.liver}, stage 2 {args.tumour})")
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the built-in models and print their model cards",
        description="Print the model card of every liver model shipped with livseg (architecture, input "
        "grid, training data and licences, measured accuracy, intended use and limits). `predict` and "
        "`evaluate` use the default one when no --checkpoint is given.",
    )
    p.add_argument("name", nargs="?", default=None, help="one model's card only (default: all)")
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from livseg.weights import DEFAULT_MODEL, list_models, model_card

    names = [args.name] if args.name else list_models()
    if not names:
        print("no built-in models in this installation")
    for name in names:
        card = model_card(name)  # ConfigError for an unknown name: one line, exit 2
        default = " (default)" if name.removeprefix("builtin:") == DEFAULT_MODEL else ""
        print(f"== builtin:{name.removeprefix('builtin:')}{default} ==\n{card.rstrip()}\n")
    return 0


def _add_phantom(sub: argparse._SubParsersAction) -> None:
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


def _add_demo(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
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


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [  # in pipeline order, as --help lists them
    _add_demo,
    _add_phantom,
    _add_preprocess,
    _add_train,
    _add_cascade,
    _add_evaluate,
    _add_predict,
    _add_models,
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
