"""Held-out accuracy of the ``demo`` preset against MONAI's BasicUNet, same data, same budget.

Run by hand (not in CI):
    python benchmarks/bench_accuracy.py [--minutes 4] [--n-train 32] [--n-test 8] [--seed 0]

Data: phantoms whose livers are real LiTS liver masks (``--liver-shapes``, default
../shared/data/lits-liver-masks; procedural livers when the folder is missing). The held-out
phantoms use other masks than the training ones (masks 0..n_train-1 train, the next n_test
test) and other phantom seeds. Both networks train on the same cached tensors (the demo
preset's grid), the same train/validation split, batch size, data order and augmentation
(livseg.training.loops, seeded per sample), Adam at the demo preset's learning rate, each for
``--minutes`` of wall clock (the epoch that crosses it is the last), and keep the weights of
their best validation epoch (Dice on the network grid, threshold 0.5).

    livseg  UNet3D, demo preset (widths 8-16-32-64, three poolings, BatchNorm, dropout), its
            AdvancedComboLoss (0.3 Dice + 0.3 BCE + 0.4 focal Tversky), trained by livseg.training.train.
    monai   BasicUNet(features=(8, 16, 32, 64, 128, 8)): the demo's widths on its first four
            levels plus MONAI's fifth level (four poolings), instance norm, no dropout;
            DiceCELoss(sigmoid=True); trained by the same inner loops (livseg.training.loops).

Scoring is identical for both: livseg.inference.segment.segment (the checkpoint's preprocessing, linear
back-mapping of probabilities to each CT's own grid, largest component and hole filling) and
livseg.evaluation.evaluate's metrics, per held-out case on the original grid (the LiTS measurement) and
on the network grid. Prints a table and writes benchmarks/results/bench_accuracy.csv (one row
per model) and bench_accuracy_cases.csv (one row per model, case and grid).
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livseg.config import RunConfig, apply_overrides, get_preset
from livseg.data.cache import CachedDataset, preprocess_dataset
from livseg.data.datasets import load_split
from livseg.data.io.volume import load_labels, load_volume
from livseg.evaluation.scoring import score_case, score_network_grid
from livseg.inference.segment import load_model, segment
from livseg.phantom.generator import find_liver_shapes, write_phantoms
from livseg.training.distributed import DistInfo
from livseg.training.loops import make_train_loader, make_val_loader, train_one_epoch, validate_epoch
from livseg.training.runstate import derived_seed, runtime, seed_all
from livseg.training.train import train

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SHAPES = Path(__file__).resolve().parents[2] / "shared" / "data" / "lits-liver-masks"
MONAI_FEATURES = (8, 16, 32, 64, 128, 8)
PHANTOM_SHAPE = (96, 96, 48)  # as livseg demo: cheap to make, finer than the 64x64x32 net grid
log = logging.getLogger("bench_accuracy")


# ------------------------------------------------------------------------------------------ data


def write_sets(work: Path, n_train: int, n_test: int, seed: int, shapes_dir: Path | None) -> str:
    """Training and held-out phantoms in work/train and work/test; returns the liver source."""
    masks = find_liver_shapes(shapes_dir) if shapes_dir is not None and shapes_dir.is_dir() else []
    if len(masks) < n_train + n_test:
        if masks:
            log.warning("%d liver masks for %d phantoms: using procedural livers", len(masks), n_train + n_test)
        masks = []
    for name, count, offset, purpose in (("train", n_train, 0, 0), ("test", n_test, n_train, 1)):
        shape_dir = None
        if masks:  # a folder of links per set, so that no test liver is a training liver
            shape_dir = work / f"{name}_livers"
            shape_dir.mkdir(parents=True)
            for k, mask in enumerate(masks[offset: offset + count]):
                (shape_dir / f"liver-{k}.nii.gz").symlink_to(mask.resolve())
        write_phantoms(work / name, count, seed=derived_seed(seed, purpose), shape=PHANTOM_SHAPE,
                       liver_shapes_dir=shape_dir)
    return f"LiTS masks from {shapes_dir}" if masks else "procedural"


# ---------------------------------------------------------------------------------------- models


def train_monai(cache: Path, config: RunConfig, seconds: float, features: tuple[int, ...] = MONAI_FEATURES,
                ) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """BasicUNet with DiceCELoss through livseg's own inner loops; returns the best-epoch model."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet

    tc, device, info = config.train, torch.device("cpu"), DistInfo()
    deadline = time.monotonic() + seconds
    split = load_split(cache / "splits.json")
    train_set, val_set = CachedDataset(cache, split["train"]), CachedDataset(cache, split["val"])
    with runtime(tc, device, info):
        torch.manual_seed(tc.seed)
        model = BasicUNet(spatial_dims=3, in_channels=1, out_channels=1, features=features)
        model = model.to(memory_format=torch.channels_last_3d)
        optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        loss_fn = DiceCELoss(sigmoid=True)
        seed_all(derived_seed(tc.seed, info.rank, 1))
        val_loader = make_val_loader(val_set, tc, pin_memory=False)
        history, best, best_state = [], -math.inf, None
        for epoch in range(1, tc.epochs + 1):
            started = time.perf_counter()
            loader = make_train_loader(train_set, tc, epoch=epoch, info=info, pin_memory=False)
            loss_sum, count = train_one_epoch(model, loader, loss_fn, optimizer, scaler, device=device, amp_dtype=None,
                                              memory_format=torch.channels_last_3d, progress=False, desc="")
            sums = validate_epoch(model, val_loader, loss_fn, threshold=tc.threshold, device=device, amp_dtype=None,
                            memory_format=torch.channels_last_3d)
            record = {"epoch": epoch, "train_loss": loss_sum / count, "val_dice": sums["dice_sum"] / sums["count"],
                      "seconds": time.perf_counter() - started}
            history.append(record)
            log.info("monai epoch %d  loss %.4f  val Dice %.4f  %.1f s", epoch, record["train_loss"],
                     record["val_dice"], record["seconds"])
            if record["val_dice"] > best:
                best, best_state = record["val_dice"], copy.deepcopy(model.state_dict())
            if time.monotonic() >= deadline:
                break
    model.load_state_dict(best_state)
    return model.eval(), history


def score(model: torch.nn.Module, config: RunConfig, test_dir: Path) -> list[dict[str, Any]]:
    """Per held-out case and grid: livseg's segment() and metrics, whatever the network."""
    rows = []
    for k in range(len(list(test_dir.glob("volume-*.nii.gz")))):
        volume = load_volume(test_dir / f"volume-{k}.nii.gz")
        labels = load_labels(test_dir / f"segmentation-{k}.nii.gz", like=volume)
        result = segment(volume, (model, config))
        grids = {
            "original_grid": score_case(result.mask, labels > 0, volume.spacing),
            "network_grid": score_network_grid(result.probabilities, labels, volume.affine, config.preprocess),
        }
        rows += [{"case": f"lits-{k}", "grid": grid, **values} for grid, values in grids.items()]
    return rows


def summary_row(name: str, model: torch.nn.Module, history: list[dict[str, float]], seconds: float,
                rows: list[dict[str, Any]]) -> dict[str, Any]:
    orig = [r for r in rows if r["grid"] == "original_grid"]
    net = [r for r in rows if r["grid"] == "network_grid"]
    assd = np.array([r["assd"] for r in orig])
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": len(history),
        "train_s": round(seconds, 1),
        "best_val_dice_net": round(max(h["val_dice"] for h in history), 4),
        "test_dice_orig_mean": round(float(np.mean([r["dice"] for r in orig])), 4),
        "test_dice_orig_min": round(float(np.min([r["dice"] for r in orig])), 4),
        "test_assd_orig_mm": round(float(np.mean(assd[np.isfinite(assd)])), 2) if np.isfinite(assd).any() else math.inf,
        "test_hd95_orig_mm": round(float(np.mean([r["hd95"] for r in orig])), 2),
        "test_dice_net_mean": round(float(np.mean([r["dice"] for r in net])), 4),
        "n_test": len(orig),
    }


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training wall clock per model (default 4)")
    parser.add_argument("--n-train", type=int, default=32, help="training phantoms, a fifth validate (default 32)")
    parser.add_argument("--n-test", type=int, default=8, help="held-out phantoms (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="phantoms, split, weights, augmentation (default 0)")
    parser.add_argument("--liver-shapes", type=Path, default=DEFAULT_SHAPES, help="folder of real liver masks")
    parser.add_argument("--monai-features", type=int, nargs=6, default=MONAI_FEATURES, metavar="F",
                        help="BasicUNet widths (default 8 16 32 64 128 8)")
    parser.add_argument("--work", type=Path, default=None, help="keep phantoms and runs here (default: temporary)")
    args = parser.parse_args(argv)
    if not (args.minutes > 0 and args.n_train >= 2 and args.n_test >= 1):
        parser.error("--minutes must be positive, --n-train >= 2, --n-test >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("livseg").setLevel(logging.WARNING)

    # the clock, not the preset's epoch count, ends both runs
    config = apply_overrides(get_preset("demo"), [f"train.seed={args.seed}", "train.epochs=100000"])
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_accuracy_"))
    try:
        started = time.perf_counter()
        source = write_sets(work, args.n_train, args.n_test, args.seed, args.liver_shapes)
        cache = work / "cache"
        preprocess_dataset(work / "train", cache, config=config.preprocess, val_fraction=config.train.val_fraction,
                           seed=args.seed, progress=False)
        log.info("data: %d + %d phantoms (%s) in %.0f s", args.n_train, args.n_test, source,
                 time.perf_counter() - started)
        budget = args.minutes * 60.0
        results, all_rows = [], []

        started = time.perf_counter()
        trained = train(cache, work / "livseg_run", config, progress=False, max_seconds=budget, overwrite=True)
        seconds = time.perf_counter() - started
        model, _ = load_model(work / "livseg_run" / "best.pt", "cpu")
        rows = score(model, config, work / "test")
        results.append(summary_row("livseg demo UNet3D + combo loss", model, trained.history, seconds, rows))
        all_rows += [{"model": "livseg", **r} for r in rows]

        started = time.perf_counter()
        model, history = train_monai(cache, config, budget, tuple(args.monai_features))
        seconds = time.perf_counter() - started
        rows = score(model, config, work / "test")
        name = f"MONAI BasicUNet{tuple(args.monai_features)} + DiceCELoss"
        results.append(summary_row(name, model, history, seconds, rows))
        all_rows += [{"model": "monai", **r} for r in rows]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(exist_ok=True)
    for path, table in ((RESULTS / "bench_accuracy.csv", results), (RESULTS / "bench_accuracy_cases.csv", all_rows)):
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    print(f"{args.n_train} training / {args.n_test} held-out phantoms ({source}), {args.minutes:g} min per model, "
          f"seed {args.seed}, grid {'x'.join(map(str, config.preprocess.target_shape))}, "
          f"{torch.get_num_threads()} CPU threads")
    keys = list(results[0])
    widths = [max(len(k), *(len(str(r[k])) for r in results)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for r in results:
        print("  ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths)))
    print(f"wrote {RESULTS / 'bench_accuracy.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
