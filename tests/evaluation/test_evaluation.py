"""Evaluation: hand-computed scores, nan-aware summaries, and `livseg evaluate` end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from livseg.cli import main
from livseg.config import PreprocessConfig
from livseg.errors import CheckpointError, DatasetError, OutputExistsError
from livseg.evaluation.evaluate import evaluate
from livseg.evaluation.scoring import (METRICS, network_grid_spacing, quality_note, score_case, score_network_grid, summarize,
                                      summarize_quality)
from livseg.nn.checkpoint import load_checkpoint
from helpers import TINY, write_case

# ------------------------------------------------------------------------------ hand-computed


def test_score_case_by_hand() -> None:
    # ref: one voxel; pred: that voxel and its +x neighbour; spacing 2 mm along x
    ref = np.zeros((6, 6, 6), dtype=bool)
    pred = np.zeros((6, 6, 6), dtype=bool)
    ref[2, 2, 2] = True
    pred[2:4, 2, 2] = True
    s = score_case(pred, ref, (2.0, 1.0, 1.0))
    assert s["dice"] == pytest.approx(2 * 1 / 3)
    assert s["jaccard"] == pytest.approx(0.5) and s["voe"] == pytest.approx(0.5)
    assert s["rvd"] == pytest.approx(1.0)
    # surface distances pooled: pred->ref [0, 2], ref->pred [0]
    assert s["assd"] == pytest.approx(2 / 3)
    assert s["mssd"] == pytest.approx(2.0)
    assert s["hd95"] == pytest.approx(1.8)  # numpy linear percentile of [0, 0, 2]
    assert s["voxel_accuracy"] == pytest.approx(1 - 1 / 216)
    assert s["volume_pred_ml"] == pytest.approx(0.004) and s["volume_ref_ml"] == pytest.approx(0.002)
    assert (s["n_pred"], s["n_ref"], s["n_overlap"]) == (2, 1, 1)


def test_summarize_quality_by_hand() -> None:
    rows = [{"dice": 0.97, "predicted_dice": 0.96, "review": False},
            {"dice": 0.96, "predicted_dice": 0.91, "review": True},   # good, flagged anyway
            {"dice": 0.92, "predicted_dice": 0.93, "review": False},
            {"dice": 0.85, "predicted_dice": 0.90, "review": True},   # bad, flagged
            {"dice": 0.40, "predicted_dice": 0.95, "review": False}]  # bad, missed
    quality = summarize_quality(rows, review_below=0.92)
    # ranks of predicted 5,2,3,1,4 against actual 5,4,3,2,1: d^2 = 0+4+0+1+9 = 14, rho = 1 - 6*14/(5*24)
    assert quality["spearman"] == pytest.approx(1 - 6 * 14 / 120)
    assert quality == {**quality, "n_cases": 5, "review_below": 0.92, "flagged": 2, "below_090": 2,
                       "below_090_flagged": 1, "good": 2, "good_flagged": 1}
    assert summarize_quality(rows[:2], review_below=0.92)["spearman"] is None  # too few cases
    assert "1 of 2 flagged" in quality_note(quality)


def test_network_grid_spacing_is_extent_over_grid() -> None:
    assert network_grid_spacing((512, 512, 129), (0.7, 0.7, 2.5), (160, 160, 80)) == pytest.approx(
        (2.24, 2.24, 129 * 2.5 / 80)
    )


def test_score_network_grid_uses_nearest_label_and_no_postprocessing() -> None:
    config = PreprocessConfig(target_shape=(4, 4, 2))
    labels = np.zeros((8, 8, 4), dtype=np.uint8)
    labels[:4, :, :] = 2  # tumour counts as liver
    probabilities = np.zeros((4, 4, 2), dtype=np.float32)
    probabilities[:2] = 0.7
    probabilities[3, 3, 1] = 0.5  # a separate blob at exactly the threshold: kept, not cleaned
    s = score_network_grid(probabilities, labels, np.eye(4), config)
    # nearest resampling 8 -> 4 takes source indices 0, 2, 5, 7: rows 0 and 1 are liver
    assert s["n_ref"] == 16 and s["n_pred"] == 17 and s["n_overlap"] == 16
    assert s["dice"] == pytest.approx(32 / 33)


def test_summary_is_nan_aware_and_counts() -> None:
    def row(grid: str, dice: float, assd: float, n: tuple[int, int, int]) -> dict:
        values = {m: 0.5 for m in METRICS}
        values.update(dice=dice, assd=assd)
        return {"case": "c", "grid": grid, **values, "n_pred": n[0], "n_ref": n[1], "n_overlap": n[2]}

    rows = [
        row("original_grid", 0.8, 2.0, (10, 10, 8)),
        row("original_grid", 0.6, 4.0, (20, 30, 15)),
        row("original_grid", 0.0, math.inf, (0, 10, 0)),  # empty prediction
        row("network_grid", 1.0, math.nan, (0, 0, 0)),
    ]
    summary = summarize(rows)
    orig = summary["original_grid"]
    assert orig["n_cases"] == 3
    assert orig["global_dice"] == pytest.approx(2 * 23 / 80)
    assert orig["metrics"]["dice"] == pytest.approx(
        {"mean": 1.4 / 3, "std": float(np.std([0.8, 0.6, 0.0])), "median": 0.6, "n": 3, "n_nonfinite": 0}
    )
    assert orig["metrics"]["assd"] == pytest.approx({"mean": 3.0, "std": 1.0, "median": 3.0, "n": 2, "n_nonfinite": 1})
    net = summary["network_grid"]
    assert net["global_dice"] == 1.0  # nothing anywhere: perfect by convention
    assert net["metrics"]["assd"] == {"mean": None, "std": None, "median": None, "n": 0, "n_nonfinite": 1}
    json.dumps(summary, allow_nan=False)  # JSON-safe


# ------------------------------------------------------------------------------ end to end


def test_evaluate_end_to_end(trained_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval"
    rc = main(["evaluate", str(trained_run["data"]), "--checkpoint", str(trained_run["checkpoint"]), "--split", "all",
               "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    liver_grids = {"network_grid", "original_grid"}  # stage1_original_grid: cascades only
    assert len(rows) == 6 and {r["grid"] for r in rows} == liver_grids
    assert {r["case"] for r in rows} == {"lits-0", "lits-1", "lits-2"}
    net = [r for r in rows if r["grid"] == "network_grid"]
    assert all(int(r["n_ref"]) + int(r["n_pred"]) <= 2 * 16 * 16 * 8 for r in net)  # scored on the network grid
    summary = json.loads((out / "summary.json").read_text())
    assert "stage1_original_grid" not in summary and "tumour" not in summary
    for grid in liver_grids:
        assert set(summary[grid]["metrics"]) == set(METRICS)
        assert summary[grid]["metrics"]["dice"]["n"] == 3
        assert 0.0 <= summary[grid]["global_dice"] <= 1.0
    for case in ("lits-0", "lits-1", "lits-2"):
        assert matplotlib.image.imread(out / "figures" / f"{case}.png").ndim == 3
    assert "figures/lits-0.png" in (out / "report.html").read_text()
    # the quality estimate beside the actual Dice: columns, the summary recomputed from them, the plot
    orig = [r for r in rows if r["grid"] == "original_grid"]
    assert all(0 <= float(r["predicted_dice"]) <= 1 and r["review"] in ("0", "1") for r in orig)
    assert all(r["predicted_dice"] == "" for r in net)
    quality = summary["quality"]
    assert quality["n_cases"] == 3 and quality["flagged"] == sum(int(r["review"]) for r in orig)
    assert quality["below_090"] == sum(float(r["dice"]) < 0.9 for r in orig)
    assert quality["good"] == sum(float(r["dice"]) >= 0.95 for r in orig)
    assert matplotlib.image.imread(out / "quality.png").ndim == 3
    assert 'href="quality.png"' in (out / "report.html").read_text()
    assert "quality estimate: Spearman" in capsys.readouterr().out
    # a second run refuses to overwrite the results
    with pytest.raises(OutputExistsError):
        evaluate(trained_run["checkpoint"], trained_run["data"], split="all", out_dir=out, progress=False)


def test_evaluate_val_split_from_run_folder(trained_run: dict[str, Path], tmp_path: Path) -> None:
    val = json.loads((trained_run["run"] / "splits.json").read_text())["val"]
    summary = evaluate(trained_run["checkpoint"], trained_run["cache"], split="val", out_dir=tmp_path, progress=False, figures=False)
    assert summary["n_cases"] == len(val) and summary["split_source"].endswith("splits.json")
    assert not (tmp_path / "figures").exists()
    # the network-grid score is the measurement training validated with (folded BN aside)
    best = load_checkpoint(trained_run["checkpoint"]).best_score
    assert summary["network_grid"]["metrics"]["dice"]["mean"] == pytest.approx(best, abs=1e-3)


def test_val_split_needs_a_split_file(trained_run: dict[str, Path], tmp_path: Path) -> None:
    lonely = tmp_path / "elsewhere" / "best.pt"
    lonely.parent.mkdir()
    lonely.write_bytes(trained_run["checkpoint"].read_bytes())
    with pytest.raises(DatasetError, match="splits.json"):
        evaluate(lonely, trained_run["data"], split="val", out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_bad_checkpoint_is_refused_before_anything_is_written(trained_run: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(trained_run["checkpoint"].read_bytes()[:1000])  # the CLI's exit 2: test_cli.py
    with pytest.raises(CheckpointError, match="checkpoint"):
        evaluate(path, trained_run["data"], split="all", out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ test split


@pytest.fixture(scope="module")
def run_with_test_split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five cases split 2 train / 2 val / 1 test, trained for three TINY epochs."""
    import dataclasses

    from livseg.training.train import train

    root = tmp_path_factory.mktemp("testsplit")
    for n in range(5):
        write_case(root / "data", n)
    config = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, test_fraction=0.2))
    result = train(root / "data", root / "run", config, device="cpu", progress=False)
    return {"data": root / "data", "run": root / "run", "checkpoint": result.paths["best"], "cache": result.paths["cache"]}


def test_evaluate_scores_the_test_split_when_there_is_one_and_says_so(
    run_with_test_split: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    split = json.loads((run_with_test_split["run"] / "splits.json").read_text())
    assert len(split["test"]) == 1
    out = tmp_path / "eval"
    rc = main(["evaluate", str(run_with_test_split["cache"]), "--checkpoint", str(run_with_test_split["checkpoint"]),
               "-o", str(out), "--no-figures", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"] == "test" and summary["n_cases"] == 1
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["case"] for r in rows} == set(split["test"]) and {r["split"] for r in rows} == {"test"}
    assert "split test" in (out / "report.html").read_text()
    assert all("test split" in line for line in printed.splitlines() if "Dice" in line)


def test_evaluate_val_and_test_splits_on_request(run_with_test_split: dict[str, Path], tmp_path: Path) -> None:
    split = json.loads((run_with_test_split["run"] / "splits.json").read_text())
    summary = evaluate(run_with_test_split["checkpoint"], run_with_test_split["data"], split="val",
                       out_dir=tmp_path / "val", progress=False, figures=False)
    assert summary["split"] == "val" and summary["n_cases"] == len(split["val"])
    with open(tmp_path / "val" / "metrics.csv", newline="") as handle:
        assert {r["split"] for r in csv.DictReader(handle)} == {"val"}


def test_test_split_requested_where_there_is_none(trained_run: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no test cases"):
        evaluate(trained_run["checkpoint"], trained_run["cache"], split="test", out_dir=tmp_path / "out",
                 progress=False)
    assert not (tmp_path / "out").exists()
    # without a test part, the default is the validation split, labelled as such
    summary = evaluate(trained_run["checkpoint"], trained_run["cache"], out_dir=tmp_path / "auto", progress=False,
                       figures=False)
    assert summary["split"] == "val"
