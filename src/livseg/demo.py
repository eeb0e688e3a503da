"""The whole method in minutes on a laptop CPU, without data: ``livseg demo``.

:func:`run_demo` chains the public pipeline on synthetic CT (:mod:`livseg.phantom.generator`) and writes
one folder a new user can browse::

    OUT/phantoms/train/      volume-K.nii.gz + segmentation-K.nii.gz (training and validation)
    OUT/phantoms/test/       held-out phantoms, drawn from other seeds
    OUT/cache/               the training phantoms on stage 1's network grid (livseg.data.cache)
    OUT/run/                 stage 1 (the liver on the whole CT): best.pt, last.pt, metrics.csv,
                             curves.png, ...
    OUT/cache-tumour/        the training phantoms' liver regions at stage 2's spacing
    OUT/run-tumour/          stage 2 (liver and tumour on the liver's region), the same files
    OUT/cascade.pt           both stages in one checkpoint (livseg.nn.checkpoint.save_cascade)
    OUT/evaluation/          held-out scores of the cascade: liver on both grids and for stage 1
                             alone, tumour Dice and lesion detection; metrics.csv, summary.json,
                             figures/<case>.png, report.html (livseg.evaluation.evaluate)
    OUT/predict/             one held-out case segmented as a user would: 0/1/2 labels, stats
                             (tumour count, volumes, diameters), preview
    OUT/demo_summary.json    the table below, the timings and every path, as JSON

The time budget covers the whole run: phantom generation and preprocessing come first, then
stage 1 gets a share of what is left after a reserve for stage 2's cache, evaluation and
prediction, and stage 2 whatever remains after it (:func:`livseg.training.train.train`
``max_seconds``; the epoch that crosses it is the last). Each preset's epoch count caps its
stage on machines fast enough to finish early.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from livseg.config import RunConfig, apply_overrides, get_preset, to_dict
from livseg.data.io.files import prepare_output_dir
from livseg.errors import ConfigError, OutputExistsError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MINUTES", "DemoResult", "run_demo"]

# whole demo; an upper bound: on two cores shared with other jobs (load 2-3) it ran 8.6 min with stage 2
# stopped at 8 of its 20 epochs; training stops early on a busy machine, but an epoch or the evaluation
# is never cut, so one heavily loaded core overran it (17 min)
DEFAULT_MINUTES = 9.0
N_TRAIN = 32  # training phantoms (a fifth validate): 13 steps of 2 per epoch, variety for held-out Dice > 0.9
N_TEST = 8  # held-out phantoms: enough lesions (~13) for a lesion recall, ~2 s each to score with both stages
PHANTOM_SHAPE = (96, 96, 48)  # ~4 x 4 x 6.5 mm voxels: 0.7 s per phantom, 1.5x the 64x64x32 net grid
VAL_FRACTION = 0.2
# seconds kept back for evaluation and prediction: model load, matplotlib import, report, plus
# per held-out case (both stages, metrics, figure), with room for a busy machine
RESERVE_S = 20.0
RESERVE_PER_CASE_S = 4.0
STAGE2_CACHE_PER_CASE_S = 0.5  # cutting one phantom's liver region (kept back from stage 1's budget)
STAGE1_SHARE = 0.5  # of the training time left after the reserves; stage 2 gets the rest
MIN_TRAIN_S = 1e-3  # budget already spent: train() still runs (exactly) one epoch
OUTPUTS = ("phantoms", "cache", "run", "cache-tumour", "run-tumour", "cascade.pt", "evaluation", "predict",
           "demo_summary.json")


@dataclass
class DemoResult:
    """What :func:`run_demo` returns (also written to ``demo_summary.json``).

    Attributes:
        out_dir: the demo folder.
        cases: per held-out case, scored on its own grid after post-processing: ``case``,
            ``dice`` and ``assd_mm`` of the cascade's liver, ``dice_stage1`` and
            ``assd_stage1_mm`` of stage 1 alone, ``volume_pred_ml``, ``volume_true_ml``,
            ``dice_network_grid`` (stage 1 on its grid), ``tumour_dice`` (NaN without reference
            tumour), ``lesions``, ``lesions_found`` and ``lesions_fp``.
        mean: the mean of each numeric column of ``cases`` over the cases where it is finite.
        tumour: the tumour summary of the evaluation (per-case and global Dice, lesion recall,
            recall for lesions >= 10 mm, precision, false positives per case, burden error).
        evaluation: the summary of :func:`livseg.evaluation.evaluate.evaluate`.
        training: stage 1: ``epochs`` run, ``best_epoch``, ``best_val_dice`` (network grid),
            ``budget_s``, ``stopped_on_time``; and under ``tumour`` the same for stage 2, with
            ``best_val_score`` (mean of liver and tumour Dice on the region grid).
        figures: ``curves``, ``curves_tumour``, ``evaluation`` (one per case), ``preview``, ``report``.
        paths: ``checkpoint`` (the cascade), ``liver_checkpoint``, ``tumour_checkpoint``,
            ``mask`` (the predicted case), ``summary`` (demo_summary.json).
        seconds: wall time per step and ``total``.
        config: stage 1's run configuration.
        tumour_config: stage 2's.
    """

    out_dir: Path
    cases: list[dict[str, Any]]
    mean: dict[str, float]
    tumour: dict[str, Any]
    evaluation: dict[str, Any]
    training: dict[str, Any]
    figures: dict[str, Any]
    paths: dict[str, Path]
    seconds: dict[str, float]
    config: RunConfig = field(repr=False)
    tumour_config: RunConfig = field(repr=False)

    def table(self) -> str:
        """The per-case table, the mean, the tumour summary, timings and the figure paths, as text."""
        header = (f"{'case':<10} {'Dice':>7} {'ASSD mm':>8} {'Dice s1':>8} {'ASSD s1':>8} {'tumour':>7} "
                  f"{'lesions':>8} {'found':>6} {'FP':>4}")
        title = "held-out phantoms on their own grid: the cascade (liver, tumour) and stage 1 alone (s1)"
        lines = [title, header, "-" * len(header)]
        for row in [*self.cases, {"case": "mean", **self.mean}]:
            tumour = "-" if not math.isfinite(row["tumour_dice"]) else f"{row['tumour_dice']:.3f}"
            counts = (f"{row['lesions']:8.0f} {row['lesions_found']:6.0f} {row['lesions_fp']:4.0f}"
                      if row["case"] != "mean" else f"{row['lesions']:8.1f} {row['lesions_found']:6.1f} "
                      f"{row['lesions_fp']:4.1f}")
            lines.append(f"{row['case']:<10} {row['dice']:7.4f} {row['assd_mm']:8.2f} {row['dice_stage1']:8.4f} "
                         f"{row['assd_stage1_mm']:8.2f} {tumour:>7} {counts}")
        t, u = self.training, self.training["tumour"]
        lines += [
            "",
            _tumour_line(self.tumour),
            f"stage 1 trained {t['epochs']} epochs (best validation Dice {t['best_val_dice']:.4f} at epoch "
            f"{t['best_epoch']}); stage 2 {u['epochs']} epochs (best validation liver/tumour score "
            f"{u['best_val_score']:.4f} at epoch {u['best_epoch']}); total {self.seconds['total'] / 60:.1f} min",
            f"training curves   {self.figures['curves']}  {self.figures['curves_tumour']}",
            f"evaluation        {self.figures['report']}",
            *(f"  figure          {p}" for p in self.figures["evaluation"]),
            f"preview           {self.figures['preview']}",
            f"summary           {self.paths['summary']}",
        ]
        return "\n".join(lines)


def _tumour_line(tumour: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (f"tumour: Dice per case {show(tumour['dice_per_case']['mean'])} ({tumour['n_cases_with_tumour']} cases "
            f"with tumour), global {show(tumour['dice_global'])}; lesion recall {show(tumour['recall'])} "
            f"({tumour['lesions_ref']} lesions), >= 10 mm {show(tumour['recall_10mm'])}; precision "
            f"{show(tumour['precision'])}; {show(tumour['fp_per_case'])} false-positive lesions per case")


def _check_args(minutes: float, n_train: int, n_test: int, phantom_shape: Sequence[int]) -> None:
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise ConfigError(f"minutes={minutes}: expected a positive number of minutes, e.g. {DEFAULT_MINUTES:g}")
    if int(n_train) != n_train or n_train < 2:
        raise ConfigError(f"n_train={n_train}: expected at least 2 phantoms (training needs one train and one val case)")
    if int(n_test) != n_test or n_test < 1:
        raise ConfigError(f"n_test={n_test}: expected at least 1 held-out phantom")
    if len(phantom_shape) != 3 or any(int(s) != s or s < 8 for s in phantom_shape):
        raise ConfigError(f"phantom_shape={tuple(phantom_shape)}: expected three integers >= 8 (x, y, z)")


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse to mix with an earlier demo unless asked; with ``overwrite`` remove only our outputs."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} is a file; the demo needs a folder: choose another --out")
    existing = [out / name for name in OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} exists: {out} holds an earlier demo; pass overwrite=True "
                                "(CLI: --overwrite) or choose another --out")
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _sub_seed(seed: int, purpose: int) -> int:
    """Distinct phantom seeds for training and held-out sets (never the same phantom twice)."""
    import numpy as np  # here, not at the top: the CLI imports this module to build its parser

    return int(np.random.SeedSequence([int(seed), int(purpose)]).generate_state(1)[0])


def _case_rows(metrics_csv: Path) -> list[dict[str, Any]]:
    """Per-case rows of the demo table from evaluation's metrics.csv (all three grids)."""
    with metrics_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_grid = {grid: {r["case"]: r for r in rows if r["grid"] == grid}
               for grid in ("network_grid", "stage1_original_grid")}

    def number(row: dict[str, str] | None, key: str) -> float:
        return math.nan if row is None or row.get(key) in (None, "") else float(row[key])

    return [
        {"case": r["case"], "dice": float(r["dice"]), "assd_mm": float(r["assd"]),
         "dice_stage1": number(by_grid["stage1_original_grid"].get(r["case"]), "dice"),
         "assd_stage1_mm": number(by_grid["stage1_original_grid"].get(r["case"]), "assd"),
         "volume_pred_ml": float(r["volume_pred_ml"]), "volume_true_ml": float(r["volume_ref_ml"]),
         "dice_network_grid": number(by_grid["network_grid"].get(r["case"]), "dice"),
         "tumour_dice": number(r, "tumour_dice"), "lesions": number(r, "lesions_ref"),
         "lesions_found": number(r, "lesions_detected"), "lesions_fp": number(r, "lesions_fp")}
        for r in rows if r["grid"] == "original_grid"
    ]


def _mean(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    import numpy as np

    keys = [k for k in rows[0] if k != "case"]
    means = {}
    for key in keys:
        values = np.asarray([row[key] for row in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        means[key] = float(finite.mean()) if finite.size else math.nan
    return means


def _trained(result: Any, budget: float, epochs: int) -> dict[str, Any]:
    return {"epochs": len(result.history), "best_epoch": result.best_epoch, "budget_s": round(budget, 1),
            "stopped_on_time": len(result.history) < epochs}


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    minutes: float = DEFAULT_MINUTES,
    seed: int = 0,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    phantom_shape: Sequence[int] = PHANTOM_SHAPE,
    overrides: Sequence[str] = (),
    tumour_overrides: Sequence[str] = (),
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> DemoResult:
    """Generate phantoms, train both stages of the cascade, evaluate on held-out phantoms, predict one.

    Args:
        out_dir: demo folder (see the module docstring for its contents).
        minutes: wall-clock budget of the whole demo; training gets what is left after data
            preparation and a reserve for evaluation (each stage ends after the epoch that
            crosses its share).
        seed: seed of the phantoms, the split, the initial weights and the augmentation.
        n_train: training phantoms (a fifth of them are the validation set), for both stages.
        n_test: held-out phantoms, drawn from other seeds than the training ones.
        phantom_shape: array shape of every phantom (x, y, z).
        overrides: ``section.key=value`` changes to the ``demo`` preset (stage 1), e.g. ``train.epochs=5``.
        tumour_overrides: the same for the ``demo-tumour`` preset (stage 2).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        overwrite: replace the outputs of an earlier demo in ``out_dir``.
        progress: tqdm bars for the long steps.

    Returns:
        The :class:`DemoResult`; :meth:`DemoResult.table` is the text the CLI prints.

    Raises:
        ConfigError: a non-positive budget, too few phantoms, or a bad override.
        OutputExistsError: ``out_dir`` holds an earlier demo and ``overwrite`` is False.
    """
    from livseg.data.cache import preprocess_dataset
    from livseg.evaluation.evaluate import evaluate
    from livseg.inference.predict import predict
    from livseg.nn.checkpoint import save_cascade
    from livseg.phantom.generator import write_phantoms
    from livseg.training.train import train

    started = time.monotonic()
    _check_args(minutes, n_train, n_test, phantom_shape)
    config = apply_overrides(get_preset("demo"), [*overrides, f"train.seed={int(seed)}"])
    tumour_config = apply_overrides(get_preset("demo-tumour"), [*tumour_overrides, f"train.seed={int(seed)}"])
    out = prepare_output_dir(out_dir)
    _prepare_out(out, overwrite)
    seconds: dict[str, float] = {}

    def lap(step: str, since: float) -> float:
        now = time.monotonic()
        seconds[step] = round(now - since, 2)
        log.info("demo: %s done in %.1f s", step, now - since)
        return now

    log.info("demo: writing %d training and %d held-out phantoms of %s voxels", n_train, n_test, tuple(phantom_shape))
    shape = tuple(int(s) for s in phantom_shape)
    write_phantoms(out / "phantoms" / "train", int(n_train), seed=_sub_seed(seed, 0), shape=shape)
    held_out = write_phantoms(out / "phantoms" / "test", int(n_test), seed=_sub_seed(seed, 1), shape=shape)
    t = lap("phantoms", started)
    preprocess_dataset(out / "phantoms" / "train", out / "cache", config=config.preprocess,
                       val_fraction=VAL_FRACTION, seed=int(seed), progress=progress)
    t = lap("preprocess", t)

    reserve = RESERVE_S + RESERVE_PER_CASE_S * int(n_test)
    left = minutes * 60.0 - (t - started) - reserve - STAGE2_CACHE_PER_CASE_S * int(n_train)
    budget = max(MIN_TRAIN_S, left * STAGE1_SHARE)
    log.info("demo: stage 1 (liver) for at most %.0f s (%d epochs cap)", budget, config.train.epochs)
    liver = train(out / "cache", out / "run", config, device=device, progress=progress, max_seconds=budget)
    t = lap("train", t)

    preprocess_dataset(out / "phantoms" / "train", out / "cache-tumour", config=tumour_config.preprocess,
                       val_fraction=VAL_FRACTION, seed=int(seed), progress=progress, region=tumour_config.region)
    t = lap("preprocess_tumour", t)
    budget_tumour = max(MIN_TRAIN_S, minutes * 60.0 - (t - started) - reserve)
    log.info("demo: stage 2 (liver and tumour on the liver's region) for at most %.0f s (%d epochs cap)",
             budget_tumour, tumour_config.train.epochs)
    tumour = train(out / "cache-tumour", out / "run-tumour", tumour_config, device=device, progress=progress,
                   max_seconds=budget_tumour)
    t = lap("train_tumour", t)

    checkpoint = save_cascade(out / "cascade.pt", liver.paths["best"], tumour.paths["best"])
    evaluation = evaluate(checkpoint, out / "phantoms" / "test", split="all", out_dir=out / "evaluation",
                          device=device, progress=progress)
    t = lap("evaluate", t)
    stats = predict([held_out[0][0]], checkpoint=checkpoint, out_dir=out / "predict", device=device, preview=True,
                    progress=False)[0]
    t = lap("predict", t)
    seconds["total"] = round(t - started, 2)

    cases = _case_rows(out / "evaluation" / "metrics.csv")
    result = DemoResult(
        out_dir=out,
        cases=cases,
        mean=_mean(cases),
        tumour=evaluation["tumour"],
        evaluation=evaluation,
        training={**_trained(liver, budget, config.train.epochs), "best_val_dice": liver.best_score,
                  "tumour": {**_trained(tumour, budget_tumour, tumour_config.train.epochs),
                             "best_val_score": tumour.best_score}},
        figures={"curves": out / "run" / "curves.png", "curves_tumour": out / "run-tumour" / "curves.png",
                 "evaluation": sorted((out / "evaluation" / "figures").glob("*.png")),
                 "preview": out / "predict" / stats["outputs"]["preview"],
                 "report": out / "evaluation" / "report.html"},
        paths={"checkpoint": checkpoint, "liver_checkpoint": liver.paths["best"],
               "tumour_checkpoint": tumour.paths["best"], "mask": out / "predict" / stats["outputs"]["mask"],
               "summary": out / "demo_summary.json"},
        seconds=seconds,
        config=config,
        tumour_config=tumour_config,
    )
    _write_summary(result, minutes=minutes, seed=seed, n_train=n_train, n_test=n_test, phantom_shape=shape)
    return result


def _write_summary(result: DemoResult, **arguments: Any) -> None:
    from livseg.data.io.files import write_json

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, float) and not math.isfinite(value):
            return None  # strict JSON has no NaN / inf
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    data = {
        "arguments": arguments, "cases": result.cases, "mean": result.mean, "tumour": result.tumour,
        "training": result.training, "seconds": result.seconds, "figures": result.figures, "paths": result.paths,
        "config": to_dict(result.config), "tumour_config": to_dict(result.tumour_config),
        "evaluation": result.evaluation,
    }
    write_json(result.paths["summary"], plain(data), indent=2, allow_nan=False)
