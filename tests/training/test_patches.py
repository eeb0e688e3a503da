"""Patch sampling (livseg.training.patches and train.sampling="patches"): patches, augmentation,
the learning-rate schedule, runs that learn, resume bit for bit and validate on each CT's own grid."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_PATCHES

from livseg.config import PatchConfig, TrainConfig, apply_overrides, get_preset
from livseg.errors import ConfigError, DatasetError
from livseg.training.patches import PatchCase, PatchSampler, augment_batch, sample_patch, step_lrs
from livseg.training.train import train

STILL = PatchConfig(rotate_deg=(0.0, 0.0, 0.0), scale=0.0, stretch=0.0, p_low_res_z=0.0, p_low_res_xy=0.0,
                    p_blur=0.0, intensity_scale=0.0, intensity_shift=0.0, noise_std=0.0)


def block_case(shape: tuple[int, int, int] = (20, 18, 10), seed: int = 0) -> PatchCase:
    rng = np.random.default_rng(seed)
    image = np.full(shape, 0.1, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    label[4:12, 3:11, 2:8] = 255
    image[label > 0] = 0.6
    image += rng.normal(0, 0.03, shape).astype(np.float32)
    return PatchCase(f"block-{seed}", image, label, label_scale=255.0)


def with_train(config, **changes):  # noqa: ANN001, ANN201
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


def test_sample_patch_centres_on_liver_and_pads_small_cases() -> None:
    case = block_case()
    rng = np.random.default_rng(0)
    for _ in range(20):
        image, label = sample_patch(case, (8, 8, 8), rng, foreground=1.0)
        assert image.shape == label.shape == (8, 8, 8) and label.max() == 1.0  # uint8 255 -> 1.0
    image, label = sample_patch(case, (32, 24, 16), rng, foreground=0.5)  # bigger than the case
    np.testing.assert_array_equal(image[:20, :18, :10], case.image)
    assert np.all(image[20:] == 0) and np.all(label[:, 18:] == 0) and label.sum() == 8 * 8 * 6


def test_augment_batch_without_augmentation_is_the_identity() -> None:
    case = block_case()
    image = torch.from_numpy(case.image)[None, None].repeat(2, 1, 1, 1, 1)
    label = torch.from_numpy(case.label.astype(np.float32) / 255)[None, None].repeat(2, 1, 1, 1, 1)
    out_image, out_label = augment_batch(image, label, STILL, np.random.default_rng(0))
    torch.testing.assert_close(out_image, image, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_label, label, atol=1e-5, rtol=0)


def test_augment_batch_rotation_keeps_the_liver_volume_and_soft_labels() -> None:
    label = torch.zeros(1, 1, 32, 32, 16)
    label[0, 0, 8:24, 10:22, 4:12] = 1
    spin = dataclasses.replace(STILL, rotate_deg=(0.0, 0.0, 30.0))
    _, out = augment_batch(label.clone(), label.clone(), spin, np.random.default_rng(3))
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert float(out.sum()) == pytest.approx(float(label.sum()), rel=0.03)  # rigid: same volume
    assert not torch.equal(out, label)


def test_step_lrs_warm_up_then_cosine_to_the_final_rate() -> None:
    tc, pc = TrainConfig(lr=1.0, epochs=2, lr_schedule="cosine"), PatchConfig(steps_per_round=3, warmup_steps=2,
                                                                             final_lr=0.1)
    lrs = step_lrs(tc, pc, 1, 1.0) + step_lrs(tc, pc, 2, 1.0)
    # steps 0, 1 warm up (1/2, 2/2); steps 2..5 decay over t = 0, 1/4, 2/4, 3/4 of the 4 steps after warm-up
    expected = [0.5, 1.0] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)) for t in (0, 0.25, 0.5, 0.75)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert step_lrs(TrainConfig(lr=0.3), pc, 2, 0.3) == [0.3, 0.3, 0.3]  # constant: the epoch's rate


def test_sampler_state_continues_the_same_draws() -> None:
    config = dataclasses.replace(TINY_PATCHES, patches=dataclasses.replace(TINY_PATCHES.patches, steps_per_round=2))
    cases = [block_case(seed=s) for s in range(2)]
    first = PatchSampler(cases, config, seed=7)
    next(iter(first))
    saved = first.state()
    expected = [b["image"] for b in first]
    again = PatchSampler(cases, config, seed=123)
    again.set_state(saved)
    assert all(torch.equal(a["image"], b) for a, b in zip(again, expected))


def test_sampler_draws_data_cases_real_weight_times_as_often() -> None:
    config = dataclasses.replace(TINY_PATCHES, patches=dataclasses.replace(TINY_PATCHES.patches, real_weight=3.0))
    sampler = PatchSampler([block_case(seed=0), dataclasses.replace(block_case(seed=1), weight=3.0)], config, seed=0)
    assert sampler.p.tolist() == [0.25, 0.75]


def test_patch_run_learns_and_validates_on_each_ct_own_grid(tumour_cases: Path, tmp_path: Path) -> None:
    from livseg.evaluation.evaluate import evaluate

    config = with_train(dataclasses.replace(TINY_PATCHES, patches=dataclasses.replace(TINY_PATCHES.patches,
                        steps_per_round=15)), epochs=4)
    result = train(tumour_cases, tmp_path / "run", config, device="cpu", progress=False)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [15, 30, 45, 60]
    assert result.best_score > 0.8
    # the validation Dice is evaluate's original-grid Dice of best.pt on the same cases
    summary = evaluate(result.paths["best"], tumour_cases, split="val", out_dir=tmp_path / "eval", progress=False,
                       figures=False)
    # (evaluate folds the batch norms: a voxel at the threshold may flip, no more)
    assert summary["original_grid"]["metrics"]["dice"]["mean"] == pytest.approx(result.best_score, abs=1e-3)


def test_patch_run_resumes_bit_for_bit(tumour_cases: Path, tmp_path: Path) -> None:
    config = with_train(TINY_PATCHES, deterministic=True)
    whole = train(tumour_cases, tmp_path / "whole", config, device="cpu", progress=False)
    train(tumour_cases, tmp_path / "cut", config, device="cpu", progress=False, stop_after_epoch=1)
    resumed = train(tumour_cases, tmp_path / "cut", config, device="cpu", progress=False, resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["rng"][0]["patches"] == b["rng"][0]["patches"]


def test_patch_run_without_validation_keeps_the_last_round(tumour_cases: Path, tmp_path: Path) -> None:
    config = with_train(TINY_PATCHES, val_fraction=0.0, epochs=2)
    result = train(tumour_cases, tmp_path / "run", config, device="cpu", progress=False)
    assert result.best_epoch == 2 and math.isnan(result.best_score)
    best = torch.load(result.paths["best"], weights_only=True)
    last = torch.load(result.paths["last"], weights_only=True)
    assert best["epoch"] == 2 and all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])


def test_patch_run_mixes_in_generated_phantoms(tumour_cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    import functools

    import livseg.training.inputs as inputs
    from livseg.training.phantoms import write_phantom_cache

    monkeypatch.setattr(inputs, "write_phantom_cache", functools.partial(write_phantom_cache, shape=(48, 48, 32)))
    config = dataclasses.replace(with_train(TINY_PATCHES, epochs=1, val_fraction=0.0),
                                 patches=dataclasses.replace(TINY_PATCHES.patches, phantoms=1))
    with caplog.at_level("INFO", logger="livseg.training.inputs"):
        train(tumour_cases, tmp_path / "run", config, device="cpu", progress=False)
    assert "patches from 5 case(s) of the data (weight 1) and 1 phantom(s) (weight 1)" in caplog.text
    phantoms = sorted(p.name for p in (tmp_path / "run" / "phantoms").glob("*_label.npy"))
    assert phantoms == ["phantom-0_label.npy"]  # make_phantom takes ~5 s whatever its size: one is enough
    label = np.load(tmp_path / "run" / "phantoms" / "phantom-0_label.npy")
    assert label.dtype == np.uint8 and 0 < label.max() <= 255  # the liver's share, soft


def test_whole_case_training_refuses_a_fixed_spacing_grid(tmp_path: Path) -> None:
    config = apply_overrides(get_preset("default"), ["preprocess.spacing=3,3,3"])
    with pytest.raises(ConfigError, match="train.sampling=patches"):
        train(tmp_path / "no-data", tmp_path / "run", config)
    assert not (tmp_path / "run").exists()


def test_bad_patch_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="train.lr_schedule=cosine is a per-step schedule"):
        apply_overrides(get_preset("default"), ["train.lr_schedule=cosine"])
    with pytest.raises(ConfigError, match=r"patches.foreground: expected 0 <= p <= 1, got 2.0"):
        apply_overrides(get_preset("builtin"), ["patches.foreground=2"])
    with pytest.raises(ConfigError, match="train.val_fraction: expected 0 < f < 1"):
        apply_overrides(get_preset("default"), ["train.val_fraction=0"])
    with pytest.raises(ConfigError, match="stage-2 network"):
        apply_overrides(get_preset("tumour"), ["train.sampling=patches"])


def test_validating_on_a_generated_phantom_is_refused(tumour_cases: Path, tmp_path: Path) -> None:
    from livseg.data.cache import MANIFEST_FILE, preprocess_dataset
    from livseg.data.io.files import read_json, write_json

    cache = tmp_path / "cache"
    manifest = preprocess_dataset(tumour_cases, cache, config=TINY_PATCHES.preprocess, val_fraction=0.4,
                                  progress=False)
    for entry in manifest["cases"].values():  # as write_phantom_cache records its cases: no CT file
        entry["image"] = "phantom:12345"
    write_json(cache / MANIFEST_FILE, manifest)
    assert read_json(cache / MANIFEST_FILE)["cases"]["lits-0"]["image"] == "phantom:12345"
    with pytest.raises(DatasetError, match="generated phantom without a CT file"):
        train(cache, tmp_path / "run", with_train(TINY_PATCHES, epochs=1), device="cpu", progress=False)


@pytest.mark.slow
def test_two_process_gloo_patch_run(tumour_cases: Path, tmp_path: Path) -> None:
    """torchrun with two ranks: each draws its own patches, the validation CTs are shared out and the
    own-grid Dice summed; only rank 0 writes."""
    import os
    import subprocess
    import sys

    from livseg.evaluation.evaluate import evaluate

    flags = ["--preset", "builtin", "--set", "preprocess.target_shape=16,16,8", "--set", "preprocess.spacing=2,2,3",
             "--set", "model.channels=4,8", "--set", "train.lr=0.01", "--set", "patches.steps_per_round=3",
             "--set", "patches.warmup_steps=2", "--val-fraction", "0.4", "--epochs", "2", "--threads", "1",
             "--no-progress"]
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "livseg",
               "train", str(tumour_cases), "-o", str(run), *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best validation Dice") == 1 and done.stderr.count("epoch 2/2 (step 6)") == 1
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["world_size"] == 2 and [sorted(r) for r in last["rng"]] == [["numpy", "patches", "python", "torch"]] * 2
    assert last["rng"][0]["patches"] != last["rng"][1]["patches"]  # each rank draws its own patches
    summary = evaluate(run / "last.pt", tumour_cases, split="val", out_dir=tmp_path / "eval", progress=False,
                       figures=False)
    assert summary["n_cases"] == 2  # one validation CT per rank, summed
    assert last["history"][-1]["val_dice"] == pytest.approx(summary["original_grid"]["metrics"]["dice"]["mean"],
                                                            abs=1e-3)


def test_patch_run_mixes_in_a_folder_of_phantoms(tumour_cases: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from livseg.phantom.generator import write_phantoms

    write_phantoms(tmp_path / "phantoms", 2, shape=(48, 48, 32))  # what `livseg phantom` writes
    config = with_train(TINY_PATCHES, epochs=1, val_fraction=0.0)
    with caplog.at_level("INFO", logger="livseg.training.inputs"):
        train(tumour_cases, tmp_path / "run", config, phantoms=tmp_path / "phantoms", device="cpu", progress=False)
    assert "and 2 phantom(s) (weight 1)" in caplog.text
    cache = tmp_path / "run" / "phantoms"  # cached with the run's preprocessing, and reusable as it is
    train(tumour_cases, tmp_path / "again", config, phantoms=cache, device="cpu", progress=False)
    assert not (tmp_path / "again" / "phantoms").exists()
    other = dataclasses.replace(config, preprocess=dataclasses.replace(config.preprocess, spacing=(3.0, 3.0, 3.0)))
    with pytest.raises(ConfigError, match="phantom cache preprocessed differently from this run"):
        train(tumour_cases, tmp_path / "third", other, phantoms=cache, device="cpu", progress=False)
    with pytest.raises(ConfigError, match="set patches.phantoms=0 or drop the folder"):
        train(tumour_cases, tmp_path / "fourth", dataclasses.replace(config, patches=dataclasses.replace(
            config.patches, phantoms=3)), phantoms=cache, device="cpu", progress=False)
