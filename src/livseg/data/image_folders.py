"""The CT images of a folder given to ``livseg predict``: images only, never labels or outputs.

A folder may be a dataset (LiTS, MSD, nnU-Net raw) or hold livseg's own outputs (``-o`` the
input folder). :func:`find_images` keeps the images and says what it left out:

    MSD / nnU-Net root   every image of ``imagesTr`` and ``imagesTs``; ``labelsTr``/``labelsTs`` left out
    ``labelsTr`` itself  nothing (label maps only)
    nnU-Net ``images*``  ``<case>_0000.nii.gz`` is case ``<case>``; a second channel is refused
    LiTS                 ``volume-N``; ``segmentation-N`` left out, also from "Training Batch" subfolders
    any NIfTI folder     every NIfTI except livseg's outputs (suffixes given by the caller) and
                         files named as label maps (``*_seg``, ``*_mask``, ``*_label[s]``,
                         ``segmentation*``, ``mask``, ...)

A file named on the command line is always predicted, whatever its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from livseg.data.io.nifti import is_nifti
from livseg.data.io.volume import case_name
from livseg.data.nnunet import CHANNEL_FILE, DATASET_JSON, check_one_channel
from livseg.errors import DatasetError

LABEL_FOLDERS = ("labelsTr", "labelsTs")
IMAGE_FOLDERS = ("imagesTr", "imagesTs")
_LITS_IMAGE = re.compile(r"^volume-\d+\.nii(\.gz)?$", re.IGNORECASE)
# label-map names: LiTS's segmentation-N, and the usual label/mask/seg words at the end of a name
_LABEL_NAME = re.compile(
    r"^(segmentation[-_]?\d*|(.*[-_])?(seg|segmentation|mask|masks|label|labels|labelmap|gt|ground[-_]truth))$",
    re.IGNORECASE,
)


@dataclass
class FolderImages:
    """What :func:`find_images` found: ``images`` as ``(case name, path)`` in name order and the
    files it left out, by reason (``"label files"``, ``"livseg outputs"``)."""

    images: list[tuple[str, Path]]
    skipped: dict[str, list[Path]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: ``skipped 2 label files (segmentation-0.nii.gz, ...) and 1 livseg output (...)``."""
        parts = []
        for reason, files in self.skipped.items():
            names = ", ".join(p.name for p in files[:3]) + (", ..." if len(files) > 3 else "")
            noun = reason if len(files) != 1 else reason[:-1]
            parts.append(f"{len(files)} {noun} ({names})")
        return "skipped " + " and ".join(parts) if parts else "nothing skipped"


def find_images(folder: str | Path, *, skip_suffixes: Sequence[str] = ()) -> FolderImages | None:
    """The images of a folder, or None when it holds no NIfTI file at all (a DICOM folder).

    Args:
        folder: the folder given to predict.
        skip_suffixes: file-name endings of the caller's own outputs (``_liver.nii.gz``, ...).

    Raises:
        DatasetError: NIfTI files but no image among them (a labels folder), or a multi-channel
            nnU-Net folder.
    """
    folder = Path(folder)
    found = FolderImages(images=[])
    if any((folder / name).is_dir() for name in IMAGE_FOLDERS):  # an MSD or nnU-Net dataset
        for name in IMAGE_FOLDERS:
            if (folder / name).is_dir():
                found.images += _sorted_images(folder / name, _niftis(folder / name), found, skip_suffixes)
        for name in LABEL_FOLDERS:
            if (folder / name).is_dir():
                _skip(found, "label files", _niftis(folder / name))
    elif files := _niftis(folder):
        found.images = _sorted_images(folder, files, found, skip_suffixes)
    else:
        nested = sorted(p for p in folder.rglob("*") if p.is_file() and is_nifti(p))  # LiTS batch folders
        if not any(_LITS_IMAGE.match(p.name) for p in nested):
            return None
        _skip(found, "label files", [p for p in nested if _LABEL_NAME.match(case_name(p))])
        found.images = [(case_name(p), p) for p in nested if _LITS_IMAGE.match(p.name)]
    if not found.images:
        raise DatasetError(f"{folder}: no images to predict; {found.summary()}. Name the CT files or their folder")
    return found


def _niftis(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_nifti(p) and not p.name.startswith("."))


def _skip(found: FolderImages, reason: str, files: list[Path]) -> None:
    if files:
        found.skipped.setdefault(reason, []).extend(files)


def _sorted_images(folder: Path, files: list[Path], found: FolderImages,
                   skip_suffixes: Sequence[str]) -> list[tuple[str, Path]]:
    """The images among one folder's NIfTI files, recording the others in ``found``."""
    if folder.name in LABEL_FOLDERS:
        _skip(found, "label files", files)
        return []
    outputs = [p for p in files if skip_suffixes and p.name.endswith(tuple(skip_suffixes))]
    _skip(found, "livseg outputs", outputs)
    files = [p for p in files if p not in outputs]
    labels = [p for p in files if _LABEL_NAME.match(case_name(p))]
    _skip(found, "label files", labels)
    files = [p for p in files if p not in labels]
    nnunet = folder.name.startswith("images") or (folder.parent / DATASET_JSON).is_file()
    if nnunet and files and all(CHANNEL_FILE.match(p.name) for p in files):  # <case>_0000.nii.gz
        check_one_channel(folder.parent, [p.name for p in files])
        return [(CHANNEL_FILE.match(p.name).group("case"), p) for p in files]  # type: ignore[union-attr]
    return [(case_name(p), p) for p in files]
