"""The demo: a shortened end-to-end run (tiny phantoms, grid and network), its report files,
its time budget, and the CLI's help, table and bad-input exits.

The full-size demo (``livseg demo`` with its defaults, several minutes) is measured by hand;
its wall time and held-out Dice are in README.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import livseg.demo
from livseg.cli import main
from livseg.demo import DemoResult, run_demo
from livseg.errors import ConfigError, OutputExistsError

PNG = b"\x89PNG\r\n\x1a\n"
QUICK = {
    "n_train": 4,  # 3 train + 1 validation
    "n_test": 1,
    "phantom_shape": (32, 32, 16),
    # small enough for seconds, big enough that the one held-out mask is not empty (finite ASSD)
    "overrides": ["preprocess.target_shape=16,16,8", "model.channels=8,16", "train.lr=0.01", "train.epochs=10",
                  "train.num_threads=1"],
    # stage 2 on the ~12 mm phantoms: a region of a few voxels, one 16 x 16 x 8 patch
    "tumour_overrides": ["region.spacing_mm=10,10,10", "region.patch_shape=16,16,8", "region.patches_per_case=4",
                         "model.channels=4,8", "train.lr=0.01", "train.epochs=5", "train.num_threads=1"],
    "progress": False,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """One shortened demo (a few seconds), shared by the tests that read its outputs."""
    return run_demo(tmp_path_factory.mktemp("demo") / "out", minutes=5.0, seed=3, **QUICK)


@pytest.mark.slow
def test_shortened_demo_writes_every_report_file(demo: DemoResult) -> None:
    out = demo.out_dir
    summary = json.loads((out / "demo_summary.json").read_text())  # strict JSON: no NaN / inf
    assert summary["arguments"]["seed"] == 3 and summary["config"]["name"] == "demo"
    assert summary["tumour_config"]["name"] == "demo-tumour" and summary["tumour_config"]["train"]["seed"] == 3
    assert [c["case"] for c in summary["cases"]] == ["lits-0"]
    for row in [*demo.cases, demo.mean]:
        for key in ("dice", "assd_mm", "dice_stage1", "assd_stage1_mm", "volume_pred_ml", "volume_true_ml",
                    "dice_network_grid", "lesions", "lesions_found", "lesions_fp"):
            assert math.isfinite(row[key]), (key, row)
        assert 0.0 <= row["dice"] <= 1.0 and row["volume_true_ml"] > 0
        assert 0 <= row["lesions_found"] <= row["lesions"]
    assert summary["mean"]["dice"] == pytest.approx(demo.mean["dice"])
    # the cascade's evaluation on the held-out folder: stage 1's grid, the cascade and stage 1 alone, tumours
    assert set(demo.evaluation) >= {"network_grid", "original_grid", "stage1_original_grid", "tumour"}
    assert demo.evaluation["split"] == "all" and summary["tumour"]["n_cases"] == 1
    assert demo.training["epochs"] == 10 and not demo.training["stopped_on_time"]
    assert demo.training["tumour"]["epochs"] == 5 and math.isfinite(demo.training["tumour"]["best_val_score"])
    assert demo.paths["checkpoint"].name == "cascade.pt"

    figures = [demo.figures["curves"], demo.figures["curves_tumour"], demo.figures["preview"],
               *demo.figures["evaluation"]]
    assert len(demo.figures["evaluation"]) == 1
    for path in figures:
        assert Path(path).read_bytes()[:8] == PNG, path
    assert "<table>" in Path(demo.figures["report"]).read_text()
    assert demo.paths["mask"].is_file() and demo.paths["checkpoint"].is_file()
    assert set(demo.seconds) == {"phantoms", "preprocess", "train", "preprocess_tumour", "train_tumour", "evaluate",
                                 "predict", "total"}


@pytest.mark.slow
def test_held_out_phantoms_are_not_training_phantoms(demo: DemoResult) -> None:
    train = (demo.out_dir / "phantoms" / "train" / "volume-0.nii.gz").read_bytes()
    test = (demo.out_dir / "phantoms" / "test" / "volume-0.nii.gz").read_bytes()
    assert train != test


@pytest.mark.slow
def test_table_lists_the_cases_the_mean_and_the_figures(demo: DemoResult) -> None:
    table = demo.table()
    assert "lits-0" in table and "\nmean " in table and "lesion recall" in table and "Dice s1" in table
    assert str(demo.figures["curves"]) in table and str(demo.figures["preview"]) in table
    assert str(demo.figures["report"]) in table and str(demo.paths["summary"]) in table


@pytest.mark.slow
def test_an_earlier_demo_is_not_overwritten_unless_asked(demo: DemoResult) -> None:
    with pytest.raises(OutputExistsError, match="overwrite"):
        run_demo(demo.out_dir, minutes=1.0, **QUICK)


@pytest.mark.slow
def test_the_budget_ends_training_after_the_epoch_that_crosses_it(tmp_path: Path) -> None:
    # 0.05 min leaves nothing after the evaluation reserve: exactly one epoch of each stage is trained
    result = run_demo(tmp_path / "out", minutes=0.05, **{**QUICK, "overrides": [*QUICK["overrides"], "train.epochs=50"],
                                                         "tumour_overrides": [*QUICK["tumour_overrides"],
                                                                              "train.epochs=50"]})
    assert result.training["epochs"] == 1 and result.training["stopped_on_time"]
    assert result.training["tumour"]["epochs"] == 1 and result.training["tumour"]["stopped_on_time"]
    assert (tmp_path / "out" / "run" / "best.pt").is_file() and (tmp_path / "out" / "cascade.pt").is_file()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"minutes": -1.0}, "minutes"),
        ({"minutes": 0.0}, "minutes"),
        ({"minutes": float("nan")}, "minutes"),
        ({"n_train": 1}, "n_train"),
        ({"n_test": 0}, "n_test"),
        ({"phantom_shape": (32, 32, 4)}, "phantom_shape"),
        ({"overrides": ["train.epochs=0"]}, "epochs"),
        ({"tumour_overrides": ["region.overlap=1.0"]}, "overlap"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        run_demo(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--minutes" in text and "--out" in text and "--seed" in text


@pytest.mark.parametrize("minutes", ["-1", "0"])
def test_cli_bad_minutes_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, minutes: str) -> None:
    assert main(["demo", "--out", str(tmp_path / "out"), "--minutes", minutes]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "livseg demo: error:" in err and "minutes" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_prints_the_table(demo: DemoResult, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    seen = {}

    def fake_run_demo(out_dir: Path, **kwargs: object) -> DemoResult:
        seen.update(kwargs, out_dir=out_dir)
        return demo

    monkeypatch.setattr(livseg.demo, "run_demo", fake_run_demo)
    assert main(["demo", "--out", "somewhere", "--minutes", "2.5", "--seed", "7", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == demo.table()
    assert seen["out_dir"] == Path("somewhere") and seen["minutes"] == 2.5 and seen["seed"] == 7
