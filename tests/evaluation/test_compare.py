"""Two checkpoints side by side (livseg evaluate --compare): same cases, per case and mean, Dice and ASSD."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
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


def test_both_checkpoints_are_scored_against_one_reference(trained_run: dict[str, Path], tmp_path: Path) -> None:
    """A model fine-tuned on other label values (here: liver = 1 only) and one trained on LiTS's 1,2
    are scored against the same liver: that of the checkpoint whose run split is used (after)."""
    from dataclasses import replace

    from livseg.nn.checkpoint import load_checkpoint, save_checkpoint

    original = load_checkpoint(trained_run["checkpoint"])
    assert tuple(original.config.preprocess.liver_labels) == (1, 2)
    config = replace(original.config, preprocess=replace(original.config.preprocess, liver_labels=(1,)))
    relabelled = save_checkpoint(tmp_path / "liver-only.pt", config=config, model_state=original.model_state)
    result = compare(trained_run["checkpoint"], relabelled, trained_run["data"], out_dir=tmp_path / "cmp",
                     split="all", progress=False, figures=False)
    assert result["summaries"]["before"]["liver_labels"] == result["summaries"]["after"]["liver_labels"] == [1]
    for row in result["cases"]:  # the same weights against the same reference: no change at all
        assert row["dice_change"] == 0.0 and row["assd_change"] == 0.0


def _constant_checkpoint(path: Path, logit: float) -> Path:
    """TINY's network that outputs ``logit`` at every voxel (every weight 0, the head's bias = logit):
    every voxel liver (> 0) or none (< 0), whatever the CT."""
    import torch
    from helpers import TINY

    from livseg.nn.checkpoint import save_checkpoint
    from livseg.nn.model import UNet3D

    state = {k: (v if not v.is_floating_point() or k.endswith("running_var") else torch.zeros_like(v))
             for k, v in UNet3D(TINY.model).state_dict().items()}
    state["head.bias"] = torch.tensor([logit])
    return save_checkpoint(path, config=TINY, model_state=state)


def _assd_by_brute_force(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    """ASSD in mm, computed here from its definition: the surface is every voxel of a mask with a
    6-neighbour outside it (or outside the array); the mean of all surface-to-other-surface
    nearest distances, both ways, by comparing every pair of surface voxels."""
    def surface(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, 1)
        inner = padded[1:-1, 1:-1, 1:-1].copy()
        for axis in range(3):
            for step in (-1, 1):
                inner &= np.roll(padded, step, axis)[1:-1, 1:-1, 1:-1]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)

    a, b = surface(pred), surface(ref)
    gaps = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return float((gaps.min(1).sum() + gaps.min(0).sum()) / (len(a) + len(b)))


def test_comparison_table_by_hand(trained_run: dict[str, Path], tmp_path: Path) -> None:
    """Before: a network that calls every voxel liver; after: one that finds none. On write_case's
    24 x 20 x 12 cases (5,760 voxels; liver 9 x 11 x 8 = 792 voxels in cases 0 and 2, 8 x 11 x 8 =
    704 in case 1) every-voxel Dice is 2 L / (L + 5760); no liver is Dice 0 and ASSD inf, so the
    mean ASSD has no case to average (nan in the CSV, null in the JSON)."""
    everything = _constant_checkpoint(tmp_path / "everything.pt", 10.0)
    nothing = _constant_checkpoint(tmp_path / "nothing.pt", -10.0)
    result = compare(everything, nothing, trained_run["data"], out_dir=tmp_path / "cmp", split="all",
                     progress=False, figures=False)
    expected = {"lits-0": 1584 / 6552, "lits-1": 1408 / 6464, "lits-2": 1584 / 6552}
    table = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert [r["case"] for r in table] == ["lits-0", "lits-1", "lits-2", "mean"]
    for row in table[:3]:
        case = int(row["case"][-1])
        image = nib.load(str(trained_run["data"] / f"segmentation-{case}.nii.gz"))
        ref = image.get_fdata() > 0
        spacing = tuple(float(z) for z in image.header.get_zooms())  # 0.8, 0.8, 2.5 as float32 holds them
        assert int(ref.sum()) == (704 if case == 1 else 792)
        assert float(row["dice_before"]) == pytest.approx(expected[row["case"]], abs=1e-12)
        assert float(row["dice_after"]) == 0.0
        assert float(row["dice_change"]) == pytest.approx(-expected[row["case"]], abs=1e-12)
        by_hand = _assd_by_brute_force(np.ones(ref.shape, bool), ref, spacing)
        assert float(row["assd_before"]) == pytest.approx(by_hand, rel=1e-9)
        assert float(row["assd_after"]) == math.inf and float(row["assd_change"]) == math.inf
    mean = table[3]
    assert float(mean["dice_before"]) == pytest.approx((2 * 1584 / 6552 + 1408 / 6464) / 3, abs=1e-12)
    assert float(mean["dice_change"]) == pytest.approx(-float(mean["dice_before"]), abs=1e-12)
    assert all(math.isnan(float(mean[f"assd_{side}"])) for side in ("before", "after", "change"))
    stored = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert stored["mean"]["assd_before"] is None and stored["cases"][0]["assd_after"] is None
    assert stored["cases"][1]["dice_before"] == pytest.approx(1408 / 6464, abs=1e-12)
    assert result["mean"]["dice_before"] == pytest.approx(float(mean["dice_before"]), abs=1e-12)  # what it returns
