"""Training: the paper's schedule with checkpoints, exact resumption, seeds and DDP.

:func:`train` turns a dataset (or a cache from ``livseg preprocess``) and a
:class:`~livseg.config.RunConfig` into a run folder::

    RUN_DIR/config.json    the resolved RunConfig (livseg.config.to_dict)
    RUN_DIR/splits.json    the train/validation case ids used
    RUN_DIR/metrics.csv    one row per epoch: epoch, train_loss, val_loss, val_dice,
                           val_accuracy, seconds, lr (rewritten atomically every epoch)
    RUN_DIR/curves.png     training loss and validation Dice / accuracy per epoch (redrawn at
                           most every 30 s, and always after the last epoch)
    RUN_DIR/best.pt        checkpoint with the best validation Dice (network grid)
    RUN_DIR/last.pt        checkpoint after the latest epoch, with everything needed to resume
    RUN_DIR/cache/         preprocessed arrays, only when DATA was a dataset folder or CSV

Checkpoint extras (besides livseg.checkpoint's standard keys): ``optimizer`` (Adam state),
``scaler`` (float16 GradScaler, CUDA only), and in ``last.pt`` also ``rng`` (one entry per rank:
torch, CUDA, numpy and python ``random`` states, as tensors/ints/lists so that
``torch.load(weights_only=True)`` reads them), ``data_order`` (sampler seed and the next epoch;
the shuffle order and the per-sample augmentation are functions of seed and epoch only) and
``world_size``. Resuming from ``last.pt`` therefore continues bit-for-bit where the
uninterrupted run would have been (in deterministic mode, same world size and device).

Run it on several processes with ``torchrun --nproc_per_node=N -m livseg train ...``: each
rank trains on its shard (DistributedSampler), validation cases are split across ranks and the
sums reduced, and only rank 0 writes files and logs. BatchNorm statistics stay per rank (plain
BatchNorm, as in the paper); ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` would be the
option for small per-GPU batches.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from livseg.checkpoint import load_checkpoint, save_checkpoint
from livseg.config import RunConfig, to_dict, validate
from livseg.cache import CachedDataset, is_cache, load_manifest, preprocess_dataset
from livseg.data import SPLITS_FILE, load_split, save_split
from livseg.distributed import (
    DistInfo, all_gather_objects, all_reduce_sums, barrier, broadcast_buffers, broadcast_object, cleanup,
    env_world, setup,
)
from livseg.errors import ConfigError, DatasetError, InputFileNotFoundError, OutputExistsError
from livseg.io import atomic_output, write_json
from livseg.loops import make_train_loader, make_val_loader, train_one_epoch, validate as validate_epoch
from livseg.losses import AdvancedComboLoss
from livseg.model import UNet3D
from livseg.runstate import amp_dtype, capture_rng, derived_seed, resolve_device, restore_rng, runtime, seed_all

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "train"]

METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "val_accuracy", "seconds", "lr")
RUN_FILES = ("config.json", "splits.json", "metrics.csv", "curves.png", "best.pt", "last.pt")
# Settings a resumed run may change without breaking exact continuation.
RESUMABLE_CHANGES = ("name", "train.epochs", "train.num_workers", "train.num_threads")
PLOT_EVERY_S = 30.0


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank).

    Attributes:
        best_score: best mean validation Dice (network grid), NaN if no epoch ran.
        best_epoch: the epoch that reached it (1-based; 0 if none).
        history: one dict per finished epoch with the keys of ``metrics.csv``.
        paths: ``run_dir``, ``cache``, and one entry per file in the run folder.
    """

    best_score: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- run folder


def _check_run_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    last = out / "last.pt"
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other: resume continues a run, overwrite discards it")
    if resume and not last.is_file():
        raise InputFileNotFoundError(f"nothing to resume: {str(last)!r} not found; drop --resume to start a new run")
    if not resume and not overwrite and last.exists():
        raise OutputExistsError(
            f"{out} already holds a run (last.pt); pass --resume to continue it or --overwrite to start over"
        )


def _clear_run_folder(out: Path, config: RunConfig) -> None:
    """For --overwrite: drop the old run's outputs, and its cache if made for other preprocessing."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    cache = out / "cache"
    if is_cache(cache) and load_manifest(cache)["preprocess"] != to_dict(config.preprocess):
        shutil.rmtree(cache)


def _on_main(fn: Callable[[], Any], info: DistInfo) -> None:
    """Run ``fn`` on rank 0 only; every rank raises if it failed, so none waits forever."""
    error: BaseException | None = None
    if info.is_main:
        try:
            fn()
        except Exception as exc:  # re-raised below, after the other ranks have been told
            error = exc
    message = broadcast_object(None if error is None else f"{type(error).__name__}: {error}", info)
    if error is not None:
        raise error
    if message is not None:
        raise DatasetError(f"rank 0 failed while preparing the run: {message}")


def _prepare_cache(data: Path, out: Path, config: RunConfig, *, progress: bool, info: DistInfo) -> Path:
    """The cache folder to train from: DATA itself if it is one, else RUN_DIR/cache built from it."""
    if not data.exists():
        raise InputFileNotFoundError(
            f"data not found: {str(data)!r}; expected a dataset folder, a CSV of image,label pairs, "
            "or a cache written by `livseg preprocess`"
        )
    wanted = to_dict(config.preprocess)
    if is_cache(data):
        have = load_manifest(data)["preprocess"]
        if have != wanted:
            diff = ", ".join(f"{k}: cache {have.get(k)} vs run {v}" for k, v in wanted.items() if have.get(k) != v)
            raise ConfigError(
                f"{data}: cache was preprocessed differently from this run's config ({diff}); use the same "
                "--preset/--set preprocess.* as `livseg preprocess` did, or pass the dataset folder instead"
            )
        return data
    cache = out / "cache"
    _on_main(
        lambda: preprocess_dataset(
            data, cache, config=config.preprocess, val_fraction=config.train.val_fraction,
            seed=config.train.seed, progress=progress,
        ),
        info,
    )
    return cache


def _load_run_split(cache: Path, out: Path, *, resume: bool) -> dict[str, Any]:
    split = load_split(cache / SPLITS_FILE)
    if not split["train"] or not split["val"]:
        raise DatasetError(
            f"{cache / SPLITS_FILE}: {len(split['train'])} training and {len(split['val'])} validation cases; "
            "training needs at least one of each (two or more cases in the dataset)"
        )
    saved = out / "splits.json"
    if resume and saved.is_file():
        old = load_split(saved)
        if (old["train"], old["val"]) != (split["train"], split["val"]):
            raise DatasetError(
                f"{saved}: the run was trained on a different split than {cache / SPLITS_FILE} now holds; "
                "resume with the same data and seed"
            )
    return split


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_resume_config(stored: RunConfig, requested: RunConfig, path: Path) -> None:
    old, new = _flat(to_dict(stored)), _flat(to_dict(requested))
    diff = [
        f"{k}: run {old.get(k)!r} vs now {new.get(k)!r}"
        for k in sorted(new)
        if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES
    ]
    if diff:
        raise ConfigError(
            f"{path}: cannot resume with a different configuration ({'; '.join(diff)}); only "
            f"{', '.join(RESUMABLE_CHANGES)} may change. Resume without --preset/--set, or start a new run folder"
        )


def _fits_in_memory(cache: Path, case_ids: list[str], info: DistInfo) -> bool:
    """Whether every rank on this machine can hold its cases in RAM with room to spare."""
    entries = load_manifest(cache)["cases"]
    need = sum(
        (cache / entries[c][key]).stat().st_size for c in case_ids for key in ("image_file", "label_file")
        if (cache / entries[c][key]).is_file()
    ) * max(1, info.local_world_size)
    available = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    if available is None:
        return True
    return need < available // 2  # half: activations, workers and the OS need the rest


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (int(row[k]) if k == "epoch" else f"{row[k]:.8g}") for k in METRIC_COLUMNS})
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(buffer.getvalue())


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
    validate(config)
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
    tc = config.train
    _check_run_folder(out, resume=resume, overwrite=overwrite)
    barrier(info)  # every rank has looked at the folder before rank 0 changes it
    if overwrite and info.is_main:
        _clear_run_folder(out, config)
    cache = _prepare_cache(data, out, config, progress=progress, info=info)
    split = _load_run_split(cache, out, resume=resume)
    checkpoint = load_checkpoint(out / "last.pt") if resume else None
    if checkpoint is not None:
        _check_resume_config(checkpoint.config, config, out / "last.pt")
    paths = {"run_dir": out, "cache": cache, **{Path(name).stem: out / name for name in RUN_FILES}}
    if info.is_main:
        write_json(out / "config.json", to_dict(config))
        save_split(split, out / "splits.json")

    val_ids = split["val"][info.rank :: info.world_size]  # each rank scores its share
    in_memory = _fits_in_memory(cache, split["train"] + val_ids, info)
    if not in_memory:
        log.info("cache larger than half the free memory: reading cases from disk (memory-mapped)")
    train_set = CachedDataset(cache, split["train"], in_memory=in_memory)
    val_set = CachedDataset(cache, val_ids, in_memory=in_memory)

    torch.manual_seed(tc.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = UNet3D(config.model)
    if checkpoint is not None:
        model.load_state_dict(checkpoint.model_state)
    memory_format = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
    model = model.to(device).to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    autocast_dtype = amp_dtype(tc, device)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
    loss_fn = AdvancedComboLoss(config.loss)
    net = model
    if info.active:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        # channels-last 1x1x1 kernels (the head) have size-1 axes whose strides differ from
        # DDP's bucket views only nominally; torch warns on every step about it
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

    if info.is_main:
        log.info("training %s: %d train / %d val cases, %d epochs, device %s, %d process(es)",
                 config.name, len(split["train"]), len(split["val"]), tc.epochs, device, info.world_size)
    history: list[dict[str, float]] = []
    best_score, best_epoch, start = float("nan"), 0, 1
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint.extra["optimizer"])
        if "scaler" in checkpoint.extra and scaler.is_enabled():
            scaler.load_state_dict(checkpoint.extra["scaler"])
        history, best_score, best_epoch = checkpoint.history, checkpoint.best_score, checkpoint.best_epoch
        start = checkpoint.epoch + 1
        states = checkpoint.extra.get("rng") or []
        if int(checkpoint.extra.get("world_size", 1)) != info.world_size or len(states) <= info.rank:
            if info.is_main:
                log.warning("resuming with %d processes, the run had %s: the continuation will not be bit-identical",
                            info.world_size, checkpoint.extra.get("world_size"))
            seed_all(derived_seed(tc.seed, info.rank, start))
        else:
            restore_rng(states[info.rank])
        if info.is_main:
            log.info("resuming %s after epoch %d (best val Dice %.4f at epoch %d)",
                     out, checkpoint.epoch, best_score, best_epoch)
    else:
        seed_all(derived_seed(tc.seed, info.rank, 1))  # dropout stream, distinct per rank

    pin = device.type == "cuda"
    val_loader = make_val_loader(val_set, tc, pin_memory=pin)
    last_plot = -math.inf
    final = min(tc.epochs, stop_after_epoch or tc.epochs)
    for epoch in range(start, final + 1):
        started = time.perf_counter()
        loader = make_train_loader(train_set, tc, epoch=epoch, info=info, pin_memory=pin)
        loss_sum, count = train_one_epoch(
            net, loader, loss_fn, optimizer, scaler, device=device, amp_dtype=autocast_dtype,
            memory_format=memory_format, progress=progress and info.is_main, desc=f"epoch {epoch}/{tc.epochs}",
        )
        broadcast_buffers(model, info)  # validate, on every rank, the model rank 0 saves
        sums = validate_epoch(model, val_loader, loss_fn, threshold=tc.threshold, device=device,
                              amp_dtype=autocast_dtype, memory_format=memory_format)
        loss_sum, count, dice_sum, acc_sum, val_loss_sum, n_val = all_reduce_sums(
            [loss_sum, count, sums["dice_sum"], sums["accuracy_sum"], sums["loss_sum"], sums["count"]], info, device
        )
        record = {
            "epoch": epoch, "train_loss": loss_sum / count, "val_loss": val_loss_sum / n_val,
            "val_dice": dice_sum / n_val, "val_accuracy": acc_sum / n_val,
            "seconds": time.perf_counter() - started, "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(record)
        if not math.isfinite(record["train_loss"]) and info.is_main:
            log.warning("epoch %d: training loss is %s; lower train.lr", epoch, record["train_loss"])
        improved = math.isnan(best_score) or record["val_dice"] > best_score
        if improved:
            best_score, best_epoch = record["val_dice"], epoch
        rng_states = all_gather_objects(capture_rng(), info)  # collective: every rank takes part
        # rank 0's clock decides, so every DDP rank leaves after the same epoch
        out_of_time = deadline is not None and bool(broadcast_object(time.monotonic() >= deadline, info))
        stop = epoch == final or out_of_time
        if out_of_time and epoch < final and info.is_main:
            log.info("time budget reached: stopping after epoch %d of %d", epoch, tc.epochs)
        if info.is_main:
            # drawing costs ~0.5 s; on short epochs refresh the figure at most every PLOT_EVERY_S
            plot = stop or time.monotonic() - last_plot >= PLOT_EVERY_S
            _save_epoch(out, config, model, optimizer, scaler, history, epoch=epoch, best_score=best_score,
                        best_epoch=best_epoch, improved=improved, rng_states=rng_states, info=info, plot=plot)
            last_plot = time.monotonic() if plot else last_plot
            log.info("epoch %d/%d  train loss %.4f  val Dice %.4f  val accuracy %.4f  %.1f s",
                     epoch, tc.epochs, record["train_loss"], record["val_dice"], record["val_accuracy"],
                     record["seconds"])
        if stop:
            break
    barrier(info)  # nobody tears the group down while rank 0 still writes
    return TrainResult(best_score=best_score, best_epoch=best_epoch, history=list(history), paths=paths)


def _save_epoch(
    out: Path, config: RunConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, history: list[dict[str, float]], *, epoch: int, best_score: float,
    best_epoch: int, improved: bool, rng_states: list[dict[str, Any]], info: DistInfo, plot: bool,
) -> None:
    """Rank 0's per-epoch writes: best.pt (if improved), last.pt, metrics.csv, curves.png (if plot)."""
    from livseg.report import plot_curves  # matplotlib only where figures are drawn

    common: dict[str, Any] = {
        "config": config, "model_state": model.state_dict(), "epoch": epoch, "best_score": best_score,
        "best_epoch": best_epoch, "history": history, "optimizer": optimizer.state_dict(),
    }
    if scaler.is_enabled():
        common["scaler"] = scaler.state_dict()
    if improved:
        save_checkpoint(out / "best.pt", **common)
    save_checkpoint(
        out / "last.pt", **common, rng=rng_states, world_size=info.world_size,
        data_order={"sampler": "DistributedSampler", "seed": config.train.seed, "next_epoch": epoch + 1},
    )
    _write_metrics(out / "metrics.csv", history)
    if plot:
        plot_curves(history, out / "curves.png")
