"""Stage 2 at inference: the region back on the CT's grid (with a perfect stage 2), post-processing,
tumour statistics, and the cascade through predict, evaluate and the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import TINY_REGION, write_tumour_case
from torch import nn

from livseg.cli import main
from livseg.data.io.volume import Volume, load_labels, load_volume
from livseg.evaluation.evaluate import evaluate
from livseg.evaluation.metrics import dice
from livseg.inference.cascade import Cascade, segment_region, tumour_mask, tumour_stats
from livseg.inference.predict import predict
from livseg.inference.segment import load_model


def _perfect() -> nn.Module:
    """A 1x1x1 convolution that reads the labels off the windowed CT of write_tumour_case
    (background 0, liver 0.5, tumour 1): liver-or-tumour above 0.25, tumour above 0.75."""
    conv = nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.full((2, 1, 1, 1, 1), 40.0))
        conv.bias.copy_(torch.tensor([-10.0, -30.0]))
    return conv.eval()


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Volume, np.ndarray]:
    folder = tmp_path_factory.mktemp("case")
    write_tumour_case(folder, 0, shape=(48, 44, 24))
    volume = load_volume(folder / "volume-0.nii.gz")
    return volume, load_labels(folder / "segmentation-0.nii.gz", like=volume)


def test_a_perfect_stage2_gives_back_the_reference_on_the_input_grid(case) -> None:
    volume, labels = case
    config = dataclasses.replace(TINY_REGION, region=dataclasses.replace(TINY_REGION.region, min_lesion_mm3=0.0))
    out, _ = segment_region(volume, labels > 0, _perfect(), config)
    assert out.shape == volume.shape and out.dtype == np.uint8 and set(np.unique(out)) == {0, 1, 2}
    assert dice(out > 0, labels > 0) > 0.97  # region at 2 x 2 x 3 mm, the CT at 1.5 x 1.5 x 3 mm
    assert dice(out == 2, labels == 2) > 0.9
    # a stage-1 box that misses part of the liver: nothing is predicted beyond box + margin
    cut = labels > 0
    cut[: np.flatnonzero(cut.any(axis=(1, 2)))[0] + 8] = False  # the first 8 columns (12 mm) of liver lost
    partial, _ = segment_region(volume, cut, _perfect(), config)
    assert (partial > 0).sum() < (out > 0).sum() and not (partial[: np.flatnonzero(cut.any(axis=(1, 2)))[0] - 3] > 0).any()


def test_small_lesions_become_liver(case) -> None:
    volume, labels = case
    tumour_mm3 = float(np.count_nonzero(labels == 2)) * volume.voxel_volume_ml * 1000
    config = dataclasses.replace(TINY_REGION, region=dataclasses.replace(TINY_REGION.region,
                                                                         min_lesion_mm3=tumour_mm3 * 2))
    out, _ = segment_region(volume, labels > 0, _perfect(), config)
    assert not (out == 2).any() and dice(out > 0, labels > 0) > 0.97
    raw, _ = segment_region(volume, labels > 0, _perfect(), config, postprocess=False)
    assert (raw == 2).any()


def test_no_liver_no_region(case) -> None:
    volume, _ = case
    assert not segment_region(volume, np.zeros(volume.shape, bool), _perfect(), TINY_REGION)[0].any()


def test_tumour_stats_by_hand() -> None:
    labels = np.zeros((20, 20, 10), np.uint8)
    labels[2:18, 2:18, 2:8] = 1  # 16 x 16 x 6 = 1536 voxels of liver
    labels[4:8, 4:8, 3:5] = 2  # lesion of 32 voxels, 4 x 4 px
    labels[12:14, 12:13, 5] = 2  # lesion of 2 voxels
    volume = Volume(array=np.zeros(labels.shape, np.float32), affine=np.diag([0.5, 0.5, 2.0, 1.0]))
    stats = tumour_stats(labels, volume)
    voxel_ml = 0.5 * 0.5 * 2 / 1000
    assert stats["tumour_count"] == 2
    assert stats["tumour_volume_ml"] == pytest.approx(34 * voxel_ml)
    assert stats["tumour_burden_percent"] == pytest.approx(100 * 34 / 1536)
    big, small = stats["tumours"]
    assert big["volume_ml"] == pytest.approx(32 * voxel_ml) and big["diameter_mm"] == pytest.approx(np.hypot(2.0, 1.5))
    assert big["centroid_mm"] == pytest.approx([5.5 * 0.5, 5.5 * 0.5, 3.5 * 2])
    assert small["diameter_mm"] == pytest.approx(1.0)  # 2 px along x at 0.5 mm


def test_load_model_of_a_cascade(cascade_run: dict[str, Path]) -> None:
    model, config = load_model(cascade_run["cascade"], "cpu")
    assert isinstance(model, Cascade) and config.name == "tiny" and model.tumour_config.name == "tiny-region"
    single, _ = load_model(cascade_run["liver"], "cpu")
    assert not isinstance(single, Cascade)


def test_predict_with_a_cascade_writes_lits_labels(cascade_run: dict[str, Path], tmp_path: Path) -> None:
    ct = cascade_run["data"] / "volume-1.nii.gz"
    (stats,) = predict([ct], checkpoint=cascade_run["cascade"], out_dir=tmp_path, device="cpu", preview=True,
                       progress=False)
    written = nib.load(str(tmp_path / stats["outputs"]["mask"]))
    source = nib.load(str(ct))
    assert written.shape == source.shape and np.allclose(written.affine, source.affine)
    mask = np.asarray(written.dataobj)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2}
    saved = json.loads((tmp_path / stats["outputs"]["stats"]).read_text())
    assert saved["tumour_count"] == len(saved["tumours"]) and "stage2" in saved["timings_s"]
    assert saved["liver_volume_ml"] == pytest.approx(np.count_nonzero(mask) * float(np.prod(written.header.get_zooms())) / 1000)
    assert (tmp_path / stats["outputs"]["preview"]).stat().st_size > 0


def test_cascade_on_the_builtin_liver_model_pads_like_it(cascade_run: dict[str, Path], tmp_path: Path) -> None:
    from livseg.inference.segment import segment
    from livseg.nn.checkpoint import save_cascade
    from livseg.weights import builtin_path

    # the built-in stage 1 sees the CT's own extent at 3 mm: 40 x 36 x 20 voxels of 1.5 x 1.5 x 3 mm
    # give about 20 x 18 x 20, not multiples of its 16; the cascade must pad it as the model alone does
    with builtin_path("liver-v1") as liver:
        cascade = save_cascade(tmp_path / "builtin-cascade.pt", liver, cascade_run["tumour"])
    model = load_model(cascade, "cpu")
    assert model[0].divisor == 16
    volume = load_volume(cascade_run["data"] / "volume-1.nii.gz")
    result = segment(volume, model)
    assert result.mask.shape == volume.shape and set(np.unique(result.mask)) <= {0, 1, 2}


def test_evaluate_a_cascade_reports_tumour_and_stage1(cascade_run: dict[str, Path], tmp_path: Path) -> None:
    summary = evaluate(cascade_run["cascade"], cascade_run["data"], split="all", out_dir=tmp_path, device="cpu",
                       progress=False, figures=False)
    assert {"network_grid", "original_grid", "stage1_original_grid", "tumour"} <= set(summary)
    assert summary["tumour"]["n_cases"] == 5 and summary["tumour"]["lesions_ref"] == 5
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"tumour_dice", "lesions_detected", "burden_error_pct"} <= set(header)


def test_cli_cascade(cascade_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cascade.pt"
    args = ["cascade", "--liver", str(cascade_run["liver"]), "--tumour", str(cascade_run["tumour"]), "-o", str(out)]
    assert main(args) == 0 and out.is_file()
    assert main(args) == 2
    assert "exist" in capsys.readouterr().err
    swapped = ["cascade", "--liver", str(cascade_run["tumour"]), "--tumour", str(cascade_run["liver"]), "-o",
               str(tmp_path / "swapped.pt")]
    assert main(swapped) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "stage 1 of a cascade must be a liver network" in err
    assert not (tmp_path / "swapped.pt").exists()


def test_tumour_mask_keeps_lesions_inside_the_liver_and_above_the_floor() -> None:
    """Hand-built: a 2x2x2 lesion (8 voxels of 2 mm^3 = 16 mm^3) and a 1-voxel one (2 mm^3) inside
    the liver, and a confident voxel outside it; a 10 mm^3 floor keeps only the big lesion."""
    prob = np.zeros((8, 8, 8), dtype=np.float32)
    liver = np.zeros((8, 8, 8), dtype=bool)
    liver[:, :, :6] = True
    prob[1:3, 1:3, 1:3] = 0.9  # 8 voxels
    prob[5, 5, 4] = 0.6  # 1 voxel, above the threshold
    prob[5, 1, 1] = 0.4  # below the threshold
    prob[4, 4, 7] = 0.99  # outside the liver
    kept = tumour_mask(prob, liver, threshold=0.5, voxel_mm3=2.0, min_mm3=10.0)
    assert kept.sum() == 8 and kept[1:3, 1:3, 1:3].all()
    unfiltered = tumour_mask(prob, liver, threshold=0.5, voxel_mm3=2.0, min_mm3=None)
    assert unfiltered.sum() == 9 and unfiltered[5, 5, 4] and not unfiltered[4, 4, 7]
