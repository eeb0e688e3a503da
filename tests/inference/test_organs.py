"""The neighbours' label map of a multi-organ model (livseg.inference.organs, segment/predict organs=True)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from helpers import write_case
from livseg.config import ModelConfig, PreprocessConfig, RunConfig
from livseg.data.io.volume import Volume, load_volume
from livseg.errors import ConfigError
from livseg.inference.organs import ORGAN_FLOOR, organ_map
from livseg.inference.outputs import OUTPUT_NIFTI_SUFFIXES, case_outputs
from livseg.inference.predict import predict
from livseg.inference.segment import segment
from livseg.nn.checkpoint import save_checkpoint
from livseg.nn.model import UNet3D

CLASSES = ("background", "liver", "stomach", "spleen")
MULTI = RunConfig(name="tiny-organs", preprocess=PreprocessConfig(target_shape=(16, 16, 8)),
                  model=ModelConfig(channels=(4, 8), out_channels=4, classes=CLASSES, dropout=0.0))


def test_organ_map_hand_made() -> None:
    """The paper grid equal to the CT's: probabilities map back one to one."""
    volume = Volume(np.zeros((4, 4, 2), np.float32), np.diag([2.0, 2.0, 5.0, 1.0]))  # 20 uL voxels
    probs = np.zeros((4, 4, 4, 2), np.float32)
    probs[0] = 0.6  # background wins by default
    probs[2, :2, :, :] = 0.7  # stomach on the first two x rows
    probs[3, 3, 3, :] = 0.9  # spleen in one column
    probs[1, 2, :, :] = 0.95  # liver channel high on row 2: ignored, the liver mask decides
    liver = np.zeros((4, 4, 2), bool)
    liver[3, :3, :] = True
    labels, stats = organ_map(probs, CLASSES, liver, volume, PreprocessConfig(target_shape=(4, 4, 2)), None)
    expected = np.zeros((4, 4, 2), np.uint8)
    expected[:2] = 2
    expected[3, :3] = 1
    expected[3, 3] = 3
    assert np.array_equal(labels, expected)
    assert stats["legend"] == {"0": "background", "1": "liver", "2": "stomach", "3": "spleen"}
    assert stats["volume_ml"] == {"liver": pytest.approx(6 * 0.02), "stomach": pytest.approx(16 * 0.02),
                                  "spleen": pytest.approx(2 * 0.02)}


def test_organ_map_is_the_argmax_of_a_softmax_outside_the_liver() -> None:
    """Away from the liver mask the map is the argmax of background and the other classes; the
    floor below which probabilities are not mapped back only matters where that argmax is itself
    below the floor (the liver takes nearly everything there), which then stays background."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, (4, 6, 6, 3))
    logits[1, :, :, 0] += 8.0  # the slice z=0: liver almost certain, the others below the floor
    probs = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    volume = Volume(np.zeros((6, 6, 3), np.float32), np.eye(4))
    liver = np.zeros((6, 6, 3), bool)
    liver[:2, :2, 1] = True
    labels, _ = organ_map(probs, CLASSES, liver, volume, PreprocessConfig(target_shape=(6, 6, 3)), None)
    others = probs[[0, 2, 3]]
    expected = np.array([0, 2, 3], np.uint8)[others.argmax(0)]
    expected[others.max(0) < ORGAN_FLOOR] = 0
    expected[liver] = 1
    assert np.count_nonzero(others.max(0) < ORGAN_FLOOR) > 0  # the floor is exercised
    assert np.array_equal(labels, expected)


@pytest.fixture()
def multi_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = UNet3D(MULTI.model)
    with torch.no_grad():  # a network that calls everything liver but a little stomach: a non-empty mask
        model.head.bias.copy_(torch.tensor([0.0, 3.0, 1.0, -2.0]))
    return save_checkpoint(tmp_path / "multi.pt", config=MULTI, model_state=model.state_dict())


def test_segment_with_organs(multi_checkpoint: Path, tmp_path: Path) -> None:
    write_case(tmp_path / "data", 0)
    volume = load_volume(tmp_path / "data" / "volume-0.nii.gz")
    plain = segment(volume, str(multi_checkpoint))
    result = segment(volume, str(multi_checkpoint), organs=True)
    assert np.array_equal(result.mask, plain.mask) and plain.organs is None  # the default output is unchanged
    assert result.organs.shape == volume.shape and result.organs.dtype == np.uint8
    assert np.array_equal(result.organs == 1, result.mask > 0)  # the liver in the organ map is the mask
    assert set(np.unique(result.organs)) <= {0, 1, 2, 3}
    assert result.legend == {"0": "background", "1": "liver", "2": "stomach", "3": "spleen"}
    volumes = result.stats["organs"]["volume_ml"]
    assert volumes["liver"] == pytest.approx(result.stats["liver_volume_ml"], abs=0.005)  # rounded to 0.01 mL
    assert result.stats["liver_volume_ml"] > 0
    with pytest.raises(ConfigError, match="multi-organ"):
        segment(volume, None, organs=True)  # liver-v1: no neighbours to give


def test_predict_writes_the_organ_map(multi_checkpoint: Path, tmp_path: Path) -> None:
    write_case(tmp_path / "data", 0)
    stats = predict([tmp_path / "data" / "volume-0.nii.gz"], checkpoint=multi_checkpoint, out_dir=tmp_path / "out",
                    organs=True, progress=False)[0]
    labels = nib.load(tmp_path / "out" / "volume-0_organs.nii.gz")
    mask = nib.load(tmp_path / "out" / "volume-0_liver.nii.gz")
    assert np.allclose(labels.affine, mask.affine) and labels.shape == mask.shape
    assert np.array_equal(np.asarray(labels.dataobj) == 1, np.asarray(mask.dataobj) > 0)
    legend = json.loads((tmp_path / "out" / "volume-0_organs.json").read_text())
    assert legend["legend"]["2"] == "stomach" and set(legend["volume_ml"]) == {"liver", "stomach", "spleen"}
    assert stats["organs"]["volume_ml"] == legend["volume_ml"]
    # every NIfTI predict writes is recognised as its own output when a folder is predicted again
    niftis = [p.name for p in case_outputs("o", "c", organs=True).values() if p.name.endswith(".nii.gz")]
    assert all(name.endswith(OUTPUT_NIFTI_SUFFIXES) for name in niftis)
    with pytest.raises(ConfigError, match="multi-organ"):  # before any case is written
        predict([tmp_path / "data" / "volume-0.nii.gz"], out_dir=tmp_path / "out2", organs=True, progress=False)
    assert not list((tmp_path / "out2").glob("*.nii.gz"))


def test_cli_predict_organs(multi_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from livseg.cli import main

    write_case(tmp_path / "data", 0)
    args = ["predict", str(tmp_path / "data" / "volume-0.nii.gz"), "--checkpoint", str(multi_checkpoint),
            "-o", str(tmp_path / "out"), "--organs"]
    assert main(args) == 0
    assert "neighbours, mL: stomach" in capsys.readouterr().out
    assert (tmp_path / "out" / "volume-0_organs.json").is_file()
    # a liver-only model: one line, exit status 2, nothing written
    assert main(["predict", str(tmp_path / "data" / "volume-0.nii.gz"), "-o", str(tmp_path / "o2"), "--organs"]) == 2
    err = capsys.readouterr().err
    assert "multi-organ" in err and len(err.strip().splitlines()) == 1
