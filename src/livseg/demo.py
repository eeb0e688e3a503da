"""The whole method in minutes on a laptop CPU, without data: ``livseg demo``.

:func:`run_demo` chains the public pipeline on synthetic CT (:mod:`livseg.phantom.generator`) and writes
one folder a new user can browse::

    OUT/phantoms/train/      volume-K.nii.gz + segmentation-K.nii.gz (training and validation)
    OUT/phantoms/test/       held-out phantoms, drawn from other seeds
    OUT/cache/               the training phantoms on the network grid (livseg.data.cache)
    OUT/run/                 the training run: best.pt, last.pt, metrics.csv, curves.png, ...
    OUT/evaluation/          held-out scores on both grids: metrics.csv, summary.json,
                             figures/<case>.png, report.html (livseg.evaluation.evaluate)
    OUT/predict/             one held-out case segmented as a user would: mask, stats, preview
    OUT/demo_summary.json    the table below, the timings and every path, as JSON

The time budget covers the whole run: phantom generation and preprocessing come first, then
training gets what is left after a reserve for evaluation and prediction
(:func:`livseg.training.train.train` ``max_seconds``; the epoch that crosses it is the last). The
preset's epoch count caps training on machines fast enough to finish it early.
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

# whole demo; an upper bound: on two quiet cores the preset's 40 epochs end it in ~3.5 min, and on a
# slower or busy machine training stops early, still under the README's 10 minutes
DEFAULT_MINUTES = 8.0
N_TRAIN = 32  # training phantoms (a fifth validate): 13 steps of 2 per epoch, variety for held-out Dice > 0.9
N_TEST = 4  # held-out phantoms: a mean and a spread, under a second each to score
PHANTOM_SHAPE = (96, 96, 48)  # ~4 x 4 x 6.5 mm voxels: 0.7 s per phantom, 1.5x the 64x64x32 net grid
VAL_FRACTION = 0.2
# seconds kept back for evaluation and prediction: model load, matplotlib import, report, plus
# per held-out case (segment, metrics, figure), with room for a busy machine
RESERVE_S = 20.0
RESERVE_PER_CASE_S = 4.0
MIN_TRAIN_S = 1e-3  # budget already spent: train() still runs (exactly) one epoch
OUTPUTS = ("phantoms", "cache", "run", "evaluation", "predict", "demo_summary.json")


@dataclass
class DemoResult:
    """What :func:`run_demo` returns (also written to ``demo_summary.json``).

    Attributes:
        out_dir: the demo folder.
        cases: per held-out case: ``case``, ``dice`` and ``assd_mm`` (original grid, after
            post-processing), ``volume_pred_ml``, ``volume_true_ml``, ``dice_network_grid``.
        mean: the mean of each numeric column of ``cases`` over the cases where it is finite.
        evaluation: the summary of :func:`livseg.evaluation.evaluate.evaluate` (both grids).
        training: ``epochs`` run, ``best_epoch``, ``best_val_dice`` (network grid),
            ``budget_s`` given to training and whether it ``stopped_on_time``.
        figures: ``curves``, ``evaluation`` (one per case), ``preview``, ``report``.
        paths: ``checkpoint``, ``mask`` (the predicted case), ``summary`` (demo_summary.json).
        seconds: wall time per step and ``total``.
        config: the run configuration trained.
    """

    out_dir: Path
    cases: list[dict[str, Any]]
    mean: dict[str, float]
    evaluation: dict[str, Any]
    training: dict[str, Any]
    figures: dict[str, Any]
    paths: dict[str, Path]
    seconds: dict[str, float]
    config: RunConfig = field(repr=False)

    def table(self) -> str:
        """The per-case table, the mean, timings and the figure paths, as printable text."""
        grid = "x".join(map(str, self.config.preprocess.target_shape))
        header = f"{'case':<10} {'Dice':>7} {'ASSD mm':>8} {'pred mL':>8} {'true mL':>8} {'Dice net':>9}"
        title = f"held-out phantoms on their own grid (Dice net: on the {grid} network grid)"
        lines = [title, header, "-" * len(header)]
        for row in [*self.cases, {"case": "mean", **self.mean}]:
            lines.append(f"{row['case']:<10} {row['dice']:7.4f} {row['assd_mm']:8.2f} {row['volume_pred_ml']:8.0f} "
                         f"{row['volume_true_ml']:8.0f} {row['dice_network_grid']:9.4f}")
        t = self.training
        trained = f"trained {t['epochs']} epochs (best validation Dice {t['best_val_dice']:.4f} at epoch {t['best_epoch']})"
        lines += [
            "",
            f"{trained}; total {self.seconds['total'] / 60:.1f} min",
            f"training curves   {self.figures['curves']}",
            f"evaluation        {self.figures['report']}",
            *(f"  figure          {p}" for p in self.figures["evaluation"]),
            f"preview           {self.figures['preview']}",
            f"summary           {self.paths['summary']}",
        ]
        return "\n".join(lines)


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
    """Per-case rows of the demo table from evaluation's metrics.csv (both grids)."""
    with metrics_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    net = {r["case"]: float(r["dice"]) for r in rows if r["grid"] == "network_grid"}
    return [
        {"case": r["case"], "dice": float(r["dice"]), "assd_mm": float(r["assd"]),
         "volume_pred_ml": float(r["volume_pred_ml"]), "volume_true_ml": float(r["volume_ref_ml"]),
         "dice_network_grid": net.get(r["case"], math.nan)}
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


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    minutes: float = DEFAULT_MINUTES,
    seed: int = 0,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    phantom_shape: Sequence[int] = PHANTOM_SHAPE,
    overrides: Sequence[str] = (),
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> DemoResult:
    """Generate phantoms, train the ``demo`` preset, evaluate on held-out phantoms, predict one.

    Args:
        out_dir: demo folder (see the module docstring for its contents).
        minutes: wall-clock budget of the whole demo; training gets what is left after data
            preparation and a reserve for evaluation (it ends after the epoch that crosses it).
        seed: seed of the phantoms, the split, the initial weights and the augmentation.
        n_train: training phantoms (a fifth of them are the validation set).
        n_test: held-out phantoms, drawn from other seeds than the training ones.
        phantom_shape: array shape of every phantom (x, y, z).
        overrides: ``section.key=value`` changes to the demo preset, e.g. ``train.epochs=5``.
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
    from livseg.phantom.generator import write_phantoms
    from livseg.training.train import train

    started = time.monotonic()
    _check_args(minutes, n_train, n_test, phantom_shape)
    config = apply_overrides(get_preset("demo"), [*overrides, f"train.seed={int(seed)}"])
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
    budget = max(MIN_TRAIN_S, minutes * 60.0 - (t - started) - reserve)
    log.info("demo: training the demo preset for at most %.0f s (%d epochs cap)", budget, config.train.epochs)
    trained = train(out / "cache", out / "run", config, device=device, progress=progress, max_seconds=budget)
    t = lap("train", t)

    checkpoint = out / "run" / "best.pt"
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
        evaluation=evaluation,
        training={"epochs": len(trained.history), "best_epoch": trained.best_epoch,
                  "best_val_dice": trained.best_score, "budget_s": round(budget, 1),
                  "stopped_on_time": len(trained.history) < config.train.epochs},
        figures={"curves": out / "run" / "curves.png",
                 "evaluation": sorted((out / "evaluation" / "figures").glob("*.png")),
                 "preview": out / "predict" / stats["outputs"]["preview"],
                 "report": out / "evaluation" / "report.html"},
        paths={"checkpoint": checkpoint, "mask": out / "predict" / stats["outputs"]["mask"],
               "summary": out / "demo_summary.json"},
        seconds=seconds,
        config=config,
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
        "arguments": arguments, "cases": result.cases, "mean": result.mean, "training": result.training,
        "seconds": result.seconds, "figures": result.figures, "paths": result.paths,
        "config": to_dict(result.config), "evaluation": result.evaluation,
    }
    write_json(result.paths["summary"], plain(data), indent=2, allow_nan=False)
