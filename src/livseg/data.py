"""Datasets: find CT/label pairs, check them, split them, and cache them on the network grid.

Recognised inputs (see DESIGN.md):
    LiTS   ``volume-N.nii[.gz]`` + ``segmentation-N.nii[.gz]``, in any subfolders (the download
           comes as "Training Batch 1", "Training Batch 2"); case id ``lits-N``.
    MSD    Task03_Liver: ``imagesTr/liver_N.nii.gz`` + ``labelsTr/liver_N.nii.gz``; case id
           ``msd-N``. macOS ``._`` resource files are skipped.
    CSV    columns ``image,label[,case_id]``; relative paths are relative to the CSV's folder;
           case id from ``case_id`` or the image file name.

Cache layout (written by :func:`preprocess_dataset`)::

    <cache>/manifest.json        {"format": "livseg-cache", "version": 1, "preprocess": {...},
                                  "cases": {case_id: {image, label, shape, affine, spacing,
                                            liver_ml, image_file, label_file}}}
    <cache>/splits.json          {"seed", "val_fraction", "train": [...], "val": [...]}
    <cache>/<case_id>_image.npy  float32 [X, Y, Z], windowed to [0, 1], on the target grid
    <cache>/<case_id>_label.npy  uint8 [X, Y, Z], binary liver (tumour counts as liver)

Every file is written through :func:`livseg.io.atomic_output` and the manifest is rewritten after
each case, so an interrupted run keeps every finished case and never leaves half a file.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import random
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from livseg.config import PreprocessConfig, to_dict
from livseg.errors import ConfigError, DatasetError, InputFileNotFoundError, LivsegError
from livseg.io import LITS_LABELS, atomic_output, case_name, is_nifti, load_labels, load_volume, same_grid
from livseg.preprocessing import preprocess_image, preprocess_labels

log = logging.getLogger(__name__)

CACHE_FORMAT = "livseg-cache"
CACHE_VERSION = 1
MANIFEST_FILE = "manifest.json"
SPLITS_FILE = "splits.json"
LAYOUTS = (
    "LiTS (volume-N.nii[.gz] with segmentation-N.nii[.gz], in any subfolders), "
    "MSD Task03_Liver (imagesTr/liver_N.nii.gz with labelsTr/liver_N.nii.gz), "
    "or a CSV file with columns image,label[,case_id]"
)
_LITS_IMAGE = re.compile(r"^volume-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_LITS_LABEL = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_MSD_FILE = re.compile(r"^liver_(\d+)\.nii(\.gz)?$", re.IGNORECASE)
Transform = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class Case:
    """One CT and its label map. ``label`` is None for an image found without one."""

    case_id: str
    image: Path
    label: Path | None


def natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers by value (``lits-2`` before ``lits-10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


# --------------------------------------------------------------------------------------- discovery


def discover_cases(path: str | os.PathLike[str]) -> list[Case]:
    """Find the CT/label pairs of a LiTS folder, an MSD folder or a CSV file.

    Images without a label are returned with ``label=None`` (:func:`validate_cases` reports
    them); a label without its image, or two files for one case, cannot be a case and fails here.

    Args:
        path: dataset folder or CSV file.

    Returns:
        The cases, sorted naturally by case id.

    Raises:
        InputFileNotFoundError: ``path`` does not exist.
        DatasetError: no recognised layout, or unpaired labels / duplicate cases (all listed).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(f"dataset not found: {str(path)!r}")
    problems: list[str] = []
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DatasetError(f"{path}: expected a dataset folder or a .csv file; recognised layouts: {LAYOUTS}")
        cases = _cases_from_csv(path, problems)
    else:
        # MSD: the folder itself or the Task03_Liver folder inside it
        msd = [d for d in (path, *sorted(p for p in path.iterdir() if p.is_dir())) if (d / "imagesTr").is_dir()]
        if msd:
            images = _numbered(sorted((msd[0] / "imagesTr").glob("*")), _MSD_FILE, problems)
            labels = _numbered(sorted((msd[0] / "labelsTr").glob("*")), _MSD_FILE, problems)
            cases = _pair(images, labels, "msd", problems)
        else:
            files = sorted(path.rglob("*"))  # LiTS ships in several "Training Batch" folders
            images, labels = _numbered(files, _LITS_IMAGE, problems), _numbered(files, _LITS_LABEL, problems)
            cases = _pair(images, labels, "lits", problems)
        if not cases and not problems:
            raise DatasetError(f"{path}: no dataset found; expected {LAYOUTS}")
    if problems:
        raise DatasetError(f"{path}: {len(problems)} problems found:\n" + "\n".join(f"  {p}" for p in problems))
    return sorted(cases, key=lambda case: natural_key(case.case_id))


def _numbered(files: Iterable[Path], pattern: re.Pattern[str], problems: list[str]) -> dict[int, Path]:
    """Files whose name matches ``pattern`` -> {case number: path}; duplicates are problems."""
    found: dict[int, Path] = {}
    for file in files:
        match = pattern.match(file.name)  # macOS "._liver_1.nii.gz" never matches
        if match is None or not file.is_file():
            continue
        number = int(match.group(1))
        if number in found:
            problems.append(f"case {number} has two files: {found[number]} and {file}")
        found[number] = file
    return found


def _pair(images: dict[int, Path], labels: dict[int, Path], prefix: str, problems: list[str]) -> list[Case]:
    for number in sorted(set(labels) - set(images)):
        problems.append(f"{prefix}-{number}: label {labels[number]} has no image")
    return [Case(f"{prefix}-{n}", images[n], labels.get(n)) for n in images]


def _cases_from_csv(path: Path, problems: list[str]) -> list[Case]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a BOM
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = [c.strip() for c in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read CSV ({exc})") from None
    if "image" not in columns or "label" not in columns:
        raise DatasetError(f"{path}: CSV header is {columns}; expected columns image,label (and optionally case_id)")
    cases: dict[str, Case] = {}
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not row.get("image"):
            problems.append(f"line {line}: no image path")
            continue
        image = path.parent / row["image"]  # an absolute path in the CSV replaces the folder
        label = path.parent / row["label"] if row.get("label") else None
        case_id = row.get("case_id") or case_name(image)
        if case_id.startswith(".") or any(c in case_id for c in "/\\\0"):
            problems.append(f"line {line}: case id {case_id!r} is not a valid file name")
        elif case_id in cases:
            problems.append(f"line {line}: case id {case_id!r} is used twice; add a case_id column to tell them apart")
        else:
            cases[case_id] = Case(case_id, image, label)
    return list(cases.values())


# -------------------------------------------------------------------------------------- validation


def validate_cases(cases: Sequence[Case], *, check_labels: bool = True) -> None:
    """Check every case and report all problems at once.

    Shape, affine and dimensionality come from the NIfTI headers (cheap); readability is checked
    by streaming compressed files to their end without keeping the data (a truncated download is
    the usual failure); with ``check_labels`` each label map is read to check its values.

    Args:
        cases: the cases to check.
        check_labels: also require a label per case with values in {0, 1, 2}.

    Raises:
        DatasetError: one line per unusable case, after a summary line ("3 of 10 cases are
            unusable:").
    """
    bad = []
    for case in cases:
        problems = _case_problems(case, check_labels)
        if problems:
            bad.append(f"  {case.case_id}: " + "; ".join(problems))
    if bad:
        raise DatasetError(f"{len(bad)} of {len(cases)} cases are unusable:\n" + "\n".join(bad))


def _case_problems(case: Case, check_labels: bool) -> list[str]:
    problems: list[str] = []
    image_grid = _grid(case.image, "image", problems, stream=True)
    if case.label is None:
        if check_labels:
            problems.append(f"no label for image {case.image}")
        return problems
    label_grid = _grid(case.label, "label", problems, stream=not check_labels)  # else read below
    if image_grid and label_grid:
        (shape_i, affine_i), (shape_l, affine_l) = image_grid, label_grid
        if shape_i != shape_l:
            problems.append(f"label shape {shape_l} does not match image shape {shape_i}")
        elif not same_grid(shape_i, affine_i, shape_l, affine_l):
            diff = float(np.abs(affine_i - affine_l).max())
            problems.append(f"label affine differs from the image affine by up to {diff:.4g} mm; expected one grid")
    if check_labels and label_grid:
        try:
            load_labels(case.label, allowed=LITS_LABELS)
        except LivsegError as exc:
            problems.append(_one_line(exc))
    return problems


def _grid(path: Path, role: str, problems: list[str], *, stream: bool) -> tuple[tuple[int, ...], np.ndarray] | None:
    """(shape, affine) of a readable 3D image, or None after recording why not.

    ``stream``: also check that the data is complete (decompressing .gz without keeping it).
    """
    if not path.exists():
        problems.append(f"{role} not found: {path}")
        return None
    try:
        if not is_nifti(path):  # DICOM folder, .mha, .nrrd: no cheap header reader, read it all
            volume = load_volume(path)
            return volume.shape, volume.affine
        image = nib.load(str(path))
        shape = tuple(int(s) for s in image.shape)
        while len(shape) > 3 and shape[-1] == 1:  # one-frame 4D is 3D, as io reads it
            shape = shape[:-1]
        if len(shape) != 3 or min(shape) < 2:
            problems.append(f"{role} {path} has shape {shape}; expected a 3D volume")
            return None
        if stream:
            _check_complete(path, image)
        return shape, np.asarray(image.affine, dtype=np.float64)
    except LivsegError as exc:
        problems.append(_one_line(exc))
    except Exception as exc:  # nibabel and gzip raise many types for damaged files
        problems.append(f"{role} {path} cannot be read ({type(exc).__name__}: {_one_line(exc)})")
    return None


def _check_complete(path: Path, image: Any) -> None:
    """Raise OSError when the file holds fewer bytes than its header promises."""
    proxy = image.dataobj  # its offset is the one nibabel reads at (the header may say 0)
    expected = int(proxy.offset) + int(np.prod(proxy.shape)) * np.dtype(proxy.dtype).itemsize
    if path.name.lower().endswith(".gz"):
        size = 0
        try:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(1 << 22):
                    size += len(chunk)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise OSError(f"truncated or corrupt gzip stream: {exc}") from None
    else:
        size = path.stat().st_size
    if size < expected:
        raise OSError(f"file is truncated: {size} bytes of data, header needs {expected}")


# ------------------------------------------------------------------------------------------ splits


def make_split(case_ids: Sequence[str], *, val_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Seeded random train/validation split.

    The result depends only on the set of ids, the fraction and the seed (not on input order).
    With two or more cases each part gets at least one.

    Returns:
        {"seed", "val_fraction", "train": [...], "val": [...]}, each list naturally sorted.

    Raises:
        ConfigError: ``val_fraction`` outside (0, 1).
        DatasetError: duplicate case ids.
    """
    _check_fraction(val_fraction)
    ids = sorted(case_ids, key=natural_key)
    if len(set(ids)) != len(ids):
        raise DatasetError(f"duplicate case ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    n_val = min(max(round(len(ids) * val_fraction), 1), len(ids) - 1) if len(ids) >= 2 else 0
    val = set(shuffled[:n_val])
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "train": [i for i in ids if i not in val],
        "val": [i for i in ids if i in val],
    }


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction: expected 0 < f < 1, got {val_fraction}")


def save_split(split: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a split as JSON, atomically (replacing an existing file). Returns the path."""
    _write_json(Path(path), split)
    return Path(path)


def load_split(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a split written by :func:`save_split`.

    Raises:
        InputFileNotFoundError: the file does not exist.
        DatasetError: not a split file.
    """
    split = _read_json(Path(path))
    if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in ("train", "val")):
        raise DatasetError(f"{path}: not a split file; expected JSON with 'train' and 'val' lists")
    return split


# ------------------------------------------------------------------------------------------- cache


def preprocess_dataset(
    data: str | os.PathLike[str] | Sequence[Case],
    out_dir: str | os.PathLike[str],
    *,
    config: PreprocessConfig,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Preprocess a whole dataset onto the network grid and cache it (resumable).

    Cases already in the cache (manifest entry for the same source files, and both arrays
    present) are skipped. A case that fails while being processed does not stop the others;
    all failures are raised together at the end, after the finished ones are saved.

    Args:
        data: dataset folder, CSV file, or a list of :class:`Case`.
        out_dir: cache folder; new, empty, or a cache made with the same ``config``.
        config: preprocessing (HU window, target shape).
        val_fraction: validation share of the split written to ``splits.json``.
        seed: seed of that split.
        progress: show a tqdm progress bar.

    Returns:
        The manifest (see the module docstring).

    Raises:
        InputFileNotFoundError: ``data`` does not exist.
        DatasetError: unusable cases (all listed), or ``out_dir`` is another kind of folder or a
            cache made with a different preprocessing config.
    """
    _check_fraction(val_fraction)  # before hours of work, not after
    out = Path(out_dir)
    cases = list(data) if not isinstance(data, (str, os.PathLike)) else discover_cases(data)
    if not cases:
        raise DatasetError("no cases to preprocess")
    wanted = to_dict(config)
    manifest = _open_cache(out, wanted)
    todo = [case for case in cases if not _is_done(out, manifest["cases"].get(case.case_id), case)]
    log.info("%d of %d cases already cached in %s", len(cases) - len(todo), len(cases), out)
    validate_cases(todo)
    _write_json(out / MANIFEST_FILE, manifest)  # marks the folder as ours before any array lands
    failed = []
    for case in tqdm(todo, desc="preprocess", unit="case", disable=not progress):
        try:
            manifest["cases"][case.case_id] = _preprocess_case(case, out, config)
        except LivsegError as exc:
            failed.append(f"  {case.case_id}: {_one_line(exc)}")
            continue
        _write_json(out / MANIFEST_FILE, manifest)
    if failed:
        summary = f"{len(failed)} of {len(todo)} cases failed; the others are cached in {out}:"
        raise DatasetError("\n".join([summary, *failed]))
    _update_split(out / SPLITS_FILE, list(manifest["cases"]), val_fraction, seed)
    return manifest


def _open_cache(out: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """The existing manifest of ``out`` (same config required) or a new, empty one."""
    if (out / MANIFEST_FILE).exists():
        manifest = load_manifest(out)
        old = manifest["preprocess"]
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
    return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "preprocess": wanted, "cases": {}}


def _is_done(out: Path, entry: dict[str, Any] | None, case: Case) -> bool:
    return (
        entry is not None
        and entry.get("image") == str(case.image.resolve())
        and entry.get("label") == (str(case.label.resolve()) if case.label else None)
        and (out / entry.get("image_file", "")).is_file()
        and (out / entry.get("label_file", "")).is_file()
    )


def _preprocess_case(case: Case, out: Path, config: PreprocessConfig) -> dict[str, Any]:
    if case.label is None:  # validate_cases has refused these already; keeps the type checker honest
        raise DatasetError(f"no label for image {case.image}")
    volume = load_volume(case.image)
    labels = load_labels(case.label, like=volume)
    image_file, label_file = f"{case.case_id}_image.npy", f"{case.case_id}_label.npy"
    with atomic_output(out / image_file, overwrite=True) as tmp:
        np.save(tmp, preprocess_image(volume, config).astype(np.float32, copy=False))
    with atomic_output(out / label_file, overwrite=True) as tmp:
        np.save(tmp, preprocess_labels(labels, config, affine=volume.affine).astype(np.uint8, copy=False))
    return {
        "image": str(case.image.resolve()),
        "label": str(case.label.resolve()),
        "shape": list(volume.shape),
        "affine": volume.affine.tolist(),
        "spacing": list(volume.spacing),
        "liver_ml": float(np.count_nonzero(labels) * volume.voxel_volume_ml),
        "image_file": image_file,
        "label_file": label_file,
    }


def _update_split(path: Path, case_ids: list[str], val_fraction: float, seed: int) -> None:
    """Keep an existing split (it may be hand-edited) unless the cases or its parameters changed."""
    if path.exists():
        try:
            old = load_split(path)
            same = set(old["train"]) | set(old["val"]) == set(case_ids)
            if same and old.get("seed") == seed and old.get("val_fraction") == val_fraction:
                return
        except LivsegError:
            pass
        log.info("replacing %s: cases, seed or val_fraction changed", path)
    save_split(make_split(case_ids, val_fraction=val_fraction, seed=seed), path)


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
    manifest = _read_json(folder / MANIFEST_FILE)
    ours = isinstance(manifest, dict) and manifest.get("format") == CACHE_FORMAT
    if not ours or not isinstance(manifest.get("cases"), dict):
        raise DatasetError(f"{folder / MANIFEST_FILE}: not a livseg cache manifest (format {CACHE_FORMAT!r} expected)")
    if manifest.get("version") != CACHE_VERSION:
        raise DatasetError(f"{folder}: cache version {manifest.get('version')}; this livseg reads {CACHE_VERSION}")
    return manifest


def is_cache(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder written by :func:`preprocess_dataset`."""
    try:
        load_manifest(path)
    except LivsegError:
        return False
    return True


class CachedDataset(torch.utils.data.Dataset):
    """Cached cases as tensors: {"image": float32 [1, X, Y, Z], "label": float32 [1, X, Y, Z] (0/1),
    "case_id": str}.

    Args:
        cache_dir: folder written by :func:`preprocess_dataset`.
        case_ids: cases to serve (e.g. ``load_split(...)["train"]``); all when None.
        in_memory: load every array once; otherwise memory-map them (for caches larger than RAM).
        transform: ``(image, label) -> (image, label)`` on numpy arrays, applied per item
            (augmentation); it must not modify its inputs in place (they may be read-only maps).

    Raises:
        DatasetError: unknown case ids or missing array files (all listed).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        case_ids: Sequence[str] | None = None,
        *,
        in_memory: bool = True,
        transform: Transform | None = None,
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
        self.transform = transform

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self._arrays[index]
        if self.transform is not None:
            image, label = self.transform(image, label)
        # copies: a consumer writing into the tensor must not change the cached array
        return {
            "image": torch.from_numpy(np.array(image, dtype=np.float32))[None],
            "label": torch.from_numpy(np.array(label, dtype=np.float32))[None],
            "case_id": self.case_ids[index],
        }


# --------------------------------------------------------------------------------------- utilities


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise InputFileNotFoundError(f"file not found: {str(path)!r}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read JSON ({_one_line(exc)})") from None


def _write_json(path: Path, data: Any) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
