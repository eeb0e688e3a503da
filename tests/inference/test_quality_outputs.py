"""The quality estimate where people look: predict's warning line, stats JSON, report and preview."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from helpers import write_case

from livseg.cli import main
from livseg.inference import quality_model
from livseg.inference.predict import review_first
from livseg.inference.quality_model import Feature, QualityModel


def is_red(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)


def test_review_first_orders_flagged_cases_by_predicted_dice() -> None:
    def case(name: str, review: bool, predicted: float) -> dict:
        return {"case": name, "quality": {"review": review, "predicted_dice": predicted}}

    results = [case("a", False, 0.97), case("b", True, 0.88), case("c", False, 0.95), case("d", True, 0.61),
               {"case": "e"}]  # no quality block (--no-quality): among the unflagged
    assert [s["case"] for s in review_first(results)] == ["d", "b", "a", "c", "e"]


@pytest.fixture
def flag_everything(monkeypatch: pytest.MonkeyPatch) -> QualityModel:
    """A quality model whose review threshold (1.0) every prediction falls under."""
    shipped = quality_model.load_quality_model()
    model = QualityModel("test-flags-all", -3.0, (Feature("entropy_inside", 1.0, 0.01, 0.05, 0.0),), 1.0,
                         shipped.shape_reference, "test")
    monkeypatch.setattr(quality_model, "_shipped", lambda: model)
    return model


def test_predict_warns_and_marks_a_flagged_case(flag_everything: QualityModel, checkpoint: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    for n in range(2):
        write_case(tmp_path / "in", n, shape=(30, 22, 13))
    out = tmp_path / "out"
    rc = main(["predict", str(tmp_path / "in"), "--checkpoint", str(checkpoint), "-o", str(out), "--preview",
               "--device", "cpu"])
    assert rc == 0  # flagged, not failed: the masks are written
    printed = capsys.readouterr().out.splitlines()
    warnings = [line for line in printed if line.startswith("WARNING")]
    assert len(warnings) == 2 and all("review this mask: predicted Dice" in w for w in warnings)
    for n in range(2):
        stats = json.loads((out / f"volume-{n}_stats.json").read_text())
        assert stats["quality"]["review"] is True and stats["quality"]["model"] == "test-flags-all"
        assert stats["quality"]["reasons"][0].startswith("predicted Dice")
        preview = matplotlib.image.imread(out / f"volume-{n}_preview.png")
        assert is_red(preview[preview.shape[0] // 2, :20, :3]).any()  # the red frame's left side
    report = (out / "report.html").read_text()
    assert "2 of 2 case(s) flagged for review" in report and report.count(">REVIEW<") == 2


def test_predict_without_flags_and_without_quality(checkpoint: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    write_case(tmp_path / "in", 0, shape=(30, 22, 13))
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in" / "volume-0.nii.gz"), "--checkpoint", str(checkpoint), "-o", str(out),
                 "--device", "cpu", "--no-quality", "--preview"]) == 0
    stats = json.loads((out / "volume-0_stats.json").read_text())
    assert "quality" not in stats and "quality" not in stats["timings_s"]
    assert "WARNING" not in capsys.readouterr().out
    preview = matplotlib.image.imread(out / "volume-0_preview.png")
    assert not is_red(preview[preview.shape[0] // 2, :20, :3]).any()  # no red frame
