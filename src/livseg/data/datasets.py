"""Datasets: find CT/label pairs, check them, and split them.

Recognised inputs:
    LiTS   ``volume-N.nii[.gz]`` + ``segmentation-N.nii[.gz]``, in any subfolders (the download
           comes as "Training Batch 1", "Training Batch 2"); case id ``lits-N``.
    MSD    Task03_Liver: ``imagesTr/liver_N.nii.gz`` + ``labelsTr/liver_N.nii.gz``; case id
           ``msd-N``. macOS ``._`` resource files are skipped.
    nnU-Net raw  ``DatasetXXX_Name/imagesTr/<case>_0000.nii.gz`` + ``labelsTr/<case>.nii.gz`` +
           ``dataset.json`` (one channel; see :mod:`livseg.data.nnunet`); case id ``<case>``.
    CSV    columns ``image,label[,case_id]``; relative paths are relative to the CSV's folder;
           case id from ``case_id`` or the image file name.

The preprocessed cache built from these cases lives in :mod:`livseg.data.cache`.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import random
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import nibabel as nib
import numpy as np

from livseg.data.io.files import check_input, read_json, write_json
from livseg.data.io.dicom_seg import is_dicom_seg
from livseg.data.io.grid import check_grid, describe_origin
from livseg.data.io.nifti import check_header, is_nifti, nifti_affine
from livseg.data.nnunet import dataset_root, is_nnunet_raw, nnunet_cases
from livseg.data.io.volume import (
    LITS_LIVER_LABELS,
    allowed_label_values,
    case_name,
    load_labels,
    load_volume,
    same_grid,
)
from livseg.errors import ConfigError, DatasetError, LivsegError, one_line

log = logging.getLogger(__name__)

SPLITS_FILE = "splits.json"  # a split's file name, in a cache and in a run folder
LAYOUTS = (
    "LiTS (volume-N.nii[.gz] with segmentation-N.nii[.gz], in any subfolders), "
    "MSD Task03_Liver (imagesTr/liver_N.nii.gz with labelsTr/liver_N.nii.gz), "
    "nnU-Net raw (DatasetXXX_Name/imagesTr/CASE_0000.nii.gz with labelsTr/CASE.nii.gz and dataset.json), "
    "or a CSV file with columns image,label[,case_id]"
)
_LITS_IMAGE = re.compile(r"^volume-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_LITS_LABEL = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_MSD_FILE = re.compile(r"^liver_(\d+)\.nii(\.gz)?$", re.IGNORECASE)


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
    """Find the CT/label pairs of a LiTS, MSD or nnU-Net raw folder, or of a CSV file.

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
    path = check_input(path, "dataset")
    problems: list[str] = []
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DatasetError(f"{path}: expected a dataset folder or a .csv file; recognised layouts: {LAYOUTS}")
        cases = _cases_from_csv(path, problems)
    else:
        # MSD or nnU-Net raw: the folder itself or the Task03_Liver / Dataset003_Liver folder inside it
        root = dataset_root(path)
        if root is not None and is_nnunet_raw(root):
            cases = [Case(*found) for found in nnunet_cases(root, problems)]
        elif root is not None:
            images = _numbered(sorted((root / "imagesTr").glob("*")), _MSD_FILE, problems)
            labels = _numbered(sorted((root / "labelsTr").glob("*")), _MSD_FILE, problems)
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
            fix = ("case ids must be unique" if row.get("case_id") else
                   "two images have this file name: add a case_id column to tell them apart")
            problems.append(f"line {line}: case id {case_id!r} is used twice; {fix}")
        else:
            cases[case_id] = Case(case_id, image, label)
    return list(cases.values())


# -------------------------------------------------------------------------------------- validation


def validate_cases(
    cases: Sequence[Case], *, check_labels: bool = True, liver_labels: Sequence[int] = LITS_LIVER_LABELS
) -> dict[str, list[int]]:
    """Check every case and report all problems at once.

    Shape, affine and dimensionality come from the NIfTI headers (cheap); readability is checked
    by streaming compressed files to their end without keeping the data (a truncated download is
    the usual failure); with ``check_labels`` each label map is read to check its values.

    Args:
        cases: the cases to check.
        check_labels: also require a label per case with values in {0, 1, 2} (any integers when
            ``liver_labels`` is not LiTS's 1,2: see :func:`~livseg.data.io.volume.allowed_label_values`).
        liver_labels: the label values that count as liver.

    Returns:
        The values each label map holds, by case id (with ``check_labels``; else empty).

    Raises:
        DatasetError: one line per unusable case, after a summary line ("3 of 10 cases are
            unusable:").
    """
    bad = []
    values: dict[str, list[int]] = {}
    for case in cases:
        problems = _case_problems(case, check_labels, allowed_label_values(liver_labels), values)
        if problems:
            bad.append(f"  {case.case_id}: " + "; ".join(problems))
    if bad:
        raise DatasetError(f"{len(bad)} of {len(cases)} cases are unusable:\n" + "\n".join(bad))
    return values


def _case_problems(case: Case, check_labels: bool, allowed: Sequence[int] | None,
                   values: dict[str, list[int]]) -> list[str]:
    problems: list[str] = []
    image_grid = _grid(case.image, "image", problems, stream=True)
    if case.label is None:
        if check_labels:
            problems.append(f"no label for image {case.image}")
        return problems
    if is_dicom_seg(case.label):  # frames, not a grid of its own: they must lie on the image's grid
        if image_grid:
            try:
                labels = load_labels(case.label, like=load_volume(case.image), allowed=allowed if check_labels else None)
                values[case.case_id] = np.unique(labels).tolist()
            except LivsegError as exc:
                problems.append(one_line(exc))
        return problems
    label_grid = _grid(case.label, "label", problems, stream=not check_labels)  # else read below
    if image_grid and label_grid:
        (shape_i, affine_i), (shape_l, affine_l) = image_grid, label_grid
        if shape_i != shape_l:
            problems.append(f"label shape {shape_l} does not match image shape {shape_i}")
        elif not same_grid(shape_i, affine_i, shape_l, affine_l):
            diff = float(np.abs(affine_i - affine_l).max())
            problems.append(f"label affine differs from the image affine by up to {diff:.4g} mm (label "
                            f"{describe_origin(affine_l)}, image {describe_origin(affine_i)}); expected one grid")
    if check_labels and label_grid:
        try:
            values[case.case_id] = np.unique(load_labels(case.label, allowed=allowed)).tolist()
        except LivsegError as exc:
            problems.append(one_line(exc))
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
        with nib.imageglobals.LoggingOutputSuppressor():
            image = nib.load(str(path))
            check_header(path, image)  # the grid io would refuse (no orientation, NaN pixdim, ...)
        shape = tuple(int(s) for s in image.shape)
        while len(shape) > 3 and shape[-1] == 1:  # one-frame 4D is 3D, as io reads it
            shape = shape[:-1]
        if len(shape) != 3 or min(shape) < 2:
            problems.append(f"{role} {path} has shape {shape}; expected a 3D volume")
            return None
        if stream:
            _check_complete(path, image)
        affine = nifti_affine(image)  # in mm, whatever the header's unit
        check_grid(affine, str(path))
        return shape, affine
    except LivsegError as exc:
        problems.append(one_line(exc))
    except Exception as exc:  # nibabel and gzip raise many types for damaged files
        problems.append(f"{role} {path} cannot be read ({type(exc).__name__}: {one_line(exc)})")
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


def make_split(
    case_ids: Sequence[str], *, val_fraction: float = 0.2, seed: int = 0, test_fraction: float = 0.0
) -> dict[str, Any]:
    """Seeded random train/validation(/test) split.

    The result depends only on the set of ids, the fractions and the seed (not on input order).
    With two or more cases and ``val_fraction`` > 0, train and validation get at least one each;
    ``val_fraction`` 0 validates on nothing (patch training without validation). ``test_fraction`` > 0
    holds that share of the cases (at least one) out of training and of the choice of the best
    checkpoint, for ``evaluate`` to score; the validation cases stay those of the split without
    a test part (the test cases come out of training).

    Returns:
        {"seed", "val_fraction", "test_fraction", "train": [...], "val": [...], "test": [...]},
        each list naturally sorted (``test`` empty when ``test_fraction`` is 0).

    Raises:
        ConfigError: ``val_fraction`` outside [0, 1), ``test_fraction`` outside [0, 1), or the
            two adding up to 1 or more.
        DatasetError: duplicate case ids, or a test part asked of fewer than three cases.
    """
    check_val_fraction(val_fraction)
    check_test_fraction(test_fraction, val_fraction)
    ids = sorted(case_ids, key=natural_key)
    if len(set(ids)) != len(ids):
        raise DatasetError(f"duplicate case ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    n_val = min(max(round(len(ids) * val_fraction), 1), len(ids) - 1) if len(ids) >= 2 and val_fraction > 0 else 0
    n_test = max(round(len(ids) * test_fraction), 1) if test_fraction > 0 else 0
    if n_test and len(ids) - n_val - n_test < 1:
        raise DatasetError(
            f"{len(ids)} cases cannot be split into training, {n_val} validation and {n_test} test case(s); "
            "a test split needs 3 or more cases and room for at least one training case"
        )
    val, test = set(shuffled[:n_val]), set(shuffled[n_val : n_val + n_test])
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "train": [i for i in ids if i not in val and i not in test],
        "val": [i for i in ids if i in val],
        "test": [i for i in ids if i in test],
    }


def check_val_fraction(val_fraction: float) -> None:
    """Raise ConfigError unless 0 <= val_fraction < 1 (0: no validation cases)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction: expected 0 <= f < 1, got {val_fraction}")


def check_test_fraction(test_fraction: float, val_fraction: float) -> None:
    """Raise ConfigError unless 0 <= test_fraction < 1 and val_fraction + test_fraction < 1."""
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test_fraction: expected 0 <= f < 1, got {test_fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:g}: expected below 1 (cases must remain to train on)"
        )


def save_split(split: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a split as JSON, atomically (replacing an existing file). Returns the path."""
    write_json(Path(path), split)
    return Path(path)


def load_split(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a split written by :func:`save_split` (``test`` is ``[]`` in files that lack it).

    Raises:
        InputFileNotFoundError: the file does not exist.
        DatasetError: not a split file.
    """
    split = read_json(Path(path))
    if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in ("train", "val")):
        raise DatasetError(f"{path}: not a split file; expected JSON with 'train' and 'val' lists")
    if not isinstance(split.setdefault("test", []), list):  # files written before test splits have none
        raise DatasetError(f"{path}: 'test' must be a list of case ids")
    split.setdefault("test_fraction", 0.0)
    return split
