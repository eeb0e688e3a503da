"""Two checkpoints side by side (livseg evaluate --compare): same cases, per case and mean, Dice and ASSD."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from livseg.cli import main
from livseg.evaluation.compare import _mean, compare
from livseg.evaluation.evaluate import evaluate


def test_mean_row_by_hand_leaves_out_cases_one_side_could_not_score() -> None:
    rows = [
        {"case": "a", "dice_before": 0.8, "dice_after": 0.9, "dice_change": 0.1,
         "assd_before": 2.0, "assd_after": 1.0, "assd_change": -1.0},
        {"case": "b", "dice_before": 0.6, "dice_after": 0.9, "dice_change": 0.3,
         "assd_before": math.inf, "assd_after": 3.0, "assd_change": -math.inf},
    ]
    mean = _mean(rows)
    assert mean["dice_before"] == pytest.approx(0.7) and mean["dice_after"] == pytest.approx(0.9)
    assert mean["dice_change"] == pytest.approx(0.2)
    assert (mean["assd_before"], mean["assd_after"], mean["assd_change"]) == (2.0, 1.0, -1.0)  # case b left out


def test_compare_scores_both_on_the_run_split(trained_run: dict[str, Path], tmp_path: Path) -> None:
    """The built-in model before, the TINY run after, on the run's validation cases."""
    result = compare(None, trained_run["checkpoint"], trained_run["data"], out_dir=tmp_path / "cmp", progress=False,
                     figures=False)
    val = json.loads((trained_run["run"] / "splits.json").read_text())["val"]
    assert [r["case"] for r in result["cases"]] == val and result["split"] == "val"
    assert result["before"] == "builtin:liver-v1"
    alone = evaluate(trained_run["checkpoint"], trained_run["data"], split="val", out_dir=tmp_path / "alone",
                     progress=False, figures=False)
    rows = {r["case"]: r for r in csv.DictReader((tmp_path / "alone" / "metrics.csv").open())
            if r["grid"] == "original_grid"}
    for row in result["cases"]:  # the after column is evaluate's own number for that checkpoint
        assert row["dice_after"] == pytest.approx(float(rows[row["case"]]["dice"]), abs=1e-12)
        assert row["dice_change"] == pytest.approx(row["dice_after"] - row["dice_before"], abs=1e-12)
    assert result["mean"]["dice_after"] == pytest.approx(alone["original_grid"]["metrics"]["dice"]["mean"])
    table = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert [r["case"] for r in table] == [*val, "mean"]
    assert (tmp_path / "cmp" / "before" / "metrics.csv").is_file() and (tmp_path / "cmp" / "after" / "report.html").is_file()


def test_cli_prints_the_before_after_table(trained_run: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = str(trained_run["checkpoint"])
    code = main(["evaluate", str(trained_run["data"]), "--checkpoint", checkpoint, "--compare", checkpoint,
                 "--split", "all", "-o", str(tmp_path / "cmp"), "--no-figures", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith(("lits-", "mean"))]
    assert [line.split()[0] for line in lines] == ["lits-0", "lits-1", "lits-2", "mean"]
    assert all(line.split()[3] == "+0.0000" and line.split()[6] == "+0.00" for line in lines)  # the same model
    assert "all split" in out


def test_evaluate_scores_against_the_label_values_it_is_told(trained_run: dict[str, Path], tmp_path: Path) -> None:
    """--liver-labels 1: tumour (2) is no longer liver in the reference (the TINY cases have one tumour voxel)."""
    both = evaluate(trained_run["checkpoint"], trained_run["data"], split="all", out_dir=tmp_path / "a",
                    progress=False, figures=False)
    liver_only = evaluate(trained_run["checkpoint"], trained_run["data"], split="all", out_dir=tmp_path / "b",
                          progress=False, figures=False, liver_labels=(1,))
    volume = "volume_ref_ml"
    assert liver_only["original_grid"]["metrics"][volume]["mean"] < both["original_grid"]["metrics"][volume]["mean"]
    assert main(["evaluate", str(trained_run["data"]), "--checkpoint", str(trained_run["checkpoint"]), "--split",
                 "all", "-o", str(tmp_path / "c"), "--liver-labels", "0"]) == 2
