"""Typed, frozen configuration and the named presets.

A run is fully described by one :class:`RunConfig` made of six parts (preprocessing, model,
loss, training, and the two patch samplers: stage 2's ``region`` and ``patches``). The whole
object is saved into every run folder and checkpoint as a plain dict (:func:`to_dict`), and
rebuilt from it with :func:`from_dict`, so a checkpoint needs nothing else to predict.

Presets:
    ``paper``   the published method exactly: 160x160x80 grid, 32-64-128-256 channels, Adam
                1e-4, batch 1, 120 epochs, no augmentation.
    ``default`` the paper's network and loss, plus reorientation to RAS before resampling and
                augmentation; what we recommend for real data.
    ``demo``    the same method scaled down to train on two CPU cores in a few minutes.
    ``tumour``  stage 2 of the cascade (liver and tumour on the liver's region at 1 mm), for a GPU.
    ``demo-tumour``  stage 2 scaled down for ``livseg demo`` on two CPU cores.
    ``tumour-cpu``  stage 2 at 2 mm that trains on two CPU cores in about an hour.
    ``builtin`` the built-in model's stage 1 (3 mm voxels, patches of phantoms; liver-v1's recipe).
    ``builtin-stage2``  its stage 2: the real CTs with phantoms mixed in, from stage 1's weights.
    ``finetune``  what ``livseg train --init`` uses: adapting a trained model to a site's own CTs.

A stage-2 run differs from a stage-1 run only in its ``region`` section (enabled) and its two
output channels; the training machinery is the same.
"""

from livseg.config.overrides import apply_overrides, flatten, from_dict, to_dict
from livseg.config.presets import PRESETS, get_preset
from livseg.config.schema import (
    LR_SCHEDULES,
    SAMPLINGS,
    AugmentConfig,
    LossConfig,
    ModelConfig,
    PatchConfig,
    PreprocessConfig,
    RegionConfig,
    RunConfig,
    TrainConfig,
)
from livseg.config.validate import MAX_PHANTOMS, MAX_TARGET_VOXELS, MAX_THREADS, MAX_WORKERS, validate_config

__all__ = [
    "LR_SCHEDULES", "MAX_PHANTOMS", "MAX_TARGET_VOXELS", "MAX_THREADS", "MAX_WORKERS", "PRESETS", "SAMPLINGS",
    "AugmentConfig", "LossConfig", "ModelConfig", "PatchConfig", "PreprocessConfig", "RegionConfig", "RunConfig",
    "TrainConfig", "apply_overrides", "flatten", "from_dict", "get_preset", "to_dict", "validate_config",
]
