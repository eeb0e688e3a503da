"""What a run trains and validates on, for both samplings.

``train.sampling = "whole"``: the training cases of the cache (stage 2: patches of their liver
regions) and this rank's validation cases, batched by :mod:`livseg.training.loops`.

``train.sampling = "patches"``: a :class:`~livseg.training.patches.PatchSampler` over the
training cases and the mixed-in phantoms (first the phantoms, then the data's cases, each in
natural order), and this rank's validation cases, scored on their own grids
(:mod:`livseg.training.validation`). The phantoms (:func:`prepare_mix`) are a folder given to
``train(phantoms=...)`` (a cache, or a dataset such as ``livseg phantom`` output, cached into
``RUN_DIR/phantoms``) or ``patches.phantoms`` generated into ``RUN_DIR/phantoms``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from livseg.config import RunConfig, to_dict
from livseg.data.cache import CachedDataset, is_cache, load_manifest, preprocess_dataset
from livseg.data.datasets import SPLITS_FILE, load_split
from livseg.data.io.volume import LITS_LIVER_LABELS
from livseg.data.patches import RegionCases, RegionPatches
from livseg.device import cpu_count
from livseg.errors import ConfigError
from livseg.training.distributed import DistInfo
from livseg.training.patches import PatchCase, PatchSampler
from livseg.training.phantoms import write_phantom_cache
from livseg.training.run_folder import fits_in_memory, on_main_first

log = logging.getLogger(__name__)

__all__ = ["RunInputs", "make_inputs", "prepare_mix"]

MIX_FOLDER = "phantoms"  # RUN_DIR/phantoms: the phantoms a patch run mixes in
MIX_MARKER = ".livseg-phantoms-ready.json"


@dataclass
class RunInputs:
    """The data side of a run, on one rank."""

    train_set: Dataset  # whole sampling: what the epoch loader serves
    val_set: CachedDataset | Dataset  # this rank's validation cases
    sampler: PatchSampler | None = None  # patch sampling: the batches of every round


def prepare_mix(phantoms: Path | None, out: Path, config: RunConfig, *, info: DistInfo, progress: bool) -> Path | None:
    """The cache of phantoms a patch run mixes in (rank 0 makes it, the others wait), or None.

    Raises:
        ConfigError: a phantom cache made with other preprocessing.
    """
    if config.train.sampling != "patches" or (phantoms is None and config.patches.phantoms == 0):
        return None
    preprocess = replace(config.preprocess, liver_labels=LITS_LIVER_LABELS)  # phantoms are labelled 0/1/2
    if phantoms is not None and is_cache(phantoms):
        have = load_manifest(phantoms)["preprocess"]
        diff = [k for k, v in to_dict(preprocess).items() if k != "liver_labels" and have.get(k) != v]
        if diff:
            raise ConfigError(f"{phantoms}: phantom cache preprocessed differently from this run ({', '.join(diff)}); "
                              "pass the phantoms' dataset folder instead, or make the cache with the run's preprocessing")
        return phantoms
    target = out / MIX_FOLDER
    if phantoms is not None:
        make = lambda: preprocess_dataset(phantoms, target, config=preprocess, val_fraction=0.0,  # noqa: E731
                                          seed=config.train.seed, progress=progress)
    else:
        workers = config.train.num_threads or cpu_count()
        make = lambda: write_phantom_cache(target, config.patches.phantoms, seed=config.train.seed,  # noqa: E731
                                           preprocess=preprocess, workers=max(1, min(workers, 8)),
                                           classes=config.model.classes)
    on_main_first(make, info, out / MIX_MARKER)
    return target


def _all_ids(cache: Path) -> list[str]:
    split = load_split(cache / SPLITS_FILE)
    return split["train"] + split["val"] + split["test"]


def make_inputs(cache: Path, split: dict[str, Any], mix: Path | None, info: DistInfo, config: RunConfig) -> RunInputs:
    """Training and (this rank's) validation data, in RAM when they fit (else memory-mapped)."""
    val_ids = split["val"][info.rank :: info.world_size]  # each rank scores its share
    mix_ids = _all_ids(mix) if mix is not None else []
    in_memory = fits_in_memory(cache, split["train"] + val_ids, info, extra=(mix, mix_ids))
    if not in_memory:
        log.info("cache larger than half the free memory: reading cases from disk (memory-mapped)")
    train_set = CachedDataset(cache, split["train"], in_memory=in_memory)
    val_set = CachedDataset(cache, val_ids, in_memory=in_memory)
    if config.train.sampling == "patches":
        weight = config.patches.real_weight
        cases = [] if mix is None else _patch_cases(CachedDataset(mix, mix_ids, in_memory=in_memory), 1.0)
        cases += _patch_cases(train_set, weight)
        if info.is_main:
            log.info("patches from %d case(s) of the data (weight %g) and %d phantom(s) (weight 1)",
                     len(train_set), weight, len(cases) - len(train_set))
        return RunInputs(train_set, val_set, PatchSampler(cases, config, seed=config.train.seed, rank=info.rank))
    if not config.region.enabled:
        return RunInputs(train_set, val_set)
    return RunInputs(RegionPatches(train_set, config.region, seed=config.train.seed), RegionCases(val_set, config.region))


def _patch_cases(cases: CachedDataset, weight: float) -> list[PatchCase]:
    return [PatchCase(case_id, *cases.arrays(k), label_scale=cases.label_scales[k], weight=weight,
                      other=cases.others[k], classes=cases.classes[k])
            for k, case_id in enumerate(cases.case_ids)]
