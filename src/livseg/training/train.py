"""Training: the paper's schedule with checkpoints, exact resumption, seeds and DDP.

:func:`train` turns a dataset (or a cache from ``livseg preprocess``) and a
:class:`~livseg.config.RunConfig` into a run folder::

    RUN_DIR/config.json    the resolved RunConfig (livseg.config.to_dict)
    RUN_DIR/splits.json    the train/validation case ids used, and the test ids held out
                           (``train.test_fraction``) for ``evaluate``
    RUN_DIR/metrics.csv    one row per epoch: epoch, train_loss, val_loss, val_dice,
                           val_accuracy, seconds, lr, and for stage 2 val_tumour_dice and
                           val_score (rewritten atomically every epoch)
    RUN_DIR/curves.png     training loss and validation Dice / accuracy per epoch (redrawn at
                           most every 30 s, and always after the last epoch)
    RUN_DIR/best.pt        checkpoint with the best validation Dice (network grid); stage 2:
                           the best mean of liver and tumour Dice (region grid)
    RUN_DIR/last.pt        checkpoint after the latest epoch, with everything needed to resume
    RUN_DIR/cache/         preprocessed arrays, only when DATA was a dataset folder or CSV

``best.pt`` holds only livseg.nn.checkpoint's standard keys (weights, config, history: what
prediction needs). ``last.pt`` adds ``optimizer`` (Adam state), ``scaler`` (float16 GradScaler,
CUDA only), ``rng`` (one entry per rank:
torch, CUDA, numpy and python ``random`` states, as tensors/ints/lists so that
``torch.load(weights_only=True)`` reads them), ``data_order`` (sampler seed and the next epoch;
the shuffle order and the per-sample augmentation are functions of seed and epoch only) and
``world_size``. Resuming from ``last.pt`` therefore continues bit-for-bit where the
uninterrupted run would have been (in deterministic mode, same world size and device).

Run it on several processes with ``torchrun --nproc_per_node=N -m livseg train ...``: each
rank trains on its shard (DistributedSampler), validation cases are split across ranks and the
sums reduced, and only rank 0 writes files and logs. Given a dataset folder, rank 0 builds the
cache while the other ranks poll for a marker file rather than wait inside a collective (whose
timeout, 10 minutes under NCCL, preprocessing LiTS exceeds); the run folder must therefore be on
a disk every rank sees, as the cache in it already requires. BatchNorm statistics stay per rank (plain
BatchNorm, as in the paper); ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` would be the
option for small per-GPU batches.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from livseg.config import RegionConfig, RunConfig, TrainConfig, to_dict, validate_config
from livseg.data.cache import CachedDataset, resolve_liver_labels
from livseg.data.datasets import SPLITS_FILE, save_split
from livseg.data.patches import RegionCases, RegionPatches
from livseg.data.io.files import prepare_output_dir, write_json
from livseg.device import autocast_dtype, resolve_device
from livseg.errors import ConfigError
from livseg.nn.checkpoint import Checkpoint, load_checkpoint
from livseg.nn.losses import make_loss
from livseg.nn.model import UNet3D
from livseg.training.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sums,
    barrier,
    broadcast_buffers,
    broadcast_object,
    cleanup,
    env_world,
    setup,
)
from livseg.training.loops import (
    make_train_loader,
    make_val_loader,
    train_one_epoch,
    validate_epoch,
)
from livseg.training.run_folder import (
    RUN_FILES, check_resume_config, check_run_folder, clear_run_folder, fits_in_memory, load_run_split,
    prepare_cache, save_epoch,
)
from livseg.training.runstate import capture_rng, derived_seed, restore_rng, runtime, seed_all

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "train"]

PLOT_EVERY_S = 30.0


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank).

    Attributes:
        best_score: best mean validation Dice (network grid), NaN if no epoch ran; for stage 2
            the best ``val_score`` (mean of liver and tumour Dice on the region grid).
        best_epoch: the epoch that reached it (1-based; 0 if none).
        history: one dict per finished epoch with the keys of ``metrics.csv``.
        paths: ``run_dir``, ``cache``, and one entry per file in the run folder.
    """

    best_score: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- train


def train(
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: RunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device = "auto",
    progress: bool = True,
    stop_after_epoch: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train a UNet3D and write the run folder (see the module docstring).

    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank calls this; the process group is created
    and destroyed here.

    Args:
        data: dataset folder or CSV (preprocessed into ``out_dir/cache`` first), or a cache from
            ``livseg preprocess`` made with the same ``config.preprocess``.
        out_dir: run folder.
        config: the full run configuration (a preset with overrides).
        resume: continue from ``out_dir/last.pt``.
        overwrite: start afresh in a folder that already holds a run.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        progress: tqdm bar per epoch (rank 0 only).
        stop_after_epoch: return after this epoch as if interrupted (last.pt is written); a
            resumed run already past it trains no further.
        max_seconds: wall-clock budget of this call, counted from its start (cache preparation
            included): the epoch that crosses it is the last one, and it still writes best.pt,
            last.pt, metrics.csv and curves.png (so ``resume`` can continue the run). At least
            one epoch always runs. None: no limit.

    Returns:
        The :class:`TrainResult`.

    Raises:
        ConfigError: invalid config, unavailable device, a cache made with other
            preprocessing, or a resume with a changed configuration.
        OutputExistsError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        InputFileNotFoundError: no data, or nothing to resume.
        DatasetError: unusable data or split.
    """
    validate_config(config)
    if config.preprocess.spacing:
        raise ConfigError(
            f"preprocess.spacing={config.preprocess.spacing}: a fixed-spacing grid gives every case its own shape, "
            "which whole-case training cannot batch; train such a model on patches "
            "(livseg.training.patches, as scripts/build_builtin_model.py does) or drop preprocess.spacing"
        )
    prepare_output_dir(out_dir)
    # a cache or a dataset.json may define the liver labels; the run records what it trains on
    config = replace(config, preprocess=resolve_liver_labels(data, config.preprocess))
    if stop_after_epoch is not None and stop_after_epoch < 1:
        raise ConfigError(f"stop_after_epoch: expected an epoch >= 1, got {stop_after_epoch}")
    if max_seconds is not None and not (math.isfinite(max_seconds) and max_seconds > 0):
        raise ConfigError(f"max_seconds: expected a positive number of seconds or None, got {max_seconds}")
    # started here so the budget covers cache preparation; ranks agree on stopping (below)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    target = resolve_device(device, env_world().local_rank)
    info = setup(target)
    try:
        with runtime(config.train, target, info):
            return _train(Path(data), Path(out_dir), config, info=info, device=target, resume=resume,
                          overwrite=overwrite, progress=progress, stop_after_epoch=stop_after_epoch,
                          deadline=deadline)
    finally:
        cleanup(info)


def _train(
    data: Path, out: Path, config: RunConfig, *, info: DistInfo, device: torch.device, resume: bool,
    overwrite: bool, progress: bool, stop_after_epoch: int | None, deadline: float | None = None,
) -> TrainResult:
    """The steps of a run, on every rank: folder, data, network, starting point, epochs."""
    cache, split, checkpoint = _prepare_run_folder(data, out, config, info=info, resume=resume, overwrite=overwrite,
                                                   progress=progress)
    train_set, val_set = _datasets(cache, split, info, config)
    parts = _build(config, device, info, checkpoint)
    if info.is_main:
        log.info("training %s: %d train / %d val cases, %d epochs, device %s, %d process(es)",
                 config.name, len(split["train"]), len(split["val"]), config.train.epochs, device, info.world_size)
    state = _starting_point(checkpoint, parts, config, info, out)
    final = min(config.train.epochs, stop_after_epoch or config.train.epochs)
    _run_epochs(out, config, parts, state, train_set, val_set, info=info, device=device, progress=progress,
                final=final, deadline=deadline)
    barrier(info)  # nobody tears the group down while rank 0 still writes
    paths = {"run_dir": out, "cache": cache, **{Path(name).stem: out / name for name in RUN_FILES}}
    return TrainResult(best_score=state.best_score, best_epoch=state.best_epoch, history=list(state.history),
                       paths=paths)


@dataclass
class _Parts:
    """What trains: built once per run, the same on every rank."""

    model: torch.nn.Module  # the unwrapped network: validated and saved
    net: torch.nn.Module  # ``model`` or its DDP wrapper: trained
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: torch.nn.Module
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format


@dataclass
class _State:
    """Where the run stands: the finished epochs and the best of them."""

    history: list[dict[str, float]]
    best_score: float
    best_epoch: int
    start: int  # the next epoch to train (1-based)


def _prepare_run_folder(
    data: Path, out: Path, config: RunConfig, *, info: DistInfo, resume: bool, overwrite: bool, progress: bool,
) -> tuple[Path, dict[str, Any], Checkpoint | None]:
    """Check (and with ``overwrite`` clear) the run folder, find or build the cache, load the split
    and, with ``resume``, last.pt; rank 0 writes config.json and splits.json.

    Returns:
        ``(cache folder, split, checkpoint to resume from or None)``.
    """
    check_run_folder(out, resume=resume, overwrite=overwrite)
    barrier(info)  # every rank has looked at the folder before rank 0 changes it
    if overwrite and info.is_main:
        clear_run_folder(out, config)
    cache = prepare_cache(data, out, config, progress=progress, info=info)
    split = load_run_split(cache, out, config, resume=resume)
    checkpoint = load_checkpoint(out / "last.pt") if resume else None
    if checkpoint is not None:
        check_resume_config(checkpoint.config, config, out / "last.pt")
    if info.is_main:
        write_json(out / "config.json", to_dict(config))
        save_split(split, out / SPLITS_FILE)
    return cache, split, checkpoint


def _datasets(cache: Path, split: dict[str, Any], info: DistInfo, config: RunConfig) -> tuple[Dataset, Dataset]:
    """The training cases and this rank's share of the validation cases, in RAM when they fit;
    for stage 2, patches of the training regions and the whole validation regions."""
    val_ids = split["val"][info.rank :: info.world_size]  # each rank scores its share
    in_memory = fits_in_memory(cache, split["train"] + val_ids, info)
    if not in_memory:
        log.info("cache larger than half the free memory: reading cases from disk (memory-mapped)")
    train_set = CachedDataset(cache, split["train"], in_memory=in_memory)
    val_set = CachedDataset(cache, val_ids, in_memory=in_memory)
    if not config.region.enabled:
        return train_set, val_set
    return (RegionPatches(train_set, config.region, seed=config.train.seed), RegionCases(val_set, config.region))


def _build(config: RunConfig, device: torch.device, info: DistInfo, checkpoint: Checkpoint | None) -> _Parts:
    """Network (with the checkpoint's weights when resuming), optimiser, grad scaler and loss."""
    tc = config.train
    torch.manual_seed(tc.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = UNet3D(config.model)
    if checkpoint is not None:
        model.load_state_dict(checkpoint.model_state)
    memory_format = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
    model = model.to(device).to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    dtype, scaler = _precision(device, amp=tc.amp)
    net = model
    if info.active:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        # channels-last 1x1x1 kernels (the head) have size-1 axes whose strides differ from
        # DDP's bucket views only nominally; torch warns on every step about it
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return _Parts(model=model, net=net, optimizer=optimizer, scaler=scaler, loss_fn=make_loss(config),
                  amp_dtype=dtype, memory_format=memory_format)


def _precision(device: torch.device, *, amp: bool) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """Autocast dtype (livseg.device's rule, shared with inference) and the grad scaler that
    float16 needs: bf16 on GPUs with native bf16, fp16 + GradScaler on older ones, fp32 on CPU."""
    dtype = autocast_dtype(device, enabled=amp)
    return dtype, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def _starting_point(checkpoint: Checkpoint | None, parts: _Parts, config: RunConfig, info: DistInfo,
                    out: Path) -> _State:
    """Epoch 1 with fresh seeds, or the state saved in last.pt (optimiser, scaler, history, RNGs)."""
    tc = config.train
    if checkpoint is None:
        seed_all(derived_seed(tc.seed, info.rank, 1))  # dropout stream, distinct per rank
        return _State(history=[], best_score=float("nan"), best_epoch=0, start=1)
    parts.optimizer.load_state_dict(checkpoint.extra["optimizer"])
    if "scaler" in checkpoint.extra and parts.scaler.is_enabled():
        parts.scaler.load_state_dict(checkpoint.extra["scaler"])
    state = _State(history=checkpoint.history, best_score=checkpoint.best_score, best_epoch=checkpoint.best_epoch,
                   start=checkpoint.epoch + 1)
    states = checkpoint.extra.get("rng") or []
    if int(checkpoint.extra.get("world_size", 1)) != info.world_size or len(states) <= info.rank:
        if info.is_main:
            log.warning("resuming with %d processes, the run had %s: the continuation will not be bit-identical",
                        info.world_size, checkpoint.extra.get("world_size"))
        seed_all(derived_seed(tc.seed, info.rank, state.start))
    else:
        restore_rng(states[info.rank])
    if info.is_main:
        log.info("resuming %s after epoch %d (best val Dice %.4f at epoch %d)",
                 out, checkpoint.epoch, state.best_score, state.best_epoch)
    return state


def _run_epochs(
    out: Path, config: RunConfig, parts: _Parts, state: _State, train_set: CachedDataset, val_set: CachedDataset,
    *, info: DistInfo, device: torch.device, progress: bool, final: int, deadline: float | None,
) -> None:
    """Train epochs ``state.start .. final`` (fewer when the deadline passes), updating ``state``;
    rank 0 writes the run folder after each."""
    tc = config.train
    pin = device.type == "cuda"
    val_loader = make_val_loader(val_set, tc, pin_memory=pin)
    last_plot = -math.inf
    for epoch in range(state.start, final + 1):
        for group in parts.optimizer.param_groups:  # a function of the epoch alone: resumes exactly
            group["lr"] = epoch_lr(tc, epoch)
        loader = make_train_loader(train_set, tc, epoch=epoch, info=info, pin_memory=pin)
        record = _epoch(epoch, parts, loader, val_loader, tc, config.region, info=info, device=device,
                        progress=progress and info.is_main)
        state.history.append(record)
        if not math.isfinite(record["train_loss"]) and info.is_main:
            log.warning("epoch %d: training loss is %s; lower train.lr", epoch, record["train_loss"])
        score = record.get("val_score", record["val_dice"])  # stage 2: liver and tumour Dice together
        improved = math.isnan(state.best_score) or score > state.best_score
        if improved:
            state.best_score, state.best_epoch = score, epoch
        rng_states = all_gather_objects(capture_rng(), info)  # collective: every rank takes part
        # rank 0's clock decides, so every DDP rank leaves after the same epoch
        out_of_time = deadline is not None and bool(broadcast_object(time.monotonic() >= deadline, info))
        stop = epoch == final or out_of_time
        if out_of_time and epoch < final and info.is_main:
            log.info("time budget reached: stopping after epoch %d of %d", epoch, tc.epochs)
        if info.is_main:
            # drawing costs ~0.5 s; on short epochs refresh the figure at most every PLOT_EVERY_S
            plot = stop or time.monotonic() - last_plot >= PLOT_EVERY_S
            save_epoch(out, config, parts.model, parts.optimizer, parts.scaler, state.history, epoch=epoch,
                       best_score=state.best_score, best_epoch=state.best_epoch, improved=improved,
                       rng_states=rng_states, info=info, plot=plot)
            last_plot = time.monotonic() if plot else last_plot
            tumour = f"  val tumour Dice {record['val_tumour_dice']:.4f}" if "val_tumour_dice" in record else ""
            log.info("epoch %d/%d  train loss %.4f  val Dice %.4f%s  val accuracy %.4f  %.1f s",
                     epoch, tc.epochs, record["train_loss"], record["val_dice"], tumour, record["val_accuracy"],
                     record["seconds"])
        if stop:
            break


def epoch_lr(tc: TrainConfig, epoch: int) -> float:
    """The learning rate of an epoch (1-based): ``tc.lr``, or with ``lr_schedule="poly"`` nnU-Net's
    decay ``tc.lr * (1 - (epoch - 1) / tc.epochs) ** 0.9`` (full rate in the first epoch)."""
    if tc.lr_schedule == "poly":
        return tc.lr * (1.0 - (epoch - 1) / tc.epochs) ** 0.9
    return tc.lr


def _epoch(
    epoch: int, parts: _Parts, loader: DataLoader, val_loader: DataLoader, tc: TrainConfig, region: RegionConfig,
    *, info: DistInfo, device: torch.device, progress: bool,
) -> dict[str, float]:
    """One training epoch and one validation pass, summed over all ranks: a metrics.csv row."""
    started = time.perf_counter()
    loss_sum, count = train_one_epoch(
        parts.net, loader, parts.loss_fn, parts.optimizer, parts.scaler, device=device, amp_dtype=parts.amp_dtype,
        memory_format=parts.memory_format, progress=progress, desc=f"epoch {epoch}/{tc.epochs}",
    )
    broadcast_buffers(parts.model, info)  # validate, on every rank, the model rank 0 saves
    sums = validate_epoch(parts.model, val_loader, parts.loss_fn, threshold=tc.threshold, device=device,
                          amp_dtype=parts.amp_dtype, memory_format=parts.memory_format,
                          region=region if region.enabled else None)
    loss_sum, count, dice_sum, n_dice, acc_sum, val_loss_sum, n_val, tumour_sum, n_tumour = all_reduce_sums(
        [loss_sum, count, sums["dice_sum"], sums["dice_count"], sums["accuracy_sum"], sums["loss_sum"], sums["count"],
         sums["tumour_dice_sum"], sums["tumour_count"]], info, device
    )
    record = {  # val_dice: over the cases with reference liver (NaN when none has any)
        "epoch": epoch, "train_loss": loss_sum / count, "val_loss": val_loss_sum / n_val,
        "val_dice": dice_sum / n_dice if n_dice else math.nan, "val_accuracy": acc_sum / n_val,
        "seconds": time.perf_counter() - started, "lr": parts.optimizer.param_groups[0]["lr"],
    }
    if region.enabled:  # best.pt by the mean of liver and tumour Dice (liver alone if no case has tumour)
        tumour = tumour_sum / n_tumour if n_tumour else math.nan
        record.update(val_tumour_dice=tumour, val_score=record["val_dice"] if n_tumour == 0 else
                      (record["val_dice"] + tumour) / 2)
    return record

