"""nn.checkpoint: a checkpoint loads with weights_only, and anything else is a CheckpointError."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from livseg.errors import CheckpointError, InputFileNotFoundError
from livseg.nn.checkpoint import build_model, load_checkpoint


def test_round_trip(checkpoint: Path) -> None:
    loaded = load_checkpoint(checkpoint)
    assert loaded.epoch >= 1 and loaded.best_epoch >= 1 and loaded.history
    assert "optimizer" not in loaded.extra  # best.pt is for prediction; last.pt resumes
    assert not build_model(loaded).training


@pytest.mark.parametrize(
    ("bad", "match"),
    [("foreign", "not a livseg checkpoint"), ("text", "cannot read checkpoint"), ("truncated", "cannot read checkpoint")],
)
def test_bad_checkpoint_is_a_checkpoint_error(bad: str, match: str, checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / f"{bad}.pt"
    if bad == "foreign":
        torch.save({"a": 1}, path)
    elif bad == "text":
        path.write_text("not a checkpoint\n")
    else:
        path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_missing_checkpoint() -> None:
    with pytest.raises(InputFileNotFoundError, match="checkpoint not found"):
        load_checkpoint("nowhere/best.pt")
