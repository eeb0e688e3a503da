"""Patch training (livseg.training.patches): patch sampling, torch augmentation, a tiny run that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livseg.config import ModelConfig, PreprocessConfig, RunConfig
from livseg.training.patches import PatchCase, PatchSchedule, augment_batch, sample_patch, train_patches

STILL = PatchSchedule(rotate_deg=(0.0, 0.0, 0.0), scale=0.0, stretch=0.0, p_low_res_z=0.0, p_low_res_xy=0.0,
                      p_blur=0.0, intensity_scale=0.0, intensity_shift=0.0, noise_std=0.0)


def block_case(shape: tuple[int, int, int] = (20, 18, 10), seed: int = 0) -> PatchCase:
    rng = np.random.default_rng(seed)
    image = np.full(shape, 0.1, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    label[4:12, 3:11, 2:8] = 255
    image[label > 0] = 0.6
    image += rng.normal(0, 0.03, shape).astype(np.float32)
    return PatchCase(f"block-{seed}", image, label)


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
    spin = PatchSchedule(rotate_deg=(0.0, 0.0, 30.0), scale=0.0, stretch=0.0, p_low_res_z=0, p_low_res_xy=0,
                         p_blur=0, noise_std=0)
    _, out = augment_batch(label.clone(), label.clone(), spin, np.random.default_rng(3))
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert float(out.sum()) == pytest.approx(float(label.sum()), rel=0.03)  # rigid: same volume
    assert not torch.equal(out, label)


def test_train_patches_learns_a_block() -> None:
    config = RunConfig(preprocess=PreprocessConfig(target_shape=(16, 16, 8)), model=ModelConfig(channels=(4, 8), dropout=0.0))
    cases = [block_case(seed=s) for s in range(2)]
    torch.set_num_threads(1)
    seen = []
    model, history = train_patches(cases, config, PatchSchedule(steps=90, lr=1e-2, warmup=5), seed=0,
                                   callback=lambda step, loss, m: seen.append(step), log_every=30)
    assert seen == [30, 60, 90] and [h["step"] for h in history] == [30, 60, 90]
    assert history[-1]["loss"] < history[0]["loss"]
    with torch.no_grad():
        prob = torch.sigmoid(model(torch.from_numpy(cases[0].image[:16, :16, :8].copy())[None, None]))[0, 0].numpy()
    ref = cases[0].label[:16, :16, :8] > 0
    dice = 2 * np.sum((prob >= 0.5) & ref) / (np.sum(prob >= 0.5) + ref.sum())
    assert dice > 0.9


def test_whole_case_training_refuses_a_fixed_spacing_grid(tmp_path) -> None:  # noqa: ANN001
    from livseg.config import apply_overrides, get_preset
    from livseg.errors import ConfigError
    from livseg.training.train import train

    config = apply_overrides(get_preset("default"), ["preprocess.spacing=3,3,3"])
    with pytest.raises(ConfigError, match="livseg.training.patches"):
        train(tmp_path / "no-data", tmp_path / "run", config)
