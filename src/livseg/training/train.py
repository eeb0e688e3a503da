"""Training: one path for whole-CT and patch recipes, from scratch or from trained weights, with
checkpoints, exact resumption, seeds and DDP.

:func:`train` turns a dataset (or a cache from ``livseg preprocess``) and a
:class:`~livseg.config.RunConfig` into a run folder. ``train.sampling`` says what an epoch is:
``"whole"`` (the paper) is one pass over the training cases, each resampled to one fixed shape;
``"patches"`` (the built-in model, :mod:`livseg.training.patches`) is a round of
``patches.steps_per_round`` steps on random patches of fixed-spacing cases, with phantoms mixed
in (:mod:`livseg.training.inputs`), validated on each validation CT's own grid
(:mod:`livseg.training.validation`). ``init`` starts from a trained network, whose architecture
and preprocessing the run keeps (:mod:`livseg.training.init`). The run folder::

    RUN_DIR/config.json    the resolved RunConfig (livseg.config.to_dict)
    RUN_DIR/splits.json    the train/validation case ids used, and the test ids held out
                           (``train.test_fraction``) for ``evaluate``
    RUN_DIR/metrics.csv    one row per epoch: epoch, train_loss, val_loss, val_dice,
                           val_accuracy, seconds, lr, and for stage 2 val_tumour_dice and
                           val_score, for patches step (rewritten atomically every epoch)
    RUN_DIR/curves.png     training loss and validation Dice / accuracy per epoch (redrawn at
                           most every 30 s, and always after the last epoch)
    RUN_DIR/best.pt        checkpoint with the best validation Dice (network grid; patches: each
                           CT's own grid, the last round when nothing validates); stage 2: the
                           best mean of liver and tumour Dice (region grid)
    RUN_DIR/last.pt        checkpoint after the latest epoch, with everything needed to resume
    RUN_DIR/cache/         preprocessed arrays, only when DATA was a dataset folder or CSV
    RUN_DIR/phantoms/      patches: the phantoms mixed in (a cache), when generated or cached here

``best.pt`` holds only livseg.nn.checkpoint's standard keys (weights, config, history: what
prediction needs). ``last.pt`` adds ``optimizer`` (Adam state), ``scaler`` (float16 GradScaler,
CUDA only), ``rng`` (one entry per rank:
torch, CUDA, numpy and python ``random`` states, as tensors/ints/lists so that
``torch.load(weights_only=True)`` reads them), ``data_order`` (sampler seed and the next epoch;
the shuffle order and the per-sample augmentation are functions of seed and epoch only) and
``world_size``; with patch sampling each rank's ``rng`` entry also holds its patch generator
(``"patches"``). Resuming from ``last.pt`` therefore continues bit-for-bit where the
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from livseg.config import RunConfig, to_dict, validate_config
from livseg.data.cache import resolve_liver_labels
from livseg.data.datasets import SPLITS_FILE, save_split
from livseg.data.io.files import prepare_output_dir, write_json
from livseg.device import resolve_device
from livseg.errors import ConfigError
from livseg.nn.checkpoint import Checkpoint, load_checkpoint
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
from livseg.training.init import check_init_config, init_spec, load_init, widen_head
from livseg.training.inputs import RunInputs, make_inputs, prepare_mix
from livseg.training.loops import make_train_loader, make_val_loader, train_one_epoch, validate_epoch
from livseg.training.patches import step_lrs
from livseg.training.run_folder import (
    RUN_FILES, check_resume_config, check_run_folder, clear_run_folder, load_run_split, prepare_cache, save_epoch,
)
from livseg.training.runstate import capture_rng, derived_seed, restore_rng, runtime, seed_all
from livseg.training.setup import Parts, build_parts, epoch_lr
from livseg.training.validation import validate_own_grid

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "train"]

PLOT_EVERY_S = 30.0


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank).

    Attributes:
        best_score: best mean validation Dice (network grid; patches: own grid), NaN if no epoch
            ran or nothing validates; for stage 2 the best ``val_score`` (mean of liver and
            tumour Dice on the region grid).
        best_epoch: the epoch that reached it (1-based; 0 if none; the last one when nothing validates).
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
    init: str | os.PathLike[str] | None = None,
    phantoms: str | os.PathLike[str] | None = None,
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
        init: start from these weights: ``"builtin"``, ``"builtin:<name>"`` or a checkpoint
            file. ``config`` must have its network and preprocessing
            (:func:`livseg.training.init.adopt_init` gives them; recorded as ``train.init``).
        phantoms: patch sampling: a folder of phantoms (cache, or dataset such as ``livseg
            phantom`` output) to mix into training, instead of generating ``patches.phantoms``.
        resume: continue from ``out_dir/last.pt``.
        overwrite: start afresh in a folder that already holds a run.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        progress: tqdm bar per epoch (rank 0 only).
        stop_after_epoch: return after this epoch as if interrupted (last.pt is written); a
            resumed run already past it trains no further.
        max_seconds: wall-clock budget of this call, counted from its start (cache and phantoms
            included): the epoch that crosses it is the last one, and it still writes best.pt,
            last.pt, metrics.csv and curves.png (so ``resume`` can continue the run). At least
            one epoch always runs. None: no limit.

    Returns:
        The :class:`TrainResult`.

    Raises:
        ConfigError: invalid config, unavailable device, a cache made with other
            preprocessing, a resume with a changed configuration, or a network or preprocessing
            that differs from ``init``'s.
        CheckpointError: an unusable ``init`` checkpoint (or a cascade).
        OutputExistsError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        InputFileNotFoundError: no data, no init checkpoint, or nothing to resume.
        DatasetError: unusable data or split.
    """
    validate_config(config)
    if config.preprocess.spacing and config.train.sampling != "patches":
        raise ConfigError(
            f"preprocess.spacing={config.preprocess.spacing}: a fixed-spacing grid gives every case its own shape, "
            "which whole-case training cannot batch; set train.sampling=patches (the builtin presets do) or drop "
            "preprocess.spacing"
        )
    if phantoms is not None and (config.train.sampling != "patches" or config.patches.phantoms):
        raise ConfigError("phantoms: a folder of phantoms is mixed into patch sampling (train.sampling=patches) "
                          "instead of patches.phantoms generated ones; set patches.phantoms=0 or drop the folder")
    start_from = None
    if init is not None:  # checked before anything is written
        if resume:
            raise ConfigError("init starts a run from trained weights and resume continues one from its last.pt; "
                              "pass one of them")
        spec = init_spec(init)
        start_from = widen_head(load_init(spec), config)
        check_init_config(config, start_from.config, spec)
        config = replace(config, train=replace(config.train, init=spec))
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
                          deadline=deadline, init=start_from, phantoms=None if phantoms is None else Path(phantoms))
    finally:
        cleanup(info)


def _train(
    data: Path, out: Path, config: RunConfig, *, info: DistInfo, device: torch.device, resume: bool,
    overwrite: bool, progress: bool, stop_after_epoch: int | None, deadline: float | None,
    init: Checkpoint | None, phantoms: Path | None,
) -> TrainResult:
    """The steps of a run, on every rank: folder, data, network, starting point, epochs."""
    cache, split, checkpoint, config = _prepare_run_folder(data, out, config, info=info, resume=resume,
                                                           overwrite=overwrite, progress=progress)
    mix = prepare_mix(phantoms, out, config, info=info, progress=progress)
    inputs = make_inputs(cache, split, mix, info, config)
    parts = build_parts(config, device, info, resume=checkpoint, init=init)
    if info.is_main:
        unit = f"rounds of {config.patches.steps_per_round} patch steps" if inputs.sampler else "epochs"
        log.info("training %s: %d train / %d val cases, %d %s, device %s, %d process(es)%s", config.name,
                 len(split["train"]), len(split["val"]), config.train.epochs, unit, device, info.world_size,
                 f", from {config.train.init}" if config.train.init else "")
    state = _starting_point(checkpoint, parts, inputs, config, info, out)
    final = min(config.train.epochs, stop_after_epoch or config.train.epochs)
    _run_epochs(out, config, parts, state, inputs, info=info, device=device, progress=progress, final=final,
                deadline=deadline)
    barrier(info)  # nobody tears the group down while rank 0 still writes
    paths = {"run_dir": out, "cache": cache, **{Path(name).stem: out / name for name in RUN_FILES}}
    return TrainResult(best_score=state.best_score, best_epoch=state.best_epoch, history=list(state.history),
                       paths=paths)


@dataclass
class _State:
    """Where the run stands: the finished epochs and the best of them."""

    history: list[dict[str, float]]
    best_score: float
    best_epoch: int
    start: int  # the next epoch to train (1-based)


def _prepare_run_folder(
    data: Path, out: Path, config: RunConfig, *, info: DistInfo, resume: bool, overwrite: bool, progress: bool,
) -> tuple[Path, dict[str, Any], Checkpoint | None, RunConfig]:
    """Check (and with ``overwrite`` clear) the run folder, find or build the cache, load the split
    and, with ``resume``, last.pt; rank 0 writes config.json and splits.json.

    Returns:
        ``(cache folder, split, checkpoint to resume from or None, config)``; a resumed run keeps
        the ``train.init`` it was started from.
    """
    check_run_folder(out, resume=resume, overwrite=overwrite)
    barrier(info)  # every rank has looked at the folder before rank 0 changes it
    if overwrite and info.is_main:
        clear_run_folder(out, config)
    cache = prepare_cache(data, out, config, progress=progress, info=info)
    split = load_run_split(cache, out, config, resume=resume)
    checkpoint = load_checkpoint(out / "last.pt") if resume else None
    if checkpoint is not None:
        if not config.train.init:  # where the weights once came from is the run's, not this call's
            config = replace(config, train=replace(config.train, init=checkpoint.config.train.init))
        check_resume_config(checkpoint.config, config, out / "last.pt")
    if info.is_main:
        write_json(out / "config.json", to_dict(config))
        save_split(split, out / SPLITS_FILE)
    return cache, split, checkpoint, config


def _starting_point(checkpoint: Checkpoint | None, parts: Parts, inputs: RunInputs, config: RunConfig,
                    info: DistInfo, out: Path) -> _State:
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
        if inputs.sampler is not None:
            inputs.sampler.reseed(derived_seed(tc.seed, info.rank, state.start))
    else:
        restore_rng(states[info.rank])
        if inputs.sampler is not None:
            inputs.sampler.set_state(states[info.rank]["patches"])
    if info.is_main:
        log.info("resuming %s after epoch %d (best val Dice %.4f at epoch %d)",
                 out, checkpoint.epoch, state.best_score, state.best_epoch)
    return state


def _run_epochs(
    out: Path, config: RunConfig, parts: Parts, state: _State, inputs: RunInputs, *, info: DistInfo,
    device: torch.device, progress: bool, final: int, deadline: float | None,
) -> None:
    """Train epochs ``state.start .. final`` (fewer when the deadline passes), updating ``state``;
    rank 0 writes the run folder after each."""
    tc = config.train
    pin = device.type == "cuda"
    val_loader = None if inputs.sampler else make_val_loader(inputs.val_set, tc, pin_memory=pin)
    last_plot = -math.inf
    for epoch in range(state.start, final + 1):
        lrs = None
        if inputs.sampler is not None:
            lrs, loader = step_lrs(tc, config.patches, epoch, epoch_lr(tc, epoch)), inputs.sampler
        else:
            for group in parts.optimizer.param_groups:  # a function of the epoch alone: resumes exactly
                group["lr"] = epoch_lr(tc, epoch)
            loader = make_train_loader(inputs.train_set, tc, epoch=epoch, info=info, pin_memory=pin)
        record = _epoch(epoch, parts, loader, val_loader, inputs, config, lrs, info=info, device=device,
                        progress=progress and info.is_main)
        state.history.append(record)
        if not math.isfinite(record["train_loss"]) and info.is_main:
            log.warning("epoch %d: training loss is %s; lower train.lr", epoch, record["train_loss"])
        score = record.get("val_score", record["val_dice"])  # stage 2: liver and tumour Dice together
        improved = math.isnan(state.best_score) or score > state.best_score  # nothing validated: the latest
        if improved:
            state.best_score, state.best_epoch = score, epoch
        extra = {"patches": inputs.sampler.state()} if inputs.sampler is not None else {}
        rng_states = all_gather_objects({**capture_rng(), **extra}, info)  # collective: every rank takes part
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
            step = f" (step {record['step']})" if "step" in record else ""
            log.info("epoch %d/%d%s  train loss %.4f  val Dice %.4f%s  val accuracy %.4f  %.1f s",
                     epoch, tc.epochs, step, record["train_loss"], record["val_dice"], tumour, record["val_accuracy"],
                     record["seconds"])
        if stop:
            break


def _epoch(
    epoch: int, parts: Parts, loader: Any, val_loader: Any, inputs: RunInputs, config: RunConfig,
    lrs: list[float] | None, *, info: DistInfo, device: torch.device, progress: bool,
) -> dict[str, float]:
    """One training epoch (or round) and one validation pass, summed over all ranks: a metrics.csv row."""
    tc, region = config.train, config.region
    started = time.perf_counter()
    loss_sum, count = train_one_epoch(
        parts.net, loader, parts.loss_fn, parts.optimizer, parts.scaler, device=device, amp_dtype=parts.amp_dtype,
        memory_format=parts.memory_format, progress=progress, desc=f"epoch {epoch}/{tc.epochs}", lrs=lrs,
    )
    broadcast_buffers(parts.model, info)  # validate, on every rank, the model rank 0 saves
    if val_loader is None:
        sums = validate_own_grid(parts.model, inputs.val_set, parts.loss_fn, config, device=device)
    else:
        sums = validate_epoch(parts.model, val_loader, parts.loss_fn, threshold=tc.threshold, device=device,
                              amp_dtype=parts.amp_dtype, memory_format=parts.memory_format,
                              region=region if region.enabled else None)
    loss_sum, count, dice_sum, n_dice, acc_sum, val_loss_sum, n_val, tumour_sum, n_tumour = all_reduce_sums(
        [loss_sum, count, sums["dice_sum"], sums["dice_count"], sums["accuracy_sum"], sums["loss_sum"], sums["count"],
         sums["tumour_dice_sum"], sums["tumour_count"]], info, device
    )
    record = {  # val_dice: over the cases with reference liver (NaN when none has any, or none validates)
        "epoch": epoch, "train_loss": loss_sum / count, "val_loss": val_loss_sum / n_val if n_val else math.nan,
        "val_dice": dice_sum / n_dice if n_dice else math.nan, "val_accuracy": acc_sum / n_val if n_val else math.nan,
        "seconds": time.perf_counter() - started, "lr": parts.optimizer.param_groups[0]["lr"],
    }
    if region.enabled:  # best.pt by the mean of liver and tumour Dice (liver alone if no case has tumour)
        tumour = tumour_sum / n_tumour if n_tumour else math.nan
        record.update(val_tumour_dice=tumour, val_score=record["val_dice"] if n_tumour == 0 else
                      (record["val_dice"] + tumour) / 2)
    if inputs.sampler is not None:
        record["step"] = epoch * config.patches.steps_per_round
    return record
