"""Held-out phantoms: stage 1 alone against the cascade (stage 1 + stage 2), liver and tumour.

Run by hand (not in CI), e.g. the figures in benchmarks/README.md:
    python benchmarks/bench_cascade.py --n-test 16 --threads 1
    python benchmarks/bench_cascade.py --n-test 16 --stage1-run RUN1 --stage2-run RUN2  # score finished runs

``--threads`` sets training's threads; evaluation takes every core in the process's affinity mask
(``taskset -c 0`` for one).

Data: procedural phantoms (livseg.phantom: 0-4 hypodense tumours per case, some necrotic, some
with an enhancing rim), ``--n-train`` for training (a fifth validate) and ``--n-test`` held out,
drawn from other seeds. Stage 1 is the ``demo`` preset (the liver on the whole CT), stage 2 the
``--stage2-preset`` (default ``demo-tumour``: liver and tumour on the liver's region), each
trained for at most its ``--stage*-minutes`` of wall clock (or its preset's epochs) with
``livseg.training.train``, then joined with ``livseg.nn.checkpoint.save_cascade``.

Scoring: ``livseg.evaluation.evaluate`` of the cascade on the held-out phantoms, on each CT's
own grid after post-processing: the liver of stage 1 alone (``stage1_original_grid``) and of the
cascade (``original_grid``): Dice, ASSD, HD95; the cascade's tumours: per-case Dice (cases with
tumour), global Dice, lesion recall (all, >= 10 mm longest axial diameter, < 10 mm), precision,
false-positive lesions per case, mean absolute tumour-burden error. Prints a table with the
training wall and CPU times, and writes benchmarks/results/bench_cascade.csv (one row per
model) and the evaluation folder under ``--work``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path
from typing import Any

from livseg.config import apply_overrides, get_preset
from livseg.evaluation.evaluate import evaluate
from livseg.nn.checkpoint import save_cascade
from livseg.phantom.generator import write_phantoms
from livseg.training.train import train

RESULTS = Path(__file__).resolve().parent / "results"


def _train(data: Path, run: Path, preset: str, overrides: list[str], minutes: float | None) -> dict[str, Any]:
    """Train one stage (or reuse a finished run) and time it."""
    best = run / "best.pt"
    if best.is_file() and (run / "done").is_file():
        return {"best": best, "wall_s": float("nan"), "cpu_s": float("nan"), "epochs": "reused"}
    config = apply_overrides(get_preset(preset), overrides)
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(data, run, config, progress=False, overwrite=True,
                   max_seconds=None if minutes is None else minutes * 60.0)
    (run / "done").write_text("")
    return {"best": result.paths["best"], "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "epochs": len(result.history), "best_score": result.best_score}


def _given(run: Path) -> dict[str, Any]:
    """A finished run trained elsewhere (its own training phantoms): evaluated, not timed."""
    best = run / "best.pt"
    if not best.is_file():
        raise SystemExit(f"{run}: no best.pt")
    return {"best": best, "wall_s": float("nan"), "cpu_s": float("nan"), "epochs": f"given ({run})"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-cascade"), help="phantoms, runs and evaluation")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 48), help="phantom array shape")
    parser.add_argument("--ct-grid", action="store_true",
                        help="phantoms on make_phantom's CT-like grid instead (256 x 256 in-plane, 1.3-1.8 mm "
                             "pixels, 1.5-5 mm slices): lesions of 10 mm then span 5-7 pixels, not 2")
    parser.add_argument("--n-train", type=int, default=32)
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage1-minutes", type=float, default=None, help="default: the demo preset's epochs")
    parser.add_argument("--stage2-minutes", type=float, default=None, help="default: the stage-2 preset's epochs")
    parser.add_argument("--stage2-preset", default="demo-tumour")
    parser.add_argument("--set1", action="append", default=[], help="override for stage 1 (repeatable)")
    parser.add_argument("--set2", action="append", default=[], help="override for stage 2 (repeatable)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (1 on a busy machine)")
    parser.add_argument("--stage1-run", type=Path, default=None,
                        help="a finished stage-1 run folder (its best.pt) instead of training one")
    parser.add_argument("--stage2-run", type=Path, default=None,
                        help="a finished stage-2 run folder (its best.pt) instead of training one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    work = args.work
    shape = None if args.ct_grid else tuple(args.shape)
    if not (work / "test" / f"volume-{args.n_test - 1}.nii.gz").is_file():
        write_phantoms(work / "train", args.n_train, seed=1000 + args.seed, shape=shape, overwrite=True)
        write_phantoms(work / "test", args.n_test, seed=2000 + args.seed, shape=shape, overwrite=True)
    threads = [f"train.num_threads={args.threads}", f"train.seed={args.seed}"]
    stage1 = (_given(args.stage1_run) if args.stage1_run else
              _train(work / "train", work / "stage1", "demo", [*threads, *args.set1], args.stage1_minutes))
    stage2 = (_given(args.stage2_run) if args.stage2_run else
              _train(work / "train", work / "stage2", args.stage2_preset, [*threads, *args.set2], args.stage2_minutes))
    cascade = save_cascade(work / "cascade.pt", stage1["best"], stage2["best"], overwrite=True)
    started = time.perf_counter()
    summary = evaluate(cascade, work / "test", split="all", out_dir=work / "evaluation", progress=False,
                       overwrite=True)
    evaluate_s = time.perf_counter() - started

    tumour = summary["tumour"]
    rows = []
    for name, grid, timing in (("stage 1 alone", "stage1_original_grid", stage1),
                               ("cascade", "original_grid", stage2)):
        liver = summary[grid]["metrics"]
        row = {"model": name, "liver_dice": liver["dice"]["mean"], "liver_dice_min": min_dice(work, grid),
               "assd_mm": liver["assd"]["mean"], "hd95_mm": liver["hd95"]["mean"],
               "train_wall_s": timing["wall_s"], "train_cpu_s": timing["cpu_s"], "epochs": timing["epochs"]}
        if grid == "original_grid":
            row.update(tumour_dice=tumour["dice_per_case"]["mean"], tumour_dice_global=tumour["dice_global"],
                       recall=tumour["recall"], recall_10mm=tumour["recall_10mm"],
                       recall_below_10mm=tumour["recall_below_10mm"], precision=tumour["precision"],
                       fp_per_case=tumour["fp_per_case"], burden_abs_error_pct=tumour["burden_abs_error_pct"],
                       lesions=tumour["lesions_ref"], cases_with_tumour=tumour["n_cases_with_tumour"])
        rows.append(row)

    def show(value: Any, digits: int = 3) -> str:
        return "-" if value is None or value != value else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))

    grid = "make_phantom's CT-like grid" if shape is None else f"{shape} voxels"
    print(f"{args.n_test} held-out phantoms on {grid}, own grid; {tumour['lesions_ref']} reference lesions "
          f"in {tumour['n_cases_with_tumour']} cases; evaluation {evaluate_s:.0f} s")
    print("| model | liver Dice (min) | ASSD mm | HD95 mm | tumour Dice/case | global | recall | >= 10 mm | < 10 mm "
          "| precision | FP/case | burden error pp | train wall / CPU s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['model']} | {show(row['liver_dice'], 4)} ({show(row['liver_dice_min'], 4)}) | "
              f"{show(row['assd_mm'], 2)} | {show(row['hd95_mm'], 2)} | {show(row.get('tumour_dice'))} | "
              f"{show(row.get('tumour_dice_global'))} | {show(row.get('recall'))} | {show(row.get('recall_10mm'))} | "
              f"{show(row.get('recall_below_10mm'))} | {show(row.get('precision'))} | {show(row.get('fp_per_case'), 2)} "
              f"| {show(row.get('burden_abs_error_pct'), 2)} | {show(row['train_wall_s'], 0)} / "
              f"{show(row['train_cpu_s'], 0)} |")
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "bench_cascade.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({k for row in rows for k in row}))
        writer.writeheader()
        writer.writerows(rows)
    return 0


def min_dice(work: Path, grid: str) -> float:
    """The worst held-out case's liver Dice on one grid, from the evaluation's metrics.csv."""
    with (work / "evaluation" / "metrics.csv").open(newline="") as handle:
        return min(float(r["dice"]) for r in csv.DictReader(handle) if r["grid"] == grid)


if __name__ == "__main__":
    raise SystemExit(main())
