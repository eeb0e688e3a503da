"""Phantoms for patch training, generated straight into a cache on the run's network grid.

Fine-tuning on a few real CTs mixes phantoms in so that the model keeps what it learned
(``patches.phantoms``); the built-in model's stage 1 trains on phantoms alone. Either way they
are made here, in memory (no NIfTI files), with the scan ranges the built-in model trains on
(:data:`livseg.phantom.generator.SCAN_RANGES`: abdomen, chest and abdomen, scans that cut the
liver, thin slabs), and cached with :func:`livseg.data.cache.store_case`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from livseg.config import PreprocessConfig, to_dict
from livseg.data.cache import MANIFEST_FILE, open_cache, store_case, update_split
from livseg.data.datasets import SPLITS_FILE
from livseg.data.io.files import prepare_output_dir, write_json
from livseg.data.io.volume import LITS_LIVER_LABELS, Volume

log = logging.getLogger(__name__)

__all__ = ["phantom_seed", "write_phantom_cache"]


def phantom_seed(seed: int, k: int) -> int:
    """The generator seed of phantom ``k`` of a set made with ``seed`` (as liver-v1's build drew them)."""
    return int(np.random.SeedSequence([seed, 1, k]).generate_state(1)[0])


def _make(args: tuple[Path, int, int, str | None, dict[str, Any], Any, tuple[str, ...]]) -> tuple[str, dict[str, Any]]:
    """Make phantom ``k`` and store it in the cache (in a worker process): its id and manifest entry."""
    from livseg.config import from_dict
    from livseg.phantom.generator import SCAN_RANGES, make_phantom, read_liver_mask

    out, k, seed, shape_file, preprocess, grid, classes = args
    mask, affine = read_liver_mask(Path(shape_file)) if shape_file else (None, None)
    phantom = make_phantom(seed, shape=grid, liver_shape=mask, liver_affine=affine, scan_ranges=SCAN_RANGES,
                           debug=bool(classes))
    source = {"image": f"phantom:{seed}", "label": f"phantom:{seed}", "image_stamp": None, "label_stamp": None,
              "liver_shape": shape_file}
    case_id = f"phantom-{k}"
    config = from_dict(PreprocessConfig, preprocess)
    volume = Volume(phantom.ct, phantom.affine)
    if classes:  # a multi-organ model: every class the phantom draws is labelled
        return case_id, store_phantom_organs(out, case_id, volume, phantom.organs, config, classes, source=source)
    return case_id, store_case(out, case_id, volume, phantom.labels, config, source=source)


def store_phantom_organs(out: Path, case_id: str, volume: Volume, organs: Any, config: PreprocessConfig,
                         classes: Sequence[str], *, source: dict[str, Any]) -> dict[str, Any]:
    """Cache a phantom's organ-id map as a multi-organ case (every class labelled)."""
    from livseg.data.cache import store_organ_case
    from livseg.data.organ_classes import phantom_lut, to_classes
    from livseg.data.organ_targets import organ_targets
    from livseg.data.preprocessing import network_input

    image, grid = network_input(volume, config)
    share, other = organ_targets(to_classes(organs, phantom_lut(classes)), volume.affine, grid, config, len(classes),
                                 list(classes).index("liver"))
    return store_organ_case(out, case_id, image, share, other, classes, source=source,
                            voxel_ml=float(np.prod(config.spacing)) / 1000.0)


class _Serial:
    """A one-process stand-in for ``multiprocessing.Pool`` (same ``imap_unordered``)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap_unordered(self, fn: Any, items: Sequence[Any]) -> Any:
        return map(fn, items)


def write_phantom_cache(
    out_dir: str | os.PathLike[str],
    n: int,
    *,
    seed: int,
    preprocess: PreprocessConfig,
    liver_shapes: Sequence[str | os.PathLike[str]] = (),
    workers: int = 1,
    shape: tuple[int, int, int] | None = None,
    classes: Sequence[str] = (),
) -> Path:
    """Generate ``n`` phantoms into a cache folder (resumable: cached phantoms are kept).

    Phantom ``k`` is case ``phantom-k``, made from :func:`phantom_seed` ``(seed, k)``; when
    ``liver_shapes`` are given, every odd ``k`` takes ``liver_shapes[(k // 2) % len]`` as its
    liver (real liver masks: the built-in model uses LiTS's), the others a procedural liver.
    Labels are the phantoms' 0/1/2 (tumour counts as liver), whatever the run's
    ``liver_labels``. The cache's ``splits.json`` trains on every phantom.

    Args:
        out_dir: the cache folder (new, or one this function wrote with the same settings).
        n: number of phantoms.
        seed: the set's seed.
        preprocess: the network grid (the run's ``preprocess``).
        liver_shapes: real liver masks (NIfTI, nonzero = liver) for every other phantom.
        workers: processes making phantoms (fork; 1: in this process).
        shape: the phantoms' array shape (default: CT-like, 256 x 256 in-plane; see
            :func:`livseg.phantom.generator.make_phantom`).
        classes: a multi-organ model's classes: every phantom is stored with its organ map
            (:func:`livseg.data.cache.store_organ_case`), labelling all of them.

    Returns:
        The cache folder.

    Raises:
        DatasetError: ``out_dir`` is something else, or a cache made with other settings.
    """
    out = prepare_output_dir(out_dir)
    config = replace(preprocess, liver_labels=LITS_LIVER_LABELS)
    manifest = open_cache(out, to_dict(config))
    shapes = [str(s) for s in liver_shapes]
    todo = []
    for k in range(int(n)):
        entry = manifest["cases"].get(f"phantom-{k}")
        if entry is None or not all((out / entry[key]).is_file() for key in ("image_file", "label_file")):
            liver = shapes[(k // 2) % len(shapes)] if shapes and k % 2 else None
            todo.append((out, k, phantom_seed(seed, k), liver, to_dict(config), shape, tuple(classes)))
    write_json(out / MANIFEST_FILE, manifest)  # marks the folder as a cache before any array lands
    started = time.perf_counter()
    if todo:
        log.info("making %d phantoms in %s (%d process(es))", len(todo), out, workers)
        with multiprocessing.get_context("fork").Pool(workers) if workers > 1 else _Serial() as pool:
            for case_id, entry in pool.imap_unordered(_make, todo):
                manifest["cases"][case_id] = entry
                write_json(out / MANIFEST_FILE, manifest)  # a killed run keeps every finished phantom
        log.info("made %d phantoms in %.0f s", len(todo), time.perf_counter() - started)
    update_split(out / SPLITS_FILE, [f"phantom-{k}" for k in range(int(n))], 0.0, seed, 0.0)
    return out
