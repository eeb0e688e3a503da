"""Typed, frozen configuration and the named presets.

A run is fully described by one :class:`RunConfig` made of four parts (preprocessing, model,
loss, training). The whole object is saved into every run folder and checkpoint as a plain dict
(:func:`to_dict`), and rebuilt from it with :func:`from_dict`, so a checkpoint needs nothing else
to predict.

Presets:
    ``paper``   the published method exactly: 160x160x80 grid, 32-64-128-256 channels, Adam
                1e-4, batch 1, 120 epochs, no augmentation.
    ``default`` the paper's network and loss, plus reorientation to RAS before resampling and
                augmentation; what we recommend for real data.
    ``demo``    the same method scaled down to train on two CPU cores in a few minutes.
    ``tumour``  stage 2 of the cascade (liver and tumour on the liver's region at 1 mm), for a GPU.
    ``demo-tumour``  stage 2 scaled down for ``livseg demo`` on two CPU cores.
    ``tumour-cpu``  stage 2 at 2 mm that trains on two CPU cores in about an hour.

A stage-2 run differs from a stage-1 run only in its ``region`` section (enabled) and its two
output channels; the training machinery is the same.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Mapping, Sequence

from livseg.errors import ConfigError


@dataclass(frozen=True)
class PreprocessConfig:
    """How a CT becomes a network input."""

    hu_min: float = -100.0  # paper: clip HU to [-100, 400] (liver window)
    hu_max: float = 400.0
    target_shape: tuple[int, int, int] = (160, 160, 80)  # paper: fixed grid (x, y, z), spacing ignored
    reorient: bool = False  # paper: array axes as stored; True: re-index to RAS first (exact)
    # label values that count as liver (LiTS: 1 liver, 2 tumour inside it). With the default, label
    # maps must hold only 0, 1, 2; any other choice (TotalSegmentator: 5) takes other values as background
    liver_labels: tuple[int, ...] = (1, 2)
    # () (paper): resample every CT to target_shape, whatever its spacing and field of view.
    # (x, y, z) mm: resample to this voxel size instead (RAS axes, needs reorient), anti-aliased;
    # the network then sees the whole scan at one scale and target_shape is the training patch
    spacing: tuple[float, ...] = ()
    crop_body: bool = False  # paper: no; True: crop x and y to the body (air and table cut off) first


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the 3D U-Net; defaults are the paper's network (about 5.6 M parameters)."""

    in_channels: int = 1  # one CT channel
    out_channels: int = 1  # one liver logit per voxel
    channels: tuple[int, ...] = (32, 64, 128, 256)  # paper: four encoder levels
    dropout: float = 0.2  # paper: Dropout3d(p=0.2) inside every block
    negative_slope: float = 0.01  # LeakyReLU slope (PyTorch default; the paper gives none)
    # (): one sigmoid liver output (the paper). Names: one softmax channel per class, in this order
    # (background first, "liver" among them; out_channels = their number): a multi-organ model
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LossConfig:
    """AdvancedComboLoss = w_dice * Dice + w_bce * BCE + w_ft * focal Tversky."""

    dice_weight: float = 0.3  # paper
    bce_weight: float = 0.3  # paper
    focal_tversky_weight: float = 0.4  # paper
    alpha: float = 0.7  # Tversky weight of false negatives (paper gives none; common choice)
    beta: float = 0.3  # Tversky weight of false positives
    gamma: float = 0.75  # focal exponent: loss term = (1 - TI) ** gamma
    smooth: float = 1.0  # added to numerator and denominator of Dice and Tversky


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; the paper had none."""

    enabled: bool = False
    flip_prob: float = 0.5  # per axis
    rotate_deg: float = 10.0  # max rotation about the z axis, degrees
    scale_range: float = 0.1  # isotropic scaling in [1 - r, 1 + r]
    intensity_shift: float = 0.05  # additive, on the [0, 1] scaled intensities
    intensity_scale: float = 0.1  # multiplicative in [1 - s, 1 + s]
    noise_std: float = 0.02  # Gaussian noise on the [0, 1] scaled intensities
    prob: float = 0.8  # chance that a sample gets the spatial transform at all


LR_SCHEDULES = ("constant", "poly")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule; defaults are the paper's."""

    epochs: int = 120  # paper
    batch_size: int = 1  # paper
    lr: float = 1e-4  # paper: Adam
    lr_schedule: str = "constant"  # paper; "poly": lr * (1 - (epoch - 1) / epochs) ** 0.9 per epoch (nnU-Net)
    weight_decay: float = 0.0
    threshold: float = 0.5  # paper: validation threshold on probabilities
    val_fraction: float = 0.2  # 80/20 split
    test_fraction: float = 0.0  # held out from training and checkpoint selection, for evaluate; 0: the paper's 80/20
    seed: int = 0
    deterministic: bool = False  # bitwise-repeatable kernels (slower)
    amp: bool = True  # mixed precision on CUDA only; ignored on CPU
    num_workers: int = 0  # DataLoader workers
    num_threads: int = 0  # CPU threads per process; 0 = all cores this process may use (split among DDP ranks)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class RegionConfig:
    """Stage 2 of the cascade: the liver's bounding box plus a margin, resampled to a fixed spacing.

    Off for stage 1 (the whole CT on ``preprocess.target_shape``). When enabled the network has two
    sigmoid outputs, nested as nnU-Net's region-based training does: channel 0 liver-or-tumour
    (label > 0, the LiTS liver and stage 1's target), channel 1 tumour (label 2). Axes are those of
    the CT re-indexed to RAS (``preprocess.reorient`` must be on).
    """

    enabled: bool = False
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)  # isotropic ~ LiTS median in-plane; rotations do not shear
    margin_mm: float = 15.0  # context around the liver's box, at training and at inference
    jitter_mm: float = 10.0  # training: every face of the box moves by up to this (stage-1 errors)
    patch_shape: tuple[int, int, int] = (128, 128, 128)  # network input at training and per sliding window
    patches_per_case: int = 2  # training patches drawn per case per epoch
    tumour_fraction: float = 0.33  # share of patches centred on a tumour voxel (nnU-Net: a third)
    tumour_weight: float = 2.0  # loss = (liver term + w * tumour term) / (1 + w)
    # tumour term's Dice and Tversky over the whole batch as one sample (nnU-Net's batch Dice): per
    # sample, a patch without tumour scores any tumour probability near the worst loss, which
    # teaches under-segmentation of small lesions
    batch_dice: bool = False
    overlap: float = 0.5  # sliding window: fraction of a patch shared with its neighbour
    blend: str = "gaussian"  # sliding window: "gaussian" (centre-weighted, sigma = patch / 8) or "uniform"
    min_lesion_mm3: float = 65.0  # predicted tumours smaller than a 5 mm sphere become liver


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run and the checkpoints it writes."""

    name: str = "paper"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    region: RegionConfig = field(default_factory=RegionConfig)


PRESETS: dict[str, RunConfig] = {
    "paper": RunConfig(name="paper"),
    "default": RunConfig(
        name="default",
        # same network input for flipped and unflipped files (LiTS has both)
        preprocess=PreprocessConfig(reorient=True),
        # no flips: after reorientation to RAS the liver is always on the patient's right and the
        # spleen (same HU) on the left; flips hid that prior. Held-out Dice without/with flips
        # (benchmarks/bench_flips.py, demo-size network, 2 seeds): phantoms 0.88 vs 0.70,
        # IRCADb patient 1 0.74 vs 0.59, LIDC-0001 0.75 vs 0.62, TotalSegmentator example 0.78 vs 0.62
        train=TrainConfig(augment=AugmentConfig(enabled=True, flip_prob=0.0)),
    ),
    # Tuned with `livseg demo` (32 phantoms of 96x96x48, 8 held out) on two CPU cores; numbers
    # are held-out mean Dice on the phantoms' own grid.
    "demo": RunConfig(
        name="demo",
        preprocess=PreprocessConfig(
            target_shape=(64, 64, 32),  # ~0.3 s per step on 2 cores; back-mapped it still scores ~0.95
            reorient=True,  # phantoms are stored flipped at random (as LiTS): val Dice 0.92 in 8 epochs, not 25
        ),
        model=ModelConfig(
            channels=(8, 16, 32, 64),  # 0.35 M parameters: enough for one organ on a coarse grid
            dropout=0.0,  # no dropout: a 40-epoch run converges faster (0.952 vs 0.944 with p=0.1)
        ),
        train=TrainConfig(
            epochs=40,  # ~2.5 min on two quiet cores; validation Dice is ~0.96 from epoch 30 on
            batch_size=2,  # CPU step time is mostly per-step overhead: 2 samples cost about what 1 does
            lr=3e-3,  # 30x the paper's 1e-4: a small network and a few hundred steps
            # reoriented inputs always show the liver on the same side: flips would teach poses that never occur
            augment=AugmentConfig(enabled=True, flip_prob=0.0),
        ),
    ),
    # Stage 2 for real data on a GPU (not trained here: no GPU and no LiTS on the development machine).
    # Sizes follow nnU-Net's LiTS full-resolution plan (1 mm-ish, 128^3 patches, five levels).
    "tumour": RunConfig(
        name="tumour",
        preprocess=PreprocessConfig(reorient=True),  # the region is cut from the CT in RAS axis order
        model=ModelConfig(out_channels=2, channels=(32, 64, 128, 256, 320), dropout=0.0),
        train=TrainConfig(
            epochs=300,  # x 4 patches per case: ~125 k patches for LiTS's 105 training cases
            batch_size=2,
            lr=3e-4,
            augment=AugmentConfig(enabled=True, flip_prob=0.0),  # the liver's region is not symmetric either
        ),
        region=RegionConfig(enabled=True, patches_per_case=4),
    ),
    # Stage 2 trained on a CPU in about an hour (no GPU on the development machine): phantoms on a
    # CT-like grid (256 x 256 in-plane, 1.3-1.8 mm pixels, 1.5-5 mm slices), where a 10 mm lesion
    # spans 5 voxels at 2 mm (2 at the demo's 4 mm). Step time on two cores, batch 2 of 64^3:
    # 8-16-32-64 0.72 s, 8-...-128 0.8-1.3 s, 16-...-128 1.3 s. Figures: benchmarks/README.md.
    "tumour-cpu": RunConfig(
        name="tumour-cpu",
        preprocess=PreprocessConfig(reorient=True),
        model=ModelConfig(out_channels=2, channels=(8, 16, 32, 64, 128), dropout=0.0),
        train=TrainConfig(
            epochs=24,  # x 8 patches per case: ~1 h on two cores for 38 training phantoms
            batch_size=2,
            lr=3e-3,
            lr_schedule="poly",
            augment=AugmentConfig(enabled=True, flip_prob=0.0),
        ),
        # 2 mm: 128 mm patches hold a lesion with its surroundings; 8 patches per case make
        # the per-epoch sliding-window validation a smaller share of the time. Smallest tumour kept:
        # 1 mL (a 12 mm sphere), chosen on the run's 10 validation phantoms as the highest tumour
        # Dice per case with <= 0.5 false-positive lesions per case (65 mm3: 0.666 and 2.4 FP/case;
        # 500: 0.667 / 1.0; 1000: 0.670 / 0.5; 2000: 0.620 / 0.3; higher thresholds than 0.5 lost recall)
        region=RegionConfig(enabled=True, spacing_mm=(2.0, 2.0, 2.0), patch_shape=(64, 64, 64), patches_per_case=8,
                            tumour_fraction=0.5, min_lesion_mm3=1000.0),
    ),
    # Stage 2 of `livseg demo` (phantoms of 96x96x48, ~4 x 4 x 6 mm voxels) on two CPU cores. Tuned on
    # held-out phantoms (32 train, 8 test, one thread on a loaded machine); cascade tumour Dice per
    # case / lesion recall: 3 mm, 64^3 patches, 1 per case, constant lr, 6 min: 0.00 / 0.00 (4 epochs);
    # 4 mm, 48^3, 2 per case, 20 epochs: 0.27 / 0.13; + poly lr and half the patches on tumour:
    # 0.43 / 0.38 (this preset); + tumour_weight 4: 0.44 / 0.38 but 0.5 false positives per case.
    "demo-tumour": RunConfig(
        name="demo-tumour",
        preprocess=PreprocessConfig(reorient=True),
        model=ModelConfig(out_channels=2, channels=(8, 16, 32, 64), dropout=0.0),
        train=TrainConfig(
            epochs=20,  # tumour Dice still rising at 20; ~25 CPU-s per epoch on one thread
            batch_size=2,
            lr=3e-3,
            lr_schedule="poly",  # the tumour channel settles as the rate decays (val tumour Dice 0.73 at 20)
            augment=AugmentConfig(enabled=True, flip_prob=0.0),
        ),
        # 4 mm: about the phantoms' in-plane spacing (finer only interpolates) and a 48^3 patch holds
        # most of a liver's region; the liver region is then finer than stage 1's ~6 x 6 x 10 mm grid
        region=RegionConfig(enabled=True, spacing_mm=(4.0, 4.0, 4.0), patch_shape=(48, 48, 48), patches_per_case=2,
                            tumour_fraction=0.5),
    ),
}


def get_preset(name: str) -> RunConfig:
    """Return the named preset.

    Raises:
        ConfigError: for an unknown name; the message lists the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples become lists), safe for JSON and ``weights_only``."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type, data: Mapping[str, Any], *, where: str = "") -> Any:
    """Rebuild a config dataclass from :func:`to_dict` output, checking keys and types.

    Unknown keys are refused, missing keys take the default, so checkpoints written by an older
    livseg with fewer fields still load.

    Args:
        cls: the dataclass to build.
        data: its dict form.
        where: dotted path of ``data`` inside a RunConfig (``"train"``), used in messages so
            that they name the key a user types in ``--set``; the class name when empty.

    Raises:
        ConfigError: for unknown keys or values of the wrong type.
    """
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    prefix = "" if cls is RunConfig and where == cls.__name__ else f"{where}."
    kwargs = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Convert a JSON value to the annotated type, or raise ConfigError."""
    if is_dataclass(hint):
        return from_dict(hint, value, where=where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of numbers, got {value!r}")
        item_type = typing.get_args(hint)[0]
        return tuple(_coerce(item_type, v, where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def apply_overrides(config: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """Apply ``section.key=value`` overrides, e.g. ``train.epochs=5`` or
    ``preprocess.target_shape=96,96,48``; values are parsed as JSON where possible.

    Raises:
        ConfigError: for a malformed override, an unknown key or a value of the wrong type.
    """
    data = to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.epochs=5")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: unknown section {part!r}")
            node = node[part]
        if parts[-1] not in node or isinstance(node[parts[-1]], dict):
            raise ConfigError(f"override {item!r}: unknown key {key!r}")
        node[parts[-1]] = _parse_value(raw, like=node[parts[-1]])
    result = from_dict(RunConfig, data)
    validate_config(result)
    return result


def _parse_value(raw: str, like: Any) -> Any:
    """Parse an override value: JSON, or a comma list for list-valued keys, or a bare string."""
    if isinstance(like, list) and not raw.strip().startswith("["):
        raw = "[" + raw + "]"
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


# Bounds that keep a typo (or a tampered checkpoint) from asking for absurd resources.
MAX_TARGET_VOXELS = 512**3  # 134 M voxels (about 17 GB of activations per 32 channels); the paper uses 2 M
MAX_THREADS = 1024  # torch.set_num_threads fails with a long OpenMP traceback far above this
MAX_WORKERS = 256  # DataLoader worker processes


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
    if not pre.liver_labels or min(pre.liver_labels) < 1:
        raise ConfigError(f"preprocess.liver_labels: expected one or more label values >= 1, got {pre.liver_labels}")
    if len(model.channels) < 2 or min(model.channels) < 1:
        raise ConfigError(f"model.channels: expected at least two positive widths, got {model.channels}")
    factor = 2 ** (len(model.channels) - 1)
    if any(s % factor for s in pre.target_shape):
        raise ConfigError(
            f"preprocess.target_shape {pre.target_shape} must be divisible by {factor} "
            f"for a U-Net with {len(model.channels)} levels"
        )
    _at_least(("model.in_channels", model.in_channels, 1), ("model.out_channels", model.out_channels, 1),
              ("model.negative_slope", model.negative_slope, 0.0))
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
    if not 0.0 < train.val_fraction < 1.0:
        raise ConfigError(f"train.val_fraction: expected 0 < f < 1, got {train.val_fraction}")
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
