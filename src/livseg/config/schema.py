"""The configuration's typed, frozen dataclasses: one :class:`RunConfig` of six parts."""

from __future__ import annotations

from dataclasses import dataclass, field


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


LR_SCHEDULES = ("constant", "poly", "cosine")
SAMPLINGS = ("whole", "patches")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule; defaults are the paper's."""

    epochs: int = 120  # paper
    batch_size: int = 1  # paper
    lr: float = 1e-4  # paper: Adam
    # paper; "poly": lr * (1 - (epoch - 1) / epochs) ** 0.9 per epoch (nnU-Net); "cosine" (patches only):
    # per step, linear warm-up over patches.warmup_steps, then cosine decay to lr * patches.final_lr
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    threshold: float = 0.5  # paper: validation threshold on probabilities
    # "whole" (paper): every case is one sample on preprocess.target_shape, an epoch is one pass;
    # "patches": random patches of preprocess.target_shape (see PatchConfig), an epoch is a round of
    # patches.steps_per_round steps followed by validation on each validation CT's own grid
    sampling: str = "whole"
    val_fraction: float = 0.2  # 80/20 split; 0 (patches only): every case trains, best.pt is the last round
    test_fraction: float = 0.0  # held out from training and checkpoint selection, for evaluate; 0: the paper's 80/20
    seed: int = 0
    deterministic: bool = False  # bitwise-repeatable kernels (slower)
    amp: bool = True  # mixed precision on CUDA only; ignored on CPU
    num_workers: int = 0  # DataLoader workers
    num_threads: int = 0  # CPU threads per process; 0 = all cores this process may use (split among DDP ranks)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # the weights a run starts from: "" (random), "builtin:<name>" or a checkpoint path (set by
    # train(init=...); recorded for provenance, the network and preprocessing come from there)
    init: str = ""


@dataclass(frozen=True)
class PatchConfig:
    """Patch sampling (``train.sampling = "patches"``): how the built-in model is trained.

    One step draws ``train.batch_size`` cases (a case of the run's data ``real_weight`` times as often
    as a mixed-in phantom), cuts a ``preprocess.target_shape`` patch from each (centred near a
    liver voxel with probability ``foreground``), augments the batch in torch (when
    ``train.augment.enabled``; the parameters below: ``train.augment`` is the whole-CT mode's) and
    takes one optimiser step. Defaults: liver-v1's recipe (scripts/build_builtin_model.py).
    """

    steps_per_round: int = 100  # optimiser steps between two validation rounds (one metrics.csv row)
    warmup_steps: int = 50  # lr_schedule "cosine": linear warm-up over these steps
    final_lr: float = 0.02  # lr_schedule "cosine": the last step's rate, as a fraction of train.lr
    foreground: float = 0.7  # share of patches centred (jittered by a quarter patch) on a liver voxel
    real_weight: float = 1.0  # a case of the data is drawn this many times as often as a mixed-in phantom
    phantoms: int = 0  # procedural phantoms generated into RUN/phantoms and mixed in (fine-tuning: not to forget)
    rotate_deg: tuple[float, float, float] = (6.0, 6.0, 15.0)  # max rotation about x, y, z (RAS: no flips)
    scale: float = 0.15  # isotropic scaling in [1 - s, 1 + s]
    stretch: float = 0.05  # extra per-axis scaling
    p_low_res_z: float = 0.15  # thick slices: z averaged over 2-3 voxels, then interpolated back
    p_low_res_xy: float = 0.1  # coarse in-plane pixels (about 5 mm at 3 mm voxels)
    p_blur: float = 0.2  # smooth reconstruction kernel (Gaussian, sigma 0.4-1 voxel)
    intensity_scale: float = 0.1  # image * U(1 - s, 1 + s)
    intensity_shift: float = 0.04  # + U(-s, s) (0.04 = 20 HU in the liver window)
    noise_std: float = 0.03  # Gaussian noise of std up to this (0.03 = 15 HU)


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
    patches: PatchConfig = field(default_factory=PatchConfig)
