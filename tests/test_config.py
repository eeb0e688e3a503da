"""livseg.config: presets, dict round trip, validated overrides."""

from __future__ import annotations

import dataclasses

import pytest

from livseg.config import PRESETS, RunConfig, apply_overrides, from_dict, get_preset, to_dict, validate_config
from livseg.errors import ConfigError


def test_paper_preset_is_the_published_method() -> None:
    paper = get_preset("paper")
    assert paper.preprocess.hu_min == -100 and paper.preprocess.hu_max == 400
    assert paper.preprocess.target_shape == (160, 160, 80) and not paper.preprocess.reorient
    assert paper.model.channels == (32, 64, 128, 256) and paper.model.dropout == 0.2
    assert (paper.loss.dice_weight, paper.loss.bce_weight, paper.loss.focal_tversky_weight) == (0.3, 0.3, 0.4)
    assert (paper.loss.alpha, paper.loss.beta, paper.loss.gamma) == (0.7, 0.3, 0.75)
    assert (paper.train.lr, paper.train.batch_size, paper.train.epochs) == (1e-4, 1, 120)
    assert paper.train.threshold == 0.5 and not paper.train.augment.enabled


def test_default_preset_reorients_and_augments_without_flips() -> None:
    # after reorientation to RAS the liver is always on the patient's right (the spleen, on the
    # left, has the same HU): flips hid that prior and cost held-out Dice (benchmarks/bench_flips.py)
    default = get_preset("default")
    assert default.preprocess.reorient and default.train.augment.enabled
    assert default.train.augment.flip_prob == 0.0
    assert default.train.augment.rotate_deg > 0 and default.train.augment.scale_range > 0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_round_trip(name: str) -> None:
    config = get_preset(name)
    validate_config(config)
    assert from_dict(RunConfig, to_dict(config)) == config


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("paper").train.epochs = 3  # type: ignore[misc]


def test_overrides() -> None:
    config = apply_overrides(
        get_preset("paper"),
        ["train.epochs=3", "preprocess.target_shape=96,96,48", "train.augment.enabled=true", "loss.alpha=0.6"],
    )
    assert config.train.epochs == 3
    assert config.preprocess.target_shape == (96, 96, 48)
    assert config.train.augment.enabled is True
    assert config.loss.alpha == 0.6
    assert get_preset("paper").train.epochs == 120  # the preset itself is untouched


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=abc", r"^train.epochs: expected an integer, got 'abc'"),
        ("train.augment.flip_prob=x", r"^train.augment.flip_prob: expected a number"),
        ("train.num_workers=-1", r"train.num_workers: expected 0 to 256, got -1"),
        ("train.epoch=3", r"unknown key 'train.epoch'"),
        ("nothing.x=1", r"unknown section 'nothing'"),
        ("train.epochs", r"expected section.key=value"),
        ("preprocess.target_shape=100,96,48", r"must be divisible by 8"),
        ("model.dropout=1.5", r"model.dropout: expected 0 <= p < 1"),
        ("train.augment.enabled=maybe", r"expected true or false"),
        # non-finite numbers: every comparison with NaN is false, so each needs its own check
        ("preprocess.hu_min=NaN", r"^preprocess.hu_min: expected a finite number, got nan"),
        ("train.lr=NaN", r"^train.lr: expected a finite number, got nan"),
        ("train.lr=Infinity", r"^train.lr: expected a finite number, got inf"),
        ("loss.gamma=-Infinity", r"^loss.gamma: expected a finite number"),
        ("train.augment.noise_std=NaN", r"^train.augment.noise_std: expected a finite number"),
        ("model.negative_slope=NaN", r"^model.negative_slope: expected a finite number"),
        # ranges that types alone do not catch
        ("train.num_threads=100000", r"train.num_threads: expected 0 \(all cores\) to 1024, got 100000"),
        ("train.num_workers=5000", r"train.num_workers: expected 0 to 256, got 5000"),
        ("preprocess.target_shape=4096,4096,2048", r"preprocess.target_shape \(4096, 4096, 2048\) has 34,359,738,368 "
                                                    r"voxels; at most 134,217,728"),
        ("train.augment.flip_prob=1.5", r"train.augment.flip_prob: expected 0 <= p <= 1, got 1.5"),
        ("loss.dice_weight=-1", r"loss.dice_weight: expected >= 0, got -1.0"),
        ("model.in_channels=0", r"model.in_channels: livseg feeds the network one CT channel, got 0; expected 1"),
        # issue 24, case 12: refused here, before a run folder is written, not at the first batch
        ("model.in_channels=2", r"model.in_channels: livseg feeds the network one CT channel, got 2; expected 1"),
        ("model.out_channels=3", r"model.out_channels: a liver network \(region.enabled=false\) has one output, got 3"),
        # case 6: a label value that no uint8 label map can hold
        ("preprocess.liver_labels=300", r"preprocess.liver_labels: expected one or more label values from 1 to 255 "
                                        r"\(label maps are read as uint8\), got \[300\]"),
        ("train.seed=-1", r"train.seed: expected >= 0, got -1"),
    ],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("paper"), [override])


def test_unknown_preset_and_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'papr'; expected one of \['builtin', 'builtin-stage2', 'default', 'demo', 'demo-tumour', 'finetune', 'paper', 'tumour', 'tumour-cpu'\]"):
        get_preset("papr")
    with pytest.raises(ConfigError, match=r"RunConfig: unknown keys \['extra'\]"):
        from_dict(RunConfig, {**to_dict(RunConfig()), "extra": 1})


def test_all_loss_weights_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"loss: the weights .* are all 0"):
        apply_overrides(get_preset("paper"), ["loss.dice_weight=0", "loss.bce_weight=0", "loss.focal_tversky_weight=0"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.out_channels=1", r"model.out_channels: a stage-2 .* has 2 outputs"),
        ("preprocess.reorient=false", r"preprocess.reorient: stage 2"),
        ("preprocess.liver_labels=5", r"preprocess.liver_labels: stage 2 .* LiTS labels"),
        ("region.patch_shape=100,96,96", r"region.patch_shape \(100, 96, 96\): expected three sizes divisible by 16"),
        ("region.spacing_mm=0,1,1", r"region.spacing_mm: expected three voxel sizes"),
        ("region.margin_mm=-1", r"margin_mm, jitter_mm and min_lesion_mm3 must be >= 0"),
        ("region.tumour_fraction=1.5", r"tumour_fraction must lie in \[0, 1\]"),
        ("region.overlap=1", r"region.overlap: expected 0 <= overlap < 1"),
        ("region.blend=max", r"region.blend: expected 'gaussian' or 'uniform'"),
        ("region.patches_per_case=0", r"region.patches_per_case: expected >= 1"),
        ("train.lr_schedule=linear", r"train.lr_schedule: expected one of \['constant', 'poly', 'cosine'\]"),
        ("train.lr_schedule=cosine", r"train.lr_schedule=cosine is a per-step schedule of train.sampling=patches"),
    ],
)
def test_bad_stage2_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("tumour"), [override])


def test_stage1_presets_leave_the_region_off() -> None:
    for name in ("paper", "default", "demo"):
        assert not get_preset(name).region.enabled and get_preset(name).model.out_channels == 1
    for name in ("tumour", "demo-tumour", "tumour-cpu"):
        preset = get_preset(name)
        assert preset.region.enabled and preset.model.out_channels == 2 and preset.preprocess.reorient
