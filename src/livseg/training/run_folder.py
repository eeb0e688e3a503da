"""The run folder of :func:`livseg.training.train.train`: checks before a run starts, the cache
and split it trains on, and what rank 0 writes after every epoch (checkpoints, metrics.csv,
curves.png). The folder's layout is described in :mod:`livseg.training.train`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from livseg.config import RunConfig, flatten, to_dict
from livseg.data.cache import check_liver_present, is_cache, load_manifest, preprocess_dataset, region_key
from livseg.data.datasets import SPLITS_FILE, load_split
from livseg.data.io.files import atomic_output, read_json, write_json
from livseg.errors import ConfigError, DatasetError, InputFileNotFoundError, OutputExistsError, one_line
from livseg.nn.checkpoint import save_checkpoint
from livseg.training.distributed import DistInfo, barrier

METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "val_accuracy", "seconds", "lr")
# written after the others when a run has them: stage 2's, and patch sampling's optimiser steps so far
EXTRA_COLUMNS = ("val_tumour_dice", "val_score", "step")
RUN_FILES = ("config.json", SPLITS_FILE, "metrics.csv", "curves.png", "best.pt", "last.pt")
# Rank 0 writes this into the run folder when the cache is ready; the other ranks poll for it.
READY_MARKER = ".livseg-cache-ready.json"
PREPARE_TIMEOUT_S = 48 * 3600.0  # LiTS (131 CTs) takes hours on a slow disk; a dead rank 0 ends the job sooner
PREPARE_POLL_S = 1.0
# Settings a resumed run may change without breaking exact continuation.
RESUMABLE_CHANGES = ("name", "train.epochs", "train.num_workers", "train.num_threads")


def check_run_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    last = out / "last.pt"
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other: resume continues a run, overwrite discards it")
    if resume and not last.is_file():
        raise InputFileNotFoundError(f"nothing to resume: {str(last)!r} not found; drop --resume to start a new run")
    if not resume and not overwrite and last.exists():
        raise OutputExistsError(
            f"{out} already holds a run (last.pt); pass --resume to continue it or --overwrite to start over"
        )


def clear_run_folder(out: Path, config: RunConfig) -> None:
    """For --overwrite: drop the old run's outputs, its cache if made for other preprocessing, and
    its phantoms (RUN_DIR/phantoms, remade from the seed when needed)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    cache = out / "cache"
    if is_cache(cache) and _cache_key(load_manifest(cache)) != _cache_key(config):
        shutil.rmtree(cache)
    if is_cache(out / "phantoms"):
        shutil.rmtree(out / "phantoms")


def _cache_key(source: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """What a cache must match: the preprocessing and, for stage 2, the region geometry."""
    if isinstance(source, RunConfig):
        return {**to_dict(source.preprocess), "region": region_key(source.region)}
    return {**source["preprocess"], "region": source.get("region")}


def on_main_first(fn: Callable[[], Any], info: DistInfo, marker: Path) -> None:
    """Run ``fn`` on rank 0 (possibly for hours) while the other ranks wait outside any collective.

    A rank waiting inside a collective would be killed by the process group's timeout (NCCL's
    watchdog: 10 minutes; preprocessing LiTS takes longer). So rank 0 writes ``marker`` (JSON,
    with the error if ``fn`` failed) when done and the others poll for it, for up to
    :data:`PREPARE_TIMEOUT_S`; if rank 0 dies instead, torchrun stops the others. The marker
    lives in the run folder, which every rank must see anyway (they all read the cache there).
    Every rank raises if ``fn`` failed, so none trains alone.
    """
    if not info.active:
        fn()
        return
    if info.is_main:
        marker.unlink(missing_ok=True)  # a marker left by a killed run must not release anyone
    barrier(info)  # quick: every rank is here; after it, only this run's marker can appear
    error: BaseException | None = None
    message: str | None = None
    if info.is_main:
        try:
            fn()
        except Exception as exc:  # re-raised below, after the other ranks have been told
            error = exc
        write_json(marker, {"error": None if error is None else f"{type(error).__name__}: {one_line(error)}"})
    else:
        deadline = time.monotonic() + PREPARE_TIMEOUT_S
        while not marker.is_file():
            if time.monotonic() > deadline:
                raise DatasetError(f"rank {info.rank} waited {PREPARE_TIMEOUT_S / 3600:g} h for rank 0 to "
                                   f"prepare the cache ({marker} never appeared); is the run folder on a shared disk?")
            time.sleep(PREPARE_POLL_S)
        message = read_json(marker).get("error")
    barrier(info)  # every rank has read the marker
    if info.is_main:
        marker.unlink(missing_ok=True)
    if error is not None:
        raise error
    if message is not None:
        raise DatasetError(f"rank 0 failed while preparing the run: {message}")


def prepare_cache(data: Path, out: Path, config: RunConfig, *, progress: bool, info: DistInfo) -> Path:
    """The cache folder to train from: DATA itself if it is one, else RUN_DIR/cache built from it."""
    if not data.exists():
        raise InputFileNotFoundError(
            f"data not found: {str(data)!r}; expected a dataset folder, a CSV of image,label pairs, "
            "or a cache written by `livseg preprocess`"
        )
    wanted = _cache_key(config)
    if is_cache(data):
        manifest = load_manifest(data)
        check_liver_present({}, manifest, config.preprocess.liver_labels, where=str(data))  # else empty targets
        have = _cache_key(manifest)
        if have != wanted:
            diff = ", ".join(f"{k}: cache {have.get(k)} vs run {v}" for k, v in wanted.items() if have.get(k) != v)
            raise ConfigError(
                f"{data}: cache was preprocessed differently from this run's config ({diff}); use the same "
                "--preset/--set preprocess.* as `livseg preprocess` did, or pass the dataset folder instead"
            )
        return data
    cache = out / "cache"
    on_main_first(
        lambda: preprocess_dataset(
            data, cache, config=config.preprocess, val_fraction=config.train.val_fraction,
            seed=config.train.seed, progress=progress, test_fraction=config.train.test_fraction,
            region=config.region,
        ),
        info,
        out / READY_MARKER,
    )
    return cache


def load_run_split(cache: Path, out: Path, config: RunConfig, *, resume: bool) -> dict[str, Any]:
    split = load_split(cache / SPLITS_FILE)
    if split["test_fraction"] != config.train.test_fraction:
        raise ConfigError(
            f"{cache / SPLITS_FILE}: split has test_fraction {split['test_fraction']} ({len(split['test'])} test "
            f"cases), the run asks for {config.train.test_fraction}; train with --test-fraction "
            f"{split['test_fraction']} to use this split, or make the cache again with `livseg preprocess "
            f"--test-fraction {config.train.test_fraction}`"
        )
    if not split["train"] or (not split["val"] and config.train.sampling != "patches"):
        raise DatasetError(
            f"{cache / SPLITS_FILE}: {len(split['train'])} training and {len(split['val'])} validation cases; "
            "training needs at least one of each (two or more cases in the dataset; patch sampling trains "
            "without validation cases)"
        )
    saved = out / SPLITS_FILE
    if resume and saved.is_file():
        old = load_split(saved)
        if (old["train"], old["val"], old["test"]) != (split["train"], split["val"], split["test"]):
            raise DatasetError(
                f"{saved}: the run was trained on a different split than {cache / SPLITS_FILE} now holds; "
                "resume with the same data and seed"
            )
    return split


def check_resume_config(stored: RunConfig, requested: RunConfig, path: Path) -> None:
    old, new = flatten(stored), flatten(requested)
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


def fits_in_memory(cache: Path, case_ids: list[str], info: DistInfo,
                   extra: tuple[Path | None, list[str]] = (None, [])) -> bool:
    """Whether every rank on this machine can hold its cases (and ``extra``: another cache's, the
    phantoms a patch run mixes in) in RAM with room to spare."""
    need = 0
    for folder, ids in ((cache, case_ids), extra):
        entries = load_manifest(folder)["cases"] if folder is not None else {}
        need += sum((folder / entries[c][key]).stat().st_size for c in ids for key in ("image_file", "label_file")
                    if folder is not None and (folder / entries[c][key]).is_file())
    need *= max(1, info.local_world_size)
    available = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    if available is None:
        return True
    return need < available // 2  # half: activations, workers and the OS need the rest


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    columns = METRIC_COLUMNS + tuple(k for k in EXTRA_COLUMNS if history and k in history[0])
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (int(row[k]) if k in ("epoch", "step") else f"{row[k]:.8g}") for k in columns})
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(buffer.getvalue())



def save_epoch(
    out: Path, config: RunConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, history: list[dict[str, float]], *, epoch: int, best_score: float,
    best_epoch: int, improved: bool, rng_states: list[dict[str, Any]], info: DistInfo, plot: bool,
) -> None:
    """Rank 0's per-epoch writes: best.pt (if improved), last.pt, metrics.csv, curves.png (if plot).

    best.pt holds what prediction needs (weights, config, history: about a third of a file with
    Adam's two moments per weight); last.pt also holds the optimiser, grad-scaler and RNG states
    and the data order, which is all that ``--resume`` reads.
    """
    from livseg.figures import plot_curves  # matplotlib only where figures are drawn

    common: dict[str, Any] = {
        "config": config, "model_state": model.state_dict(), "epoch": epoch, "best_score": best_score,
        "best_epoch": best_epoch, "history": history,
    }
    if improved:
        save_checkpoint(out / "best.pt", **common)
    resume: dict[str, Any] = {"optimizer": optimizer.state_dict()}
    if scaler.is_enabled():
        resume["scaler"] = scaler.state_dict()
    save_checkpoint(
        out / "last.pt", **common, **resume, rng=rng_states, world_size=info.world_size,
        data_order={"sampler": "DistributedSampler", "seed": config.train.seed, "next_epoch": epoch + 1},
    )
    write_metrics(out / "metrics.csv", history)
    if plot:
        plot_curves(history, out / "curves.png")
