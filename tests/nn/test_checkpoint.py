"""nn.checkpoint: a checkpoint loads with weights_only, and anything else is a CheckpointError."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
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


def _tampered(checkpoint: Path, tmp_path: Path, change) -> Path:  # noqa: ANN001 (a function of the payload)
    """best.pt loaded as a user would (weights_only), changed by ``change``, saved again."""
    payload = torch.load(checkpoint, weights_only=True)
    change(payload)
    path = tmp_path / "tampered.pt"
    torch.save(payload, path)
    return path


def _set(section: str, key: str, value):  # noqa: ANN001, ANN202
    return lambda payload: payload["config"][section].__setitem__(key, value)


def _first_weight(payload) -> torch.Tensor:  # noqa: ANN001
    return next(v for k, v in payload["model"].items() if k.endswith("conv1.weight"))


TAMPERED = {
    "dropout 5.0": (_set("model", "dropout", 5.0), r"stored configuration is invalid: model.dropout: expected 0 <= p < 1"),
    "config section a string": (lambda p: p["config"].__setitem__("model", "big"),
                                r"stored configuration is invalid: model: expected a mapping, got str"),
    "weights a string": (lambda p: p.__setitem__("model", "weights"), r"model weights are a str; expected a dict"),
    "huge grid": (_set("preprocess", "target_shape", [4096, 4096, 2048]),
                  r"preprocess.target_shape \(4096, 4096, 2048\) has 34,359,738,368 voxels"),
    "hu_min above hu_max": (_set("preprocess", "hu_min", 500.0), r"hu_max \(400.0\) must exceed hu_min \(500.0\)"),
    "hu_min NaN": (_set("preprocess", "hu_min", float("nan")), r"preprocess.hu_min: expected a finite number, got nan"),
    "NaN weight": (lambda p: _first_weight(p).view(-1)[3].fill_(float("nan")),
                   r"tensor 'encoders.0.conv1.weight' holds 1 NaN or infinite values"),
    "inf running var": (lambda p: p["model"]["encoders.0.bn1.running_var"].fill_(float("inf")),
                        r"tensor 'encoders.0.bn1.running_var' holds 4 NaN or infinite values"),
    "wrong shape": (lambda p: p["model"].__setitem__("head.weight", torch.zeros(1, 8, 1, 1, 1)),
                    r"tensor 'head.weight' has shape \(1, 8, 1, 1, 1\); the stored model config gives \(1, 4, 1, 1, 1\)"),
    "integer weights": (lambda p: p["model"].__setitem__("head.bias", torch.zeros(1, dtype=torch.int64)),
                        r"tensor 'head.bias' has dtype torch.int64; expected a floating-point tensor"),
    "missing tensor": (lambda p: p["model"].pop("head.bias"), r"model weights lack 1 tensor\(s\) the stored model config "
                                                              r"needs: \['head.bias'\]"),
    "extra tensor": (lambda p: p["model"].__setitem__("extra.weight", torch.zeros(2)),
                     r"model weights hold 1 tensor\(s\) the stored model config has no place for: \['extra.weight'\]"),
    "epoch a string": (lambda p: p.__setitem__("epoch", "ten"), r"'epoch' is 'ten'; expected an integer"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_checkpoint_is_refused_naming_the_field(case: str, checkpoint: Path, tmp_path: Path) -> None:
    change, message = TAMPERED[case]
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_tampered(checkpoint, tmp_path, change))


def test_resume_state_with_nan_is_refused(trained_run: dict[str, Path], tmp_path: Path) -> None:
    change = lambda p: next(iter(p["optimizer"]["state"].values()))["exp_avg"].fill_(float("nan"))  # noqa: E731
    with pytest.raises(CheckpointError, match=r"tampered.pt: optimizer state holds NaN or infinite values"):
        load_checkpoint(_tampered(trained_run["run"] / "last.pt", tmp_path, change))


def test_tampered_checkpoint_exits_2_before_allocating(checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from livseg.cli import main

    ct = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8), np.int16), np.eye(4)), str(ct))
    bad = _tampered(checkpoint, tmp_path, _set("preprocess", "target_shape", [4096, 4096, 2048]))
    capsys.readouterr()
    assert main(["predict", str(ct), "--checkpoint", str(bad), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "at most 134,217,728" in err, err
    assert not (tmp_path / "out").exists()


def test_old_checkpoint_without_new_config_keys_loads_with_defaults(checkpoint: Path, tmp_path: Path) -> None:
    path = _tampered(checkpoint, tmp_path, lambda p: p["config"]["preprocess"].pop("liver_labels"))
    assert load_checkpoint(path).config.preprocess.liver_labels == (1, 2)


def test_validation_is_reusable_for_another_stage(checkpoint: Path) -> None:
    from livseg.nn.checkpoint import check_model_state, check_stored_config

    payload = torch.load(checkpoint, weights_only=True)
    config = check_stored_config(payload["config"], where="stage 2")
    assert check_model_state(payload["model"], config.model, where="stage 2") is payload["model"]
    with pytest.raises(CheckpointError, match=r"^stage 2: tensor 'head.bias' has shape"):
        check_model_state({**payload["model"], "head.bias": torch.zeros(3)}, config.model, where="stage 2")
