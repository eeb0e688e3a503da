"""Value ranges that types alone cannot express: every number finite, sizes and weights in range."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

from livseg.config.schema import LR_SCHEDULES, SAMPLINGS, RunConfig
from livseg.errors import ConfigError

# Bounds that keep a typo (or a tampered checkpoint) from asking for absurd resources.
MAX_TARGET_VOXELS = 512**3  # 134 M voxels (about 17 GB of activations per 32 channels); the paper uses 2 M
MAX_THREADS = 1024  # torch.set_num_threads fails with a long OpenMP traceback far above this
MAX_WORKERS = 256  # DataLoader worker processes
MAX_LABEL = 255  # label maps are read as uint8
MAX_PHANTOMS = 10_000  # phantoms generated into one run folder


def validate_config(config: RunConfig) -> None:
    """Check value ranges that types alone cannot express; every number must be finite.

    Raises:
        ConfigError: naming the offending field (as ``--set`` spells it) and the allowed range.
    """
    _check_finite(config, "")
    pre, model, loss, train = config.preprocess, config.model, config.loss, config.train
    if pre.hu_max <= pre.hu_min:
        raise ConfigError(f"preprocess: hu_max ({pre.hu_max}) must exceed hu_min ({pre.hu_min})")
    if pre.spacing and (len(pre.spacing) != 3 or min(pre.spacing) <= 0):
        raise ConfigError(f"preprocess.spacing: expected () or three positive sizes in mm, got {pre.spacing}")
    if pre.spacing and not pre.reorient:
        raise ConfigError("preprocess.spacing is given in RAS axis order: it needs preprocess.reorient=true")
    if len(pre.target_shape) != 3 or min(pre.target_shape) < 1:
        raise ConfigError(f"preprocess.target_shape: expected three positive sizes, got {pre.target_shape}")
    voxels = pre.target_shape[0] * pre.target_shape[1] * pre.target_shape[2]
    if voxels > MAX_TARGET_VOXELS:
        raise ConfigError(
            f"preprocess.target_shape {pre.target_shape} has {voxels:,} voxels; at most {MAX_TARGET_VOXELS:,} "
            "(512 x 512 x 512) are allowed"
        )
    if not pre.liver_labels or min(pre.liver_labels) < 1 or max(pre.liver_labels) > MAX_LABEL:
        raise ConfigError(f"preprocess.liver_labels: expected one or more label values from 1 to {MAX_LABEL} (label maps "
                          f"are read as uint8), got {list(pre.liver_labels)}")
    if len(model.channels) < 2 or min(model.channels) < 1:
        raise ConfigError(f"model.channels: expected at least two positive widths, got {model.channels}")
    factor = 2 ** (len(model.channels) - 1)
    if any(s % factor for s in pre.target_shape):
        raise ConfigError(
            f"preprocess.target_shape {pre.target_shape} must be divisible by {factor} "
            f"for a U-Net with {len(model.channels)} levels"
        )
    if model.in_channels != 1:  # refused here, before a run folder or a cache is written, not at the first batch
        raise ConfigError(f"model.in_channels: livseg feeds the network one CT channel, got {model.in_channels}; "
                          "expected 1")
    if not config.region.enabled and model.out_channels != 1 and not model.classes:
        raise ConfigError(f"model.out_channels: a liver network (region.enabled=false) has one output, got "
                          f"{model.out_channels}; stage 2 (--preset tumour) has two, a multi-organ model one per "
                          "model.classes name")
    _at_least(("model.negative_slope", model.negative_slope, 0.0))
    if not 0.0 <= model.dropout < 1.0:
        raise ConfigError(f"model.dropout: expected 0 <= p < 1, got {model.dropout}")
    if model.classes and (len(model.classes) != model.out_channels or model.classes[0] != "background"
                          or "liver" not in model.classes or len(set(model.classes)) != len(model.classes)):
        raise ConfigError(f"model.classes: expected distinct names, 'background' first and 'liver' among them, one "
                          f"per output channel ({model.out_channels}), got {list(model.classes)}")
    weights = {"dice_weight": loss.dice_weight, "bce_weight": loss.bce_weight,
               "focal_tversky_weight": loss.focal_tversky_weight}
    _at_least(*((f"loss.{k}", v, 0.0) for k, v in weights.items()), ("loss.alpha", loss.alpha, 0.0),
              ("loss.beta", loss.beta, 0.0), ("loss.smooth", loss.smooth, 0.0))
    if not any(weights.values()):
        raise ConfigError(f"loss: the weights {sorted(weights)} are all 0; at least one must be positive")
    if loss.gamma <= 0:
        raise ConfigError(f"loss.gamma: expected > 0, got {loss.gamma}")
    if train.epochs < 1 or train.batch_size < 1 or train.lr <= 0:
        raise ConfigError("train: epochs and batch_size must be >= 1 and lr > 0")
    _at_least(("train.weight_decay", train.weight_decay, 0.0), ("train.seed", train.seed, 0))
    if train.sampling not in SAMPLINGS:
        raise ConfigError(f"train.sampling: expected one of {list(SAMPLINGS)}, got {train.sampling!r}")
    patches = train.sampling == "patches"
    if not (0.0 <= train.val_fraction < 1.0 if patches else 0.0 < train.val_fraction < 1.0):
        raise ConfigError(f"train.val_fraction: expected {'0 <= f' if patches else '0 < f'} < 1 "
                          f"(0, no validation, only with train.sampling=patches), got {train.val_fraction}")
    if not 0.0 <= train.test_fraction < 1.0 or train.val_fraction + train.test_fraction >= 1.0:
        raise ConfigError(
            f"train.test_fraction: expected 0 <= f < 1 with val_fraction + test_fraction < 1, got {train.test_fraction}"
        )
    if not 0 <= train.num_workers <= MAX_WORKERS:
        raise ConfigError(f"train.num_workers: expected 0 to {MAX_WORKERS}, got {train.num_workers}")
    if not 0 <= train.num_threads <= MAX_THREADS:
        raise ConfigError(f"train.num_threads: expected 0 (all cores) to {MAX_THREADS}, got {train.num_threads}")
    if not 0.0 < train.threshold < 1.0:
        raise ConfigError(f"train.threshold: expected 0 < t < 1, got {train.threshold}")
    if train.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule: expected one of {list(LR_SCHEDULES)}, got {train.lr_schedule!r}")
    if train.lr_schedule == "cosine" and not patches:
        raise ConfigError("train.lr_schedule=cosine is a per-step schedule of train.sampling=patches; "
                          "whole-CT training has constant or poly")
    aug = train.augment
    for key in ("flip_prob", "prob"):
        if not 0.0 <= getattr(aug, key) <= 1.0:
            raise ConfigError(f"train.augment.{key}: expected 0 <= p <= 1, got {getattr(aug, key)}")
    _at_least(*((f"train.augment.{k}", getattr(aug, k), 0.0)
                for k in ("rotate_deg", "intensity_shift", "intensity_scale", "noise_std")))
    if not 0.0 <= aug.scale_range < 1.0:
        raise ConfigError(f"train.augment.scale_range: expected 0 <= r < 1, got {aug.scale_range}")
    if config.region.enabled:
        _validate_region(config)
    if patches:
        _validate_patches(config)


def _validate_patches(config: RunConfig) -> None:
    """Ranges of the patch sampler (``train.sampling = "patches"``)."""
    p = config.patches
    if config.region.enabled:
        raise ConfigError("train.sampling=patches: a stage-2 network (region.enabled) draws its own patches of the "
                          "liver's region (region.*); keep train.sampling=whole for it")
    if p.steps_per_round < 1 or p.warmup_steps < 0:
        raise ConfigError(f"patches: steps_per_round must be >= 1 and warmup_steps >= 0, got {p.steps_per_round} "
                          f"and {p.warmup_steps}")
    if not 0.0 < p.final_lr <= 1.0:
        raise ConfigError(f"patches.final_lr: expected a fraction of train.lr in (0, 1], got {p.final_lr}")
    if not 0 <= p.phantoms <= MAX_PHANTOMS:
        raise ConfigError(f"patches.phantoms: expected 0 to {MAX_PHANTOMS:,}, got {p.phantoms}")
    if p.real_weight <= 0:
        raise ConfigError(f"patches.real_weight: expected > 0, got {p.real_weight}")
    if len(p.rotate_deg) != 3:
        raise ConfigError(f"patches.rotate_deg: expected three angles (x, y, z), got {p.rotate_deg}")
    for key in ("foreground", "p_low_res_z", "p_low_res_xy", "p_blur"):
        if not 0.0 <= getattr(p, key) <= 1.0:
            raise ConfigError(f"patches.{key}: expected 0 <= p <= 1, got {getattr(p, key)}")
    for key in ("scale", "stretch", "intensity_scale"):
        if not 0.0 <= getattr(p, key) < 1.0:
            raise ConfigError(f"patches.{key}: expected 0 <= s < 1, got {getattr(p, key)}")
    _at_least(("patches.rotate_deg", min(p.rotate_deg), 0.0), ("patches.intensity_shift", p.intensity_shift, 0.0),
              ("patches.noise_std", p.noise_std, 0.0))


def _validate_region(config: RunConfig) -> None:
    """Ranges of a stage-2 (``region.enabled``) configuration."""
    region = config.region
    if config.model.out_channels != 2:
        raise ConfigError(
            f"model.out_channels: a stage-2 (region.enabled) network has 2 outputs (liver-or-tumour, tumour), "
            f"got {config.model.out_channels}"
        )
    if not config.preprocess.reorient:
        raise ConfigError("preprocess.reorient: stage 2 (region.enabled) cuts the liver's region in RAS axis order; "
                          "set preprocess.reorient=true")
    if tuple(config.preprocess.liver_labels) != (1, 2):
        raise ConfigError(f"preprocess.liver_labels: stage 2 (region.enabled) learns LiTS labels (1 liver, 2 tumour, "
                          f"both liver); got {config.preprocess.liver_labels}")
    if len(region.spacing_mm) != 3 or not all(0.1 <= s <= 20 for s in region.spacing_mm):
        raise ConfigError(f"region.spacing_mm: expected three voxel sizes in mm, 0.1-20, got {region.spacing_mm}")
    factor = 2 ** (len(config.model.channels) - 1)
    if len(region.patch_shape) != 3 or min(region.patch_shape) < 1 or any(s % factor for s in region.patch_shape):
        raise ConfigError(f"region.patch_shape {region.patch_shape}: expected three sizes divisible by {factor} "
                          f"for a U-Net with {len(config.model.channels)} levels")
    if region.margin_mm < 0 or region.jitter_mm < 0 or region.min_lesion_mm3 < 0:
        raise ConfigError("region: margin_mm, jitter_mm and min_lesion_mm3 must be >= 0")
    if region.patches_per_case < 1:
        raise ConfigError(f"region.patches_per_case: expected >= 1, got {region.patches_per_case}")
    if not 0.0 <= region.tumour_fraction <= 1.0 or region.tumour_weight < 0:
        raise ConfigError(f"region: tumour_fraction must lie in [0, 1] and tumour_weight be >= 0, got "
                          f"{region.tumour_fraction} and {region.tumour_weight}")
    if not 0.0 <= region.overlap < 1.0:
        raise ConfigError(f"region.overlap: expected 0 <= overlap < 1, got {region.overlap}")
    if region.blend not in ("gaussian", "uniform"):
        raise ConfigError(f"region.blend: expected 'gaussian' or 'uniform', got {region.blend!r}")


def _check_finite(config: Any, where: str) -> None:
    """Raise ConfigError for the first NaN or infinite float anywhere in a config (nested too)."""
    for item in fields(config):
        value, key = getattr(config, item.name), f"{where}{item.name}"
        if is_dataclass(value):
            _check_finite(value, f"{key}.")
            continue
        for number in value if isinstance(value, tuple) else (value,):
            if isinstance(number, float) and not math.isfinite(number):
                raise ConfigError(f"{key}: expected a finite number, got {number}")


def _at_least(*checks: tuple[str, float, float]) -> None:
    """Raise ConfigError for the first ``(name, value, minimum)`` whose value is below its minimum."""
    for name, value, minimum in checks:
        if value < minimum:
            raise ConfigError(f"{name}: expected >= {minimum:g}, got {value}")
