"""The inner loops of training: data loaders, one training epoch, one validation pass.

:mod:`livseg.training.train` owns the run (folders, checkpoints, resumption); this module only moves
batches through the network. Everything here works unchanged for one process and for a
DistributedDataParallel rank: the caller passes the sampler's rank layout and reduces the
returned sums.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from livseg.config import AugmentConfig, RegionConfig, TrainConfig
from livseg.data.augmentation import augment_batch, draw_params
from livseg.evaluation.metrics import dice, voxel_accuracy
from livseg.nn.sliding_window import sliding_window
from livseg.training.distributed import DistInfo

__all__ = ["AugmentedView", "make_train_loader", "make_val_loader", "train_one_epoch", "validate_epoch"]


class AugmentedView(Dataset):
    """Cached cases with each sample's augmentation drawn from one generator per (seed, epoch, index).

    Items gain an ``"augment"`` entry (:func:`livseg.data.augmentation.draw_params`: a few
    numbers); :func:`train_one_epoch` applies them to the batch on the training device, so the
    resampling runs on the GPU there instead of in CPU workers. Seeding each sample from its
    coordinates rather than from a shared stream makes the augmentation independent of the
    number of DataLoader workers and of their scheduling, and a resumed run needs no generator
    state to reproduce the next epoch.

    Args:
        base: a :class:`livseg.data.cache.CachedDataset` (items ``{"image", "label", "case_id"}``).
        config: augmentation settings, or None for no augmentation.
        seed: the run's seed.
        epoch: the epoch being served (1-based).
    """

    def __init__(self, base: Dataset, config: AugmentConfig | None, *, seed: int, epoch: int) -> None:
        self.base, self.config, self.seed, self.epoch = base, config, seed, epoch

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        if self.config is None:
            return item
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return {**item, "augment": draw_params(self.config, rng)}


def _seed_worker(worker_id: int) -> None:
    """Give each worker distinct numpy / random seeds derived from its torch seed.

    torch seeds every worker with ``base_seed + worker_id`` (the base seed comes from the
    loader's generator), but numpy and random would otherwise be forked copies of the parent.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_train_loader(
    dataset: Dataset, config: TrainConfig, *, epoch: int, info: DistInfo, pin_memory: bool
) -> DataLoader:
    """A shuffled loader for one epoch, its order a function of (seed, epoch, rank) only.

    A fresh loader per epoch keeps no hidden iterator state, so a resumed run rebuilds exactly
    the order the uninterrupted run would have used. ``DistributedSampler`` is used even for a
    single process (one replica), to have one code path.

    Args:
        dataset: the training cases (not yet augmented).
        config: batch size, workers, seed, augmentation.
        epoch: 1-based epoch number.
        info: rank layout; each rank gets a disjoint shard.
        pin_memory: page-locked host memory for faster copies to a GPU.
    """
    augment_config = config.augment if config.augment.enabled else None
    if hasattr(dataset, "set_epoch"):  # stage 2's patches are drawn per epoch (livseg.data.patches)
        dataset.set_epoch(epoch)
    view = AugmentedView(dataset, augment_config, seed=config.seed, epoch=epoch)
    sampler = DistributedSampler(
        view, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([config.seed, epoch, info.rank]).generate_state(1)[0]))
    return DataLoader(
        view,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        worker_init_fn=_seed_worker,
        generator=generator,
        pin_memory=pin_memory,
    )


def make_val_loader(dataset: Dataset, config: TrainConfig, *, pin_memory: bool) -> DataLoader:
    """One case per batch, in order, so per-case metrics need no unbatching."""
    return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=config.num_workers, pin_memory=pin_memory)


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> torch.autocast:
    """Mixed precision on CUDA when ``amp_dtype`` is given, else a disabled context."""
    return torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)


def _to_device(tensor: torch.Tensor, device: torch.device, memory_format: torch.memory_format) -> torch.Tensor:
    return tensor.to(device, non_blocking=True).to(memory_format=memory_format)


def _training_batch(
    batch: dict[str, Any], device: torch.device, memory_format: torch.memory_format
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and label on ``device``, augmented there when the loader drew augmentations."""
    image = batch["image"].to(device, non_blocking=True)
    label = batch["label"].to(device, non_blocking=True)
    if "augment" in batch:
        image, label = augment_batch(image, label, batch["augment"])
    return image.to(memory_format=memory_format), label.to(memory_format=memory_format)


def train_one_epoch(
    net: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    memory_format: torch.memory_format,
    progress: bool,
    desc: str,
    lrs: Sequence[float] | None = None,
) -> tuple[float, int]:
    """One pass over this rank's shard of the training set (or one round of patch batches).

    Args:
        net: the model, possibly wrapped in DistributedDataParallel; put in train mode here.
        loader: from :func:`make_train_loader`; its drawn augmentations are applied on ``device``.
        loss_fn: ``loss_fn(logits, target) -> scalar``.
        optimizer: stepped once per batch.
        scaler: float16 loss scaler (a disabled one for float32 / bfloat16).
        device: where the batches go.
        amp_dtype: autocast dtype on CUDA, None for full precision.
        memory_format: ``torch.channels_last_3d`` on CPU, else ``torch.contiguous_format``.
        progress: show a tqdm bar.
        desc: the bar's label.
        lrs: the learning rate of each batch (patch sampling's per-step schedule); None keeps
            the optimiser's.

    Returns:
        ``(sum of per-sample losses, number of samples)`` on this rank.
    """
    net.train()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress, dynamic_ncols=True)
    for index, batch in enumerate(bar):
        image, label = _training_batch(batch, device, memory_format)
        if lrs is not None:
            for group in optimizer.param_groups:
                group["lr"] = lrs[index]
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp_dtype):
            logits = net(image)
        # the loss sums in float32 itself; taking it outside autocast keeps BCE in float32 too
        loss = loss_fn(logits.float(), label)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n = image.shape[0]
        total += loss.detach().double() * n  # no .item(): keeps CUDA asynchronous
        count += n
        if progress:
            bar.set_postfix(loss=f"{float(total) / count:.4f}")
    return float(total), count


@torch.no_grad()
def validate_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    *,
    threshold: float,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    memory_format: torch.memory_format,
    region: RegionConfig | None = None,
) -> dict[str, float]:
    """Per-case Dice, voxel accuracy and loss on the network grid, as sums over this rank's cases.

    A voxel is liver when its probability is ``>= threshold`` (the convention of
    :mod:`livseg.inference.segment`). Dice and accuracy come from :func:`livseg.evaluation.metrics.dice` and
    :func:`livseg.evaluation.metrics.voxel_accuracy` on the boolean masks, so the numbers are those the
    evaluation reports on the same grid. A case without reference liver has no Dice (an empty
    prediction would score 1 and lift the mean that chooses best.pt): it is left out of
    ``dice_sum``/``dice_count``, as nnU-Net leaves such cases out of its mean, and still counts
    for accuracy and loss.

    Stage 2 (``region`` given): each case is the whole liver region, run with the sliding window
    as inference runs it (probabilities blended; the loss is taken on their logits). Dice and
    accuracy are those of the liver-or-tumour channel against label > 0, and the tumour Dice
    (tumour channel inside the predicted liver against label 2) is summed over the cases that
    have tumour.

    Args:
        model: the unwrapped model (not the DDP wrapper: ranks validate different cases).
        loader: from :func:`make_val_loader` (batch size 1).
        loss_fn: the training loss, reported as validation loss.
        threshold: probability threshold.
        device, amp_dtype, memory_format: as for :func:`train_one_epoch`.
        region: stage 2's settings (patch, overlap, blending), None for stage 1.

    Returns:
        ``{"dice_sum", "dice_count", "accuracy_sum", "loss_sum", "count", "tumour_dice_sum",
        "tumour_count"}``.
    """
    was_training = model.training
    model.eval()
    sums = {"dice_sum": 0.0, "dice_count": 0.0, "accuracy_sum": 0.0, "loss_sum": 0.0, "count": 0.0,
            "tumour_dice_sum": 0.0, "tumour_count": 0.0}

    def probabilities(x: torch.Tensor) -> torch.Tensor:
        with _autocast(device, amp_dtype):
            logits = model(x.to(memory_format=memory_format))
        return torch.sigmoid(logits.float())

    try:
        for batch in loader:
            image = _to_device(batch["image"], device, memory_format)
            label = _to_device(batch["label"], device, memory_format)
            if region is None:
                with _autocast(device, amp_dtype):
                    logits = model(image)
                logits = logits.float()
            else:
                prob = sliding_window(image[0], probabilities, region.patch_shape, overlap=region.overlap,
                                      blend=region.blend)[None]
                logits = torch.logit(prob.clamp(1e-6, 1.0 - 1e-6))
            sums["loss_sum"] += float(loss_fn(logits, label))
            prob = (torch.sigmoid(logits) >= threshold).cpu().numpy()
            ref = label.cpu().numpy()
            for p, r in zip(prob, ref):
                liver = p[0]
                if np.any(r[0] >= 0.5):  # no reference liver: no Dice (nnU-Net leaves such cases out too)
                    sums["dice_sum"] += dice(liver, r[0] >= 0.5)
                    sums["dice_count"] += 1
                sums["accuracy_sum"] += voxel_accuracy(liver, r[0] >= 0.5)
                sums["count"] += 1
                if p.shape[0] > 1 and np.any(r[0] > 1.5):
                    sums["tumour_dice_sum"] += dice(p[1] & liver, r[0] > 1.5)
                    sums["tumour_count"] += 1
    finally:
        model.train(was_training)
    return sums
