"""Stage 2 of the cascade in training: the region cache, the patches, validation on whole regions,
best.pt by the tumour-aware score, exact resumption, and the cascade checkpoint file."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, TINY_REGION, write_tumour_case
from torch import nn

from livseg.config import to_dict
from livseg.data.cache import CachedDataset, load_manifest, preprocess_dataset
from livseg.data.patches import RegionCases, RegionPatches
from livseg.errors import CheckpointError, ConfigError
from livseg.nn.checkpoint import load_checkpoint, save_cascade
from livseg.nn.losses import RegionLoss
from livseg.nn.model import UNet3D
from livseg.training.loops import make_val_loader, validate_epoch
from livseg.training.setup import epoch_lr
from livseg.training.train import train


@pytest.fixture(scope="module")
def region_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("region")
    for n in range(3):
        write_tumour_case(root / "data", n)
    preprocess_dataset(root / "data", root / "cache", config=TINY_REGION.preprocess, region=TINY_REGION.region,
                       progress=False)
    return root / "cache"


def test_region_cache_holds_the_liver_region_with_tumour_labels(region_cache: Path) -> None:
    manifest = load_manifest(region_cache)
    assert manifest["region"] == {"spacing_mm": [2.0, 2.0, 3.0], "context_mm": 6.0}
    entry = manifest["cases"]["lits-0"]
    assert entry["region"]["ras_shape"] == [40, 36, 20]
    image, label = CachedDataset(region_cache, ["lits-0"]).arrays(0)
    assert image.shape == label.shape and set(np.unique(label)) == {0, 1, 2}
    assert image.max() == pytest.approx(1.0) and image.min() == pytest.approx(0.0)  # tumour 400 HU, air -100
    # the liver's box plus 6 mm of context: liver reaches 6 mm = 4 voxels of 1.5 mm from the x faces
    liver_x = np.flatnonzero((label > 0).any(axis=(1, 2)))
    assert liver_x[0] >= 2 and liver_x[-1] <= label.shape[0] - 3


def test_patches_oversample_tumour_and_are_reproducible(region_cache: Path) -> None:
    base = CachedDataset(region_cache)
    always = dataclasses.replace(TINY_REGION.region, tumour_fraction=1.0, patches_per_case=4)
    patches = RegionPatches(base, always, seed=3)
    assert len(patches) == 12
    for index in range(len(patches)):
        item = patches[index]
        assert item["image"].shape == (1, 16, 16, 8) and (item["label"] == 2).any()
    patches.set_epoch(1)
    first = patches[5]["image"]
    assert torch.equal(first, RegionPatches(base, always, seed=3)[5]["image"])  # same (seed, epoch, index)
    patches.set_epoch(2)
    assert not torch.equal(first, patches[5]["image"])


def test_patches_blank_everything_outside_the_jittered_box(region_cache: Path) -> None:
    base = CachedDataset(region_cache, ["lits-1"])
    tight = dataclasses.replace(TINY_REGION.region, margin_mm=0.0, jitter_mm=0.0, patch_shape=(32, 32, 16))
    item = RegionPatches(base, tight, seed=0)[0]
    image, label = base.arrays(0)
    assert int((item["label"] > 0).sum()) == int((label > 0).sum())  # the whole liver fits in the patch
    inside = item["label"][0] > 0
    box = [np.flatnonzero(inside.any(dim=tuple(i for i in range(3) if i != axis)).numpy()) for axis in range(3)]
    outside = torch.ones_like(inside)
    outside[box[0][0] : box[0][-1] + 1, box[1][0] : box[1][-1] + 1, box[2][0] : box[2][-1] + 1] = False
    assert float(item["image"][0][outside].abs().max()) == 0.0  # blanked beyond the liver's box


class _Perfect(nn.Module):
    """Logits from the windowed CT of :func:`write_tumour_case` (0, 0.5, 1): exactly right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([40 * (x - 0.25), 40 * (x - 0.75)], dim=1)


def test_validation_of_a_perfect_model_scores_one(tmp_path: Path) -> None:
    # the region at the cases' own spacing: no interpolation, so "perfect" is exact
    region = dataclasses.replace(TINY_REGION.region, spacing_mm=(1.5, 1.5, 3.0))
    for n in range(3):
        write_tumour_case(tmp_path / "data", n)
    preprocess_dataset(tmp_path / "data", tmp_path / "cache", config=TINY_REGION.preprocess, region=region,
                       progress=False)
    cases = RegionCases(CachedDataset(tmp_path / "cache"), region)
    loader = make_val_loader(cases, TINY_REGION.train, pin_memory=False)
    sums = validate_epoch(_Perfect(), loader, RegionLoss(), threshold=0.5, device=torch.device("cpu"), amp_dtype=None,
                          memory_format=torch.contiguous_format, region=region)
    assert sums["count"] == 3 and sums["tumour_count"] == 3
    assert sums["dice_sum"] == pytest.approx(3.0) and sums["tumour_dice_sum"] == pytest.approx(3.0)


def test_stage2_run_selects_best_by_the_tumour_aware_score(cascade_run: dict[str, Path]) -> None:
    run = cascade_run["stage2_run"]
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"val_tumour_dice", "val_score"} <= set(rows[0])
    for row in rows:
        expected = (float(row["val_dice"]) + float(row["val_tumour_dice"])) / 2
        assert float(row["val_score"]) == pytest.approx(expected, rel=1e-6)
    best = load_checkpoint(run / "best.pt")
    assert best.best_score == pytest.approx(max(float(r["val_score"]) for r in rows), rel=1e-6)


def test_stage2_resumes_exactly(tmp_path: Path) -> None:
    for n in range(5):
        write_tumour_case(tmp_path / "data", n)
    config = dataclasses.replace(TINY_REGION, train=dataclasses.replace(TINY_REGION.train, deterministic=True,
                                                                         lr_schedule="poly"))
    full = train(tmp_path / "data", tmp_path / "full", config, device="cpu", progress=False)
    train(tmp_path / "data", tmp_path / "part", config, device="cpu", progress=False, stop_after_epoch=1)
    resumed = train(tmp_path / "data", tmp_path / "part", config, device="cpu", progress=False, resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert resumed.history[-1]["val_score"] == full.history[-1]["val_score"]
    assert [h["lr"] for h in resumed.history] == [epoch_lr(config.train, e) for e in (1, 2)]  # poly: 0.01, 0.0054


def test_a_stage1_cache_is_refused_for_stage2(cascade_run: dict[str, Path], tmp_path: Path) -> None:
    cache = cascade_run["liver"].parent / "cache"
    with pytest.raises(ConfigError, match="region: cache None"):
        train(cache, tmp_path / "run", TINY_REGION, device="cpu", progress=False)


def test_cascade_checkpoint_holds_both_stages(cascade_run: dict[str, Path], tmp_path: Path) -> None:
    cascade = load_checkpoint(cascade_run["cascade"])
    assert cascade.config == load_checkpoint(cascade_run["liver"]).config
    assert cascade.cascade is not None and cascade.cascade.config == TINY_REGION
    assert "optimizer" not in cascade.extra
    stage2 = load_checkpoint(cascade_run["tumour"])
    for key, value in stage2.model_state.items():
        assert torch.equal(cascade.cascade.model_state[key], value)
    with pytest.raises(CheckpointError, match="stage 1 of a cascade must be a liver network"):
        save_cascade(tmp_path / "wrong.pt", cascade_run["tumour"], cascade_run["liver"])
    with pytest.raises(CheckpointError, match="already a cascade"):
        save_cascade(tmp_path / "twice.pt", cascade_run["cascade"], cascade_run["tumour"])
    assert not (tmp_path / "wrong.pt").exists() and not (tmp_path / "twice.pt").exists()


def test_version_1_checkpoints_still_load(tmp_path: Path) -> None:
    config = to_dict(TINY)
    del config["region"]  # written before stage 2 existed
    payload = {"format": "livseg-checkpoint", "version": 1, "livseg": "0.1.0", "config": config,
               "model": UNet3D(TINY.model).state_dict(), "epoch": 3, "best_score": 0.5, "best_epoch": 2, "history": []}
    torch.save(payload, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    assert old.config == TINY and old.cascade is None and math.isclose(old.best_score, 0.5)


@pytest.mark.parametrize(
    "schedule, epoch, expected",
    [("constant", 7, 0.01), ("poly", 1, 0.01), ("poly", 6, 0.01 * 0.5**0.9), ("poly", 10, 0.01 * 0.1**0.9)],
)
def test_learning_rate_schedule(schedule: str, epoch: int, expected: float) -> None:
    tc = dataclasses.replace(TINY.train, lr=0.01, epochs=10, lr_schedule=schedule)
    assert epoch_lr(tc, epoch) == pytest.approx(expected, rel=1e-12)
