"""Validation of patch training on each validation CT's own grid, the way users get predictions.

A fixed-spacing network sees every CT at its own extent, so there is no common network grid to
score on; the number that matters is the one ``livseg predict`` gives. Each round therefore
runs :func:`livseg.inference.segment.segment` (network grid, back onto the CT's grid, largest
component and hole filling) on every validation CT read from its source files, and scores the
mask against the reference liver with :mod:`livseg.evaluation.metrics`, as ``livseg evaluate``
does on the ``original_grid``. The loss is reported on the network grid, against the cached
soft label. Sums over this rank's cases, so DDP ranks can split the cases and add up.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np
import torch
from torch import nn

from livseg.config import RunConfig
from livseg.data.cache import CachedDataset
from livseg.data.io.volume import allowed_label_values, load_labels, load_volume
from livseg.data.preprocessing import binarize
from livseg.errors import DatasetError
from livseg.evaluation.metrics import dice, voxel_accuracy
from livseg.inference.segment import segment
from livseg.nn.losses import AdvancedComboLoss

__all__ = ["validate_own_grid"]

_LIVER_LOSS = AdvancedComboLoss()


def _sources(cases: CachedDataset) -> list[tuple[str, Path, Path]]:
    """(case id, CT path, label path) of every case, refusing cases made in memory (phantoms)."""
    entries = cases.manifest["cases"]
    out = []
    for case_id in cases.case_ids:
        image, label = str(entries[case_id]["image"]), str(entries[case_id]["label"])
        if image.startswith("phantom:"):
            raise DatasetError(f"{cases.cache_dir}: validation case {case_id} is a generated phantom without a CT file "
                               "to score on its own grid; validate on a dataset folder or train with "
                               "train.val_fraction=0")
        out.append((case_id, Path(image), Path(label)))
    return out


@torch.no_grad()
def validate_own_grid(
    model: nn.Module, cases: CachedDataset, loss_fn: nn.Module, config: RunConfig, *, device: torch.device,
) -> dict[str, float]:
    """Dice and voxel accuracy of :func:`segment` on each case's own grid, as sums over ``cases``.

    Args:
        model: the unwrapped network (put in eval mode here, restored afterwards).
        cases: this rank's validation cases (their manifest names the source files).
        loss_fn: the training loss, taken on the network grid against the cached label.
        config: the run's configuration (preprocessing, ``train.threshold``, liver labels).
        device: where the model is.

    Returns:
        The keys of :func:`livseg.training.loops.validate_epoch` (``dice_sum``, ``dice_count``,
        ``accuracy_sum``, ``loss_sum``, ``count``; tumour sums 0): a case without reference
        liver has no Dice and still counts for accuracy and loss.
    """
    sums = {"dice_sum": 0.0, "dice_count": 0.0, "accuracy_sum": 0.0, "loss_sum": 0.0, "count": 0.0,
            "tumour_dice_sum": 0.0, "tumour_count": 0.0}
    liver_labels = config.preprocess.liver_labels
    was_training = model.training
    model.eval()
    try:
        for index, (case_id, image_path, label_path) in enumerate(_sources(cases)):
            volume = load_volume(image_path)
            labels = load_labels(label_path, like=volume, allowed=allowed_label_values(liver_labels))
            reference = binarize(labels, liver_labels) > 0
            result = segment(volume, (model, config), threshold=config.train.threshold)
            mask = result.mask > 0
            if reference.any():
                sums["dice_sum"] += dice(mask, reference)
                sums["dice_count"] += 1
            sums["accuracy_sum"] += voxel_accuracy(mask, reference)
            sums["count"] += 1
            # the cache holds the same network grid (same preprocessing), with the soft label
            target = cases[index]["label"][None].to(device)
            prob = torch.from_numpy(np.clip(result.probabilities, 1e-6, 1 - 1e-6))[None, None].to(device)
            # a multi-organ model's validation loss: the paper's loss on its liver channel (the
            # cached target is the liver's share; the neighbours are scored by livseg's benchmarks)
            liver_loss = _LIVER_LOSS if config.model.classes else loss_fn
            sums["loss_sum"] += float(liver_loss(torch.logit(prob), target))
    finally:
        model.train(was_training)
    return sums

