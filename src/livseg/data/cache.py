"""The preprocessed cache: a dataset resampled once onto the network grid, and a Dataset over it.

Layout (written by :func:`preprocess_dataset`)::

    <cache>/manifest.json        {"format": "livseg-cache", "version": 1, "preprocess": {...},
                                  "cases": {case_id: {image, label, image_stamp, label_stamp,
                                            shape, affine, spacing, liver_ml, image_file,
                                            label_file}}}
    <cache>/splits.json          {"seed", "val_fraction", "test_fraction", "train": [...],
                                  "val": [...], "test": [...]}
    <cache>/<case_id>_image.npy  float32 [X, Y, Z], windowed to [0, 1], on the target grid
    <cache>/<case_id>_label.npy  uint8 [X, Y, Z], binary liver: label in ``preprocess.liver_labels``
                                 (LiTS 1,2: tumour counts as liver)

A fixed-spacing cache (``preprocess.spacing``: every case keeps its own extent, trained on
patches) stores the image as float16 (steps of 0.25 HU in the liver window, half the memory)
and the label as the liver's share of each voxel in steps of 1/255 (the soft target of patch
training; the entry's ``"label_scale": 255`` says so, and :class:`CachedDataset` divides by it).

A multi-organ case (a liver-v2 build's, :func:`store_organ_case`) adds ``<case_id>_other.npy``
(uint8: the most frequent class other than the liver in each voxel, indices into the entry's
``"classes"``, the classes the case labels); a case without it labels background and liver only.

A stage-2 cache (``region`` given: :mod:`livseg.data.patches`) holds instead each case's liver
region at the region spacing, labels 0/1/2, and the manifest records ``"region": {"spacing_mm",
"context_mm"}`` and per case ``"region": {"spacing", "start", "stop", "ras_shape"}``.

One case's arrays, files and manifest entry are made by :mod:`livseg.data.cache_case`
(re-exported here). Every file is written through :func:`livseg.data.io.files.atomic_output` and the manifest is rewritten after
each case, so an interrupted run keeps every finished case and never leaves half a file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from livseg.config import PreprocessConfig, RegionConfig, from_dict, to_dict
from livseg.data.cache_case import (  # noqa: F401 (also re-exported)
    SHARE_SCALE,
    case_arrays,
    file_stamp,
    store_case,
    store_organ_case,
)
from livseg.data.datasets import (
    SPLITS_FILE,
    Case,
    check_test_fraction,
    check_val_fraction,
    discover_cases,
    load_split,
    make_split,
    natural_key,
    save_split,
    validate_cases,
)
from livseg.data.io.files import prepare_output_dir, read_json, write_json
from livseg.data.io.volume import LITS_LIVER_LABELS, allowed_label_values, load_labels, load_volume
from livseg.data.nnunet import dataset_labels
from livseg.errors import ConfigError, DatasetError, InputFileNotFoundError, LivsegError, one_line

log = logging.getLogger(__name__)

CACHE_FORMAT = "livseg-cache"
CACHE_VERSION = 1
MANIFEST_FILE = "manifest.json"


def preprocess_dataset(
    data: str | os.PathLike[str] | Sequence[Case],
    out_dir: str | os.PathLike[str],
    *,
    config: PreprocessConfig,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
    test_fraction: float = 0.0,
    region: RegionConfig | None = None,
) -> dict[str, Any]:
    """Preprocess a whole dataset onto the network grid and cache it (resumable).

    Cases already in the cache (manifest entry for the same source files, and both arrays
    present) are skipped. A case that fails while being processed does not stop the others;
    all failures are raised together at the end, after the finished ones are saved.

    Args:
        data: dataset folder, CSV file, or a list of :class:`Case`.
        out_dir: cache folder; new, empty, or a cache made with the same ``config``.
        config: preprocessing (HU window, target shape, liver labels: with the default 1,2 the
            labels a dataset.json names are used instead, see :func:`resolve_liver_labels`).
        val_fraction: validation share of the split written to ``splits.json``.
        seed: seed of that split.
        progress: show a tqdm progress bar.
        test_fraction: share of the cases held out as ``test`` in ``splits.json`` (never trained
            or validated on; scored by ``evaluate``); 0 keeps the paper's train/validation split.
        region: stage 2's settings: cache each case's liver region instead (ignored unless
            ``region.enabled``).

    Returns:
        The manifest (see the module docstring).

    Raises:
        InputFileNotFoundError: ``data`` does not exist.
        DatasetError: unusable cases (all listed), or ``out_dir`` is another kind of folder or a
            cache made with a different preprocessing config.
    """
    check_val_fraction(val_fraction)  # before hours of work, not after
    check_test_fraction(test_fraction, val_fraction)
    out = prepare_output_dir(out_dir)
    named = ""
    if isinstance(data, (str, os.PathLike)):
        config = resolve_liver_labels(data, config)
        listed = dataset_labels(Path(data))  # train resolves them first: compare, to say where they came from
        if listed and tuple(config.liver_labels) == tuple(sorted(set(listed.get("liver", ()) + listed.get("tumour", ())))):
            named = f" (named by {data}'s dataset.json)"
    cases = list(data) if not isinstance(data, (str, os.PathLike)) else discover_cases(data)
    if not cases:
        raise DatasetError("no cases to preprocess")
    wanted = to_dict(config)
    region = region if region is not None and region.enabled else None
    manifest = open_cache(out, wanted, region_key(region))
    todo = [case for case in cases if not _is_done(out, manifest["cases"].get(case.case_id), case)]
    values = validate_cases(todo, liver_labels=config.liver_labels)
    if todo:
        where = str(data) if isinstance(data, (str, os.PathLike)) else "the dataset"
        check_liver_present(values, manifest, config.liver_labels, where=where, named=named)
    if named:  # every check has passed: now say what happens (else the error is the only line)
        log.info("liver labels %s%s", list(config.liver_labels), named)
    if len(todo) < len(cases):
        log.info("%d of %d cases already cached in %s", len(cases) - len(todo), len(cases), out)
    write_json(out / MANIFEST_FILE, manifest)  # marks the folder as ours before any array lands
    failed = []
    for case in tqdm(todo, desc="preprocess", unit="case", disable=not progress):
        try:
            manifest["cases"][case.case_id] = _preprocess_case(case, out, config, region)
        except LivsegError as exc:
            failed.append(f"  {case.case_id}: {one_line(exc)}")
            continue
        write_json(out / MANIFEST_FILE, manifest)
    if failed:
        summary = f"{len(failed)} of {len(todo)} cases failed; the others are cached in {out}:"
        raise DatasetError("\n".join([summary, *failed]))
    update_split(out / SPLITS_FILE, list(manifest["cases"]), val_fraction, seed, test_fraction)
    return manifest


def check_liver_present(values: dict[str, list[int]], manifest: dict[str, Any], liver_labels: Sequence[int], *,
                        where: str, named: str = "") -> None:
    """Refuse a dataset in which no label map holds a liver label: every training target would
    be empty (a dataset.json naming the wrong value, ``--liver-labels`` of another dataset).

    Args:
        values: the values each new case's label map holds (:func:`validate_cases`); {} to
            check a cache alone.
        manifest: the cache's manifest; a cached case with liver counts too.
        liver_labels: the values that count as liver.
        where: the dataset, for the message.
        named: where the liver labels came from, for the message.

    Raises:
        DatasetError: naming the liver labels and the values the label maps hold instead.
    """
    wanted = set(int(v) for v in liver_labels)
    if any(wanted & set(found) for found in values.values()):
        return
    if any(entry.get("liver_ml", 1) > 0 for entry in manifest["cases"].values()):  # no entry: an older cache
        return
    if not values:
        raise DatasetError(f"{where}: no case of the cache holds a liver label {sorted(wanted)} (liver_ml is 0 in every "
                           "case), so every training target would be empty: make the cache again with the liver's "
                           "value(s) (livseg preprocess --liver-labels)")
    held = sorted({v for found in values.values() for v in found})
    raise DatasetError(
        f"{where}: no label map of the {len(values)} case(s) holds a liver label {sorted(wanted)}{named}; they hold "
        f"{held[:20]}, so every training target would be empty: name the liver's value(s) (--liver-labels, "
        "preprocess.liver_labels)"
    )


def region_key(region: RegionConfig | None) -> dict[str, Any] | None:
    """What a stage-2 cache depends on: the region spacing and the context cut around the liver
    (margin plus jitter); None for a stage-1 cache."""
    if region is None or not region.enabled:
        return None
    return {"spacing_mm": [float(s) for s in region.spacing_mm], "context_mm": region.margin_mm + region.jitter_mm}


def resolve_liver_labels(data: str | os.PathLike[str], config: PreprocessConfig) -> PreprocessConfig:
    """The liver labels a dataset or cache defines, when ``config`` keeps the LiTS default 1,2.

    A cache was made for one set of liver labels (its label arrays are already binary), and an
    nnU-Net or MSD ``dataset.json`` names its liver and tumour values
    (:func:`livseg.data.nnunet.dataset_labels`); with the default both take over, so
    ``livseg preprocess Dataset003_Liver`` and then ``livseg train cache`` need no flag. An
    explicit other choice is kept (a dataset.json that disagrees is logged). The labels taken over
    are not logged here: callers say so once their checks have passed (an error is then the only line).

    Raises:
        DatasetError: a malformed dataset.json label (:func:`livseg.data.nnunet.dataset_labels`).
    """
    data = Path(data)
    if is_cache(data):
        found = tuple(load_manifest(data)["preprocess"]["liver_labels"])
        source = f"the cache {data}"
    else:
        named = dataset_labels(data)
        found = tuple(sorted(set(named.get("liver", ()) + named.get("tumour", ()))))
        source = f"{data}'s dataset.json ({', '.join(f'{k} {list(v)}' for k, v in named.items())})"
    if not found or found == tuple(config.liver_labels):
        return config
    if tuple(config.liver_labels) != LITS_LIVER_LABELS:
        log.warning("liver labels %s differ from %s; using %s as asked", list(config.liver_labels), source,
                    list(config.liver_labels))
        return config
    return replace(config, liver_labels=found)


def open_cache(out: Path, wanted: dict[str, Any], region: dict[str, Any] | None = None) -> dict[str, Any]:
    """The existing manifest of ``out`` (same config required) or a new, empty one.

    Args:
        out: the cache folder.
        wanted: ``to_dict(PreprocessConfig)`` the cache must have been made with.
        region: :func:`region_key` of a stage-2 cache, else None.

    Raises:
        DatasetError: ``out`` is another kind of folder, or a cache made with other settings.
    """
    if (out / MANIFEST_FILE).exists():
        manifest = load_manifest(out)
        old = {**manifest["preprocess"], "region": manifest.get("region")}
        wanted = {**wanted, "region": region}
        if old != wanted:
            changed = [k for k, v in wanted.items() if old.get(k) != v]
            detail = ", ".join(f"{k}: cache {old.get(k)} vs requested {wanted[k]}" for k in changed)
            raise DatasetError(
                f"{out}: cache was made with a different preprocessing config ({detail}); "
                "use another output folder or delete this one"
            )
        return manifest
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(
            f"{out}: exists and is not an empty folder or a livseg cache (no {MANIFEST_FILE}); choose a new folder"
        )
    manifest = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "preprocess": wanted, "cases": {}}
    if region is not None:
        manifest["region"] = region
    return manifest


def _is_done(out: Path, entry: dict[str, Any] | None, case: Case) -> bool:
    """A case is cached when its entry names the same source files, unchanged since (size and
    modification time; an entry from before stamps were kept counts as changed), and both
    arrays are there."""
    return (
        entry is not None
        and entry.get("image") == str(case.image.resolve())
        and entry.get("label") == (str(case.label.resolve()) if case.label else None)
        and entry.get("image_stamp") == file_stamp(case.image)
        and entry.get("label_stamp") == (file_stamp(case.label) if case.label else None)
        and (out / entry.get("image_file", "")).is_file()
        and (out / entry.get("label_file", "")).is_file()
    )


def _preprocess_case(case: Case, out: Path, config: PreprocessConfig, region: RegionConfig | None) -> dict[str, Any]:
    if case.label is None:  # validate_cases has refused these already; keeps the type checker honest
        raise DatasetError(f"no label for image {case.image}")
    volume = load_volume(case.image)
    labels = load_labels(case.label, like=volume, allowed=allowed_label_values(config.liver_labels))
    source = {"image": str(case.image.resolve()), "label": str(case.label.resolve()),
              "image_stamp": file_stamp(case.image), "label_stamp": file_stamp(case.label)}
    return store_case(out, case.case_id, volume, labels, config, region=region, source=source)


def update_split(path: Path, case_ids: list[str], val_fraction: float, seed: int, test_fraction: float) -> None:
    """Write ``splits.json``; keep an existing split (it may be hand-edited) unless the cases or its
    parameters changed."""
    if path.exists():
        try:
            old = load_split(path)
            same = set(old["train"]) | set(old["val"]) | set(old["test"]) == set(case_ids)
            wanted = (seed, val_fraction, test_fraction)
            if same and (old.get("seed"), old.get("val_fraction"), old["test_fraction"]) == wanted:
                return
        except LivsegError:
            pass
        log.info("replacing %s: cases, seed, val_fraction or test_fraction changed", path)
    save_split(make_split(case_ids, val_fraction=val_fraction, seed=seed, test_fraction=test_fraction), path)


def load_manifest(cache_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the manifest of a cache folder.

    Raises:
        InputFileNotFoundError: the folder does not exist.
        DatasetError: the folder is not a livseg cache (or one from a newer livseg).
    """
    folder = Path(cache_dir)
    if not folder.exists():
        raise InputFileNotFoundError(f"cache folder not found: {str(folder)!r}")
    if not (folder / MANIFEST_FILE).is_file():
        raise DatasetError(f"{folder}: not a livseg cache (no {MANIFEST_FILE}); create one with `livseg preprocess`")
    manifest = read_json(folder / MANIFEST_FILE)
    ours = isinstance(manifest, dict) and manifest.get("format") == CACHE_FORMAT
    if not ours or not isinstance(manifest.get("cases"), dict):
        raise DatasetError(f"{folder / MANIFEST_FILE}: not a livseg cache manifest (format {CACHE_FORMAT!r} expected)")
    if manifest.get("version") != CACHE_VERSION:
        raise DatasetError(f"{folder}: cache version {manifest.get('version')}; this livseg reads {CACHE_VERSION}")
    try:  # keys added since the cache was written (liver_labels) take their defaults
        manifest["preprocess"] = to_dict(from_dict(PreprocessConfig, manifest.get("preprocess", {})))
    except ConfigError as exc:
        raise DatasetError(f"{folder / MANIFEST_FILE}: invalid preprocessing entry ({one_line(exc)})") from None
    return manifest


def is_cache(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder written by :func:`preprocess_dataset`."""
    try:
        load_manifest(path)
    except LivsegError:
        return False
    return True


class CachedDataset(torch.utils.data.Dataset):
    """Cached cases as tensors: {"image": float32 [1, X, Y, Z], "label": float32 [1, X, Y, Z] (0/1;
    in [0, 1] for a fixed-spacing cache), "case_id": str}.

    Args:
        cache_dir: folder written by :func:`preprocess_dataset`.
        case_ids: cases to serve (e.g. ``load_split(...)["train"]``); all when None.
        in_memory: load every array once; otherwise memory-map them (for caches larger than RAM).

    Raises:
        DatasetError: unknown case ids or missing array files (all listed).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        case_ids: Sequence[str] | None = None,
        *,
        in_memory: bool = True,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.manifest = load_manifest(self.cache_dir)
        entries = self.manifest["cases"]
        self.case_ids = list(case_ids) if case_ids is not None else sorted(entries, key=natural_key)
        unknown = [c for c in self.case_ids if c not in entries]
        if unknown:
            raise DatasetError(f"{self.cache_dir}: cases not in the cache: {unknown}")
        files = [(self.cache_dir / entries[c]["image_file"], self.cache_dir / entries[c]["label_file"])
                 for c in self.case_ids]
        missing = [str(f) for pair in files for f in pair if not f.is_file()]
        if missing:
            raise DatasetError(
                f"{self.cache_dir}: {len(missing)} cached arrays are missing: {missing}; rerun `livseg preprocess`"
            )
        mode = None if in_memory else "r"
        self._arrays = [(np.load(i, mmap_mode=mode), np.load(l, mmap_mode=mode)) for i, l in files]
        # 1 for binary labels, SHARE_SCALE for a fixed-spacing cache's soft ones
        self.label_scales = [float(entries[c].get("label_scale", 1)) for c in self.case_ids]
        # multi-organ cases: the other class of each voxel and the classes the case labels
        self.others = [np.load(self.cache_dir / entries[c]["other_file"], mmap_mode=mode) if "other_file" in entries[c]
                       else None for c in self.case_ids]
        self.classes = [tuple(entries[c].get("classes", ("background", "liver"))) for c in self.case_ids]

    def __len__(self) -> int:
        return len(self.case_ids)

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The cached ``(image, label)`` arrays of one case, not copied (read-only use)."""
        return self._arrays[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self._arrays[index]
        target = np.array(label, dtype=np.float32)  # a copy: writing into the tensor leaves the cache alone
        if self.label_scales[index] != 1:
            target /= np.float32(self.label_scales[index])
        return {
            "image": torch.from_numpy(np.array(image, dtype=np.float32))[None],
            "label": torch.from_numpy(target)[None],
            "case_id": self.case_ids[index],
        }

