"""The named presets (paper, default, demo, tumour, tumour-cpu, demo-tumour; builtin, builtin-stage2,
finetune) and their lookup."""

from __future__ import annotations

from dataclasses import replace

from livseg.config.schema import (
    AugmentConfig,
    LossConfig,
    ModelConfig,
    PatchConfig,
    PreprocessConfig,
    RegionConfig,
    RunConfig,
    TrainConfig,
)
from livseg.errors import ConfigError

# The built-in model (liver-v1, src/livseg/weights/liver-v1.md): every CT seen at one voxel size, trained
# on patches. Stage 1: 900 steps on phantoms only. scripts/build_builtin_model.py runs both stages.
BUILTIN = RunConfig(
    name="builtin",
    preprocess=PreprocessConfig(
        reorient=True,  # RAS: the liver is always on the network's same side
        spacing=(3.0, 3.0, 3.0),  # one scale for every scanner and field of view
        crop_body=True,  # air, table and empty field of view cut off before resampling
        target_shape=(112, 96, 48),  # training patch: 336 x 288 x 144 mm
    ),
    model=ModelConfig(channels=(8, 16, 32, 64, 128), dropout=0.0),  # 5 levels: receptive field ~ 40 cm
    train=TrainConfig(
        epochs=9,  # rounds of patches.steps_per_round (100): 900 steps, ~33 min on two CPU cores
        batch_size=2,
        lr=3e-3,  # peak; 50 warm-up steps, cosine decay to 2 % of it
        lr_schedule="cosine",
        sampling="patches",
        val_fraction=0.0,  # every phantom trains; the build scores real CTs after each stage instead
        augment=AugmentConfig(enabled=True, flip_prob=0.0),  # the patch augmentation (patches.*); RAS: no flips
    ),
    patches=PatchConfig(),  # its defaults are this recipe's
)
# Stage 2: 300 steps from stage 1's weights on the real CTs (drawn 20 times as often as each of the
# stage-1 phantoms, which are mixed in), a symmetric focal Tversky (0.7 / 0.3 over-segmented real CT)
BUILTIN_STAGE2 = replace(
    BUILTIN,
    name="builtin-stage2",
    loss=LossConfig(alpha=0.5, beta=0.5),
    train=replace(BUILTIN.train, epochs=3, lr=1e-3, seed=1),
    patches=replace(BUILTIN.patches, warmup_steps=20, real_weight=20.0),
)

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
    "builtin": BUILTIN,
    "builtin-stage2": BUILTIN_STAGE2,
    # `livseg train --init`: a trained model adapted to a site's own CTs (its network and preprocessing
    # come from the init checkpoint). Measured (README "Adapt the built-in model to your scanner",
    # benchmarks/bench_finetune.py): 16 phantoms mixed in cost 0.002 Dice on the held-out MSD site CT
    # (0.963 vs 0.965 without), but in the leave-one-out from stage 1 they kept LIDC-0001 at 0.924
    # (0.905 without) and IRCADb at 0.951 (0.916 without): the safer default, for 1-5 min of phantoms
    "finetune": replace(
        BUILTIN_STAGE2,
        name="finetune",
        train=replace(BUILTIN_STAGE2.train, epochs=2, seed=0, val_fraction=0.2),
        patches=replace(BUILTIN_STAGE2.patches, phantoms=16),
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
