"""``livseg train`` and ``livseg cascade``: making networks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livseg.cli.common import DATA_HELP, add_liver_labels, liver_labels_override, presets_help


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the 3D U-Net",
        description="Train on a dataset folder or CSV (preprocessed into OUT/cache first) or on a cache "
        "from `livseg preprocess`, from scratch or from trained weights (--init: e.g. adapt the built-in "
        "model to your own CTs). Writes config.json, splits.json, metrics.csv, curves.png, best.pt "
        "(best validation Dice) and last.pt (for --resume) into the run folder. Under "
        "`torchrun --nproc_per_node=N -m livseg train ...` it trains with DistributedDataParallel.",
    )
    p.add_argument("data", type=Path, help=DATA_HELP + ", or a cache folder from `livseg preprocess`")
    p.add_argument("-o", "--out", type=Path, required=True, help="run folder")
    p.add_argument("--preset", default=None,
                   help=f"{presets_help()}; tumour, demo-tumour and tumour-cpu train stage 2 of a cascade; builtin and "
                   "builtin-stage2 are the built-in model's recipe, finetune adapts a model (default: paper; with "
                   "--init: finetune; with --resume: the run's own config.json)")
    p.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="start from these weights: builtin (the built-in model), builtin:NAME, or a best.pt; "
                   "the network and its preprocessing come from there (a --set that changes them is refused)")
    p.add_argument("--phantoms", default=None, metavar="N|FOLDER",
                   help="patch sampling: generate N phantoms into OUT/phantoms and mix them in (patches.phantoms; "
                   "finetune: 16), or mix in a folder of phantoms (`livseg phantom` output or a cache); 0: none")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. train.lr=3e-4 or model.channels=16,32,64 (repeatable)")
    add_liver_labels(p)
    p.add_argument("--epochs", type=int, help="number of epochs (train.epochs)")
    p.add_argument("--seed", type=int, help="seed of initialisation, data order and augmentation (train.seed)")
    p.add_argument("--val-fraction", type=float,
                   help="share of a dataset that validates and chooses best.pt (train.val_fraction; default 0.2; "
                   "0 with patch sampling: every case trains, best.pt is the last round)")
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
    from livseg.training.init import adopt_init, check_init_config, init_spec, load_init
    from livseg.training.train import train

    if args.init is not None and args.resume:
        raise ConfigError("--init starts a run from trained weights and --resume continues one from its last.pt; "
                          "pass one of them")
    saved = args.out / "config.json"
    if args.preset is None and args.resume and saved.is_file():
        try:
            base = from_dict(RunConfig, json.loads(saved.read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{saved}: cannot read the run's configuration ({exc}); pass --preset") from None
    else:
        base = get_preset(args.preset or ("finetune" if args.init else "paper"))
    start = None
    if args.init is not None:  # the network and preprocessing are the init checkpoint's
        start = load_init(args.init)
        if args.preset is not None:
            check_init_config(base, start.config, init_spec(args.init))
        base = adopt_init(base, start.config)
    phantoms, count = _phantoms(args.phantoms)
    flags = {
        "train.epochs": args.epochs,
        "train.seed": args.seed,
        "train.val_fraction": args.val_fraction,
        "train.test_fraction": args.test_fraction,
        "train.deterministic": args.deterministic,
        "train.augment.enabled": args.augment,
        "train.num_workers": args.workers,
        "train.num_threads": args.threads,
        "patches.phantoms": count,
    }
    overrides = list(args.overrides) + [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    overrides += liver_labels_override(args.liver_labels)
    config = apply_overrides(base, overrides)
    if start is not None:
        check_init_config(config, start.config, init_spec(args.init))
    result = train(
        args.data,
        args.out,
        config,
        init=args.init,
        phantoms=phantoms,
        resume=args.resume,
        overwrite=args.overwrite,
        device=args.device,
        progress=not args.no_progress and sys.stderr.isatty(),
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60.0,
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        if result.best_score == result.best_score:
            print(f"best validation Dice {result.best_score:.4f} at epoch {result.best_epoch}; run folder {args.out}")
        else:
            print(f"no validation cases: best.pt is epoch {result.best_epoch}, the last; run folder {args.out}")
    return 0


def _phantoms(value: str | None) -> tuple[Path | None, int | None]:
    """--phantoms: a count of phantoms to generate (patches.phantoms=N) or a folder to mix in
    (then patches.phantoms=0)."""
    if value is None:
        return None, None
    if value.isdigit():
        return None, int(value)
    return Path(value), 0


def add_cascade(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cascade",
        help="join a liver checkpoint and a tumour (stage 2) checkpoint into one cascade file",
        description="Write one self-describing checkpoint holding both stages: stage 1 finds the liver on "
        "the whole CT, stage 2 (trained with --preset tumour or demo-tumour) segments liver and tumour on "
        "the liver's region. `livseg predict --checkpoint CASCADE` then writes 0/1/2 label maps (LiTS).",
    )
    p.add_argument("--liver", required=True, metavar="PT", help="stage 1: a liver run's best.pt, or builtin:NAME")
    p.add_argument("--tumour", required=True, metavar="PT", help="stage 2: a tumour run's best.pt")
    p.add_argument("-o", "--out", type=Path, required=True, help="cascade checkpoint to write (e.g. cascade.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_run_cascade)


def _run_cascade(args: argparse.Namespace) -> int:
    from livseg.nn.checkpoint import save_cascade

    path = save_cascade(args.out, args.liver, args.tumour, overwrite=args.overwrite)
    print(f"wrote cascade {path} (stage 1 {args.liver}, stage 2 {args.tumour})")
    return 0
