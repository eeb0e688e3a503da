"""Reading CT volumes and label maps, writing masks: the I/O contract.

Contract (also the README's "Geometry" section): a :class:`Volume` holds a float32 array in
Hounsfield units with the array axes (x, y, z) exactly as nibabel gives them for a NIfTI file,
the 4x4 voxel-to-world affine in RAS+ millimetres (the NIfTI convention), and the spacing in mm
*per array axis*.

NIfTI files are read in :mod:`livseg.data.io.nifti`; DICOM series and other SimpleITK formats
(.mha, .nrrd) are brought into the same convention in :mod:`livseg.data.io.dicom` and nowhere
else. Every file is written through :mod:`livseg.data.io.files`, so an interrupted write never
leaves a half-written output.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from livseg.data.io.dicom import (
    PATIENT_ID,
    SERIES_DESCRIPTION,
    SITK_SUFFIXES,
    first_header,
    read_dicom_series,
    read_sitk_file,
)
from livseg.data.io.dicom_seg import is_dicom_seg, read_dicom_seg
from livseg.data.io.files import check_input
from livseg.data.io.grid import check_grid, describe_origin, spacing_from_affine
from livseg.data.io.nifti import NIFTI_SUFFIXES, is_nifti, read_nifti, save_nifti
from livseg.errors import (
    CorruptFileError,
    DimensionError,
    GridMismatchError,
    LabelValueError,
    NonFiniteError,
    VoxelTypeError,
)

log = logging.getLogger(__name__)

LITS_LABELS = (0, 1, 2)  # background, liver, tumour
LITS_LIVER_LABELS = (1, 2)  # the values that count as liver in LiTS (tumour lies inside the liver)


def allowed_label_values(liver_labels: Sequence[int]) -> tuple[int, ...] | None:
    """The values a label map may hold when ``liver_labels`` count as liver: exactly LiTS's
    {0, 1, 2} with LiTS's liver labels (a stray value means a wrong file), any integers with any
    other choice (a multi-organ map: TotalSegmentator's liver is 5 among 117 classes)."""
    return LITS_LABELS if tuple(liver_labels) == LITS_LIVER_LABELS else None
AFFINE_TOLERANCE_MM = 1e-3  # grids whose affines differ by less are the same grid


@dataclass(frozen=True, eq=False)
class Volume:
    """A CT volume on its own grid.

    Attributes:
        array: float32 HU values, axes (x, y, z) as nibabel gives them.
        affine: 4x4 voxel index -> RAS+ mm.
        source: where it was read from (file or DICOM folder), or a description.
    """

    array: np.ndarray
    affine: np.ndarray
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (x, y, z)."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (norms of the affine's columns)."""
        return spacing_from_affine(self.affine)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres: |det| of the affine's 3x3 part (the product of the
        spacings on the rectangular grids livseg accepts)."""
        return abs(float(np.linalg.det(np.asarray(self.affine, dtype=np.float64)[:3, :3]))) / 1000.0


# Folder names that say nothing about the case: a DICOM folder so named is named after its parent
# (up to two levels up) or its header instead (ircadb-01-patient1/PATIENT_DICOM -> ircadb-01-patient1)
GENERIC_FOLDER = re.compile(
    r"^(\w*dicom\w*|dcm|series\w*|se\d*|s\d+|ct|cts|images?|img|data|input|scans?|study|studies|slices|files|\d+)$",
    re.IGNORECASE,
)
_PLACEHOLDER_IDS = {"anonymous", "anon", "unknown", "none", "n_a", "na", "0"}


def case_name_and_source(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The case name of an input and where it came from.

    A file or a DICOM folder with a telling name is named after it (``"file name"``, ``"folder
    name"``). A DICOM folder with a generic name (``DICOM``, ``PATIENT_DICOM``, ``series``, ``1``,
    ... see :data:`GENERIC_FOLDER`) is named after the nearest non-generic parent folder, at most
    two levels up (``"parent folder"``), else its PatientID, else its SeriesDescription (made a
    safe file name), else the folder name after all.
    """
    path = Path(path)
    if not path.is_dir():
        return case_name(path), "file name"
    if not GENERIC_FOLDER.match(path.name):
        return path.name, "folder name"
    for parent in list(path.absolute().parents)[:2]:
        if parent.name and not GENERIC_FOLDER.match(parent.name):
            return parent.name, "parent folder"
    tags = first_header(path, PATIENT_ID, SERIES_DESCRIPTION)
    for key, source in ((PATIENT_ID, "PatientID"), (SERIES_DESCRIPTION, "SeriesDescription")):
        value = re.sub(r"[^A-Za-z0-9._-]+", "_", tags[key]).strip("._")
        if value and value.lower() not in _PLACEHOLDER_IDS:
            return value, source
    return path.name, "folder name"


def case_name(path: str | os.PathLike[str]) -> str:
    """A file or folder name without its image suffix (``volume-3.nii.gz`` -> ``volume-3``)."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES[::-1] + SITK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------------------- reading


def load_volume(path: str | os.PathLike[str], *, series_id: str | None = None) -> Volume:
    """Read a CT volume from a NIfTI file, a DICOM series folder, or a .mha/.nrrd file.

    Args:
        path: file or folder. A folder is read as a DICOM series; if it (or its subfolders)
            holds several series, the one with most slices is used and logged, unless
            ``series_id`` names one.
        series_id: DICOM SeriesInstanceUID to read from a folder with several series.

    Returns:
        The volume in HU, float32, axes (x, y, z), RAS affine.

    Raises:
        InputFileNotFoundError: the path does not exist.
        UnreadableInputError: it cannot be opened (permission denied, a symbolic-link loop).
        GeometryError: no usable voxel grid (:func:`livseg.data.io.grid.check_grid`, and for NIfTI
            :func:`livseg.data.io.nifti.check_header`; DICOM: :func:`livseg.data.io.dicom.read_dicom_series`).
        ModalityError: a DICOM series that is not CT.
        VoxelTypeError: complex or colour voxels.
        CorruptFileError: the file cannot be read (truncated, not an image).
        EmptyDicomFolderError: a folder without any DICOM series.
        DimensionError: the image is not 3D.
        NonFiniteError: NaN or infinite voxels.
    """
    array, affine, source = _read_image(Path(path), series_id=series_id, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise NonFiniteError(f"{source}: {bad} voxels are NaN or infinite; expected finite HU values")
    return Volume(array=array, affine=affine, source=source)


def load_labels(
    path: str | os.PathLike[str],
    like: Volume | None = None,
    *,
    select: int | Sequence[int] | None = None,
    allowed: Sequence[int] | None = LITS_LABELS,
    resample: bool = False,
    series_id: str | None = None,
) -> np.ndarray:
    """Read a label map (NIfTI, DICOM series folder, DICOM SEG file, .mha/.nrrd) as a uint8 array.

    A DICOM SEG gives its segment numbers as label values (where segments overlap the higher
    number wins); its frames are placed by their plane positions, so a SEG that lies on the CT
    grid comes back voxel for voxel, even when it stores only the slices with a segment.

    Args:
        path: label file, DICOM folder or DICOM SEG file.
        like: the CT it belongs to; its grid (shape and affine) must match.
        select: label value(s) that make up the foreground. When given, the result is binary
            (1 where the label is one of them, e.g. ``select=5`` for TotalSegmentator's liver or
            ``select=255`` for IRCADb masks); when None, values are kept and checked.
        allowed: permitted values when ``select`` is None (LiTS: 0 background, 1 liver, 2 tumour);
            None permits any integer (see :func:`allowed_label_values`).
        resample: when the grid differs from ``like``, map the labels onto it by physical
            coordinates (nearest neighbour) instead of raising.
        series_id: DICOM series to read from a folder with several.

    Returns:
        uint8 array with the shape of ``like`` (or of the file when ``like`` is None).

    Raises:
        GridMismatchError: the label grid differs from the CT's and ``resample`` is False.
        LabelValueError: values outside ``allowed`` (when ``select`` is None).
        plus the errors of :func:`load_volume` for the file itself.
    """
    if is_dicom_seg(path):  # frames placed by their plane positions, onto the CT grid when they lie on it
        array, affine = read_dicom_seg(path, like.shape if like else None, like.affine if like else None)
        source = str(path)
    else:
        array, affine, source = _read_image(Path(path), series_id=series_id, dtype=None)
    if not np.isfinite(array).all():
        raise NonFiniteError(f"{source}: label map holds NaN or infinite values")
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)):
            raise LabelValueError(f"{source}: label map holds non-integer values; expected integer labels")
    if like is not None and not same_grid(array.shape, affine, like.shape, like.affine):
        if not resample:
            raise GridMismatchError(
                f"{source}: label grid {tuple(array.shape)} (spacing {_fmt(spacing_from_affine(affine))} mm, "
                f"{describe_origin(affine)}) does not match the CT grid {like.shape} (spacing {_fmt(like.spacing)} mm, "
                f"{describe_origin(like.affine)}) of {like.source}; expected the same shape and affine"
            )
        array = resample_labels_to_grid(array, affine, like.shape, like.affine)
    if select is not None:
        values = [select] if isinstance(select, (int, np.integer)) else list(select)
        return np.isin(array, values).astype(np.uint8)
    present = np.unique(array).astype(np.int64)
    if allowed is None:
        if present.min() < 0 or present.max() > 255:
            raise LabelValueError(f"{source}: label values {present.min()}..{present.max()} do not fit 0..255")
        return array.astype(np.uint8)
    unexpected = sorted(set(present.tolist()) - set(allowed))
    if unexpected:
        raise LabelValueError(
            f"{source}: labels {unexpected[:10]} are outside the allowed set {sorted(allowed)}; "
            "for a multi-organ map name the liver value(s) (CLI --liver-labels 5, config preprocess.liver_labels)"
        )
    return array.astype(np.uint8)


def same_grid(
    shape_a: Sequence[int], affine_a: np.ndarray, shape_b: Sequence[int], affine_b: np.ndarray
) -> bool:
    """True when two voxel grids have the same shape and affines equal within 1 micrometre."""
    return tuple(shape_a) == tuple(shape_b) and bool(
        np.allclose(affine_a, affine_b, atol=AFFINE_TOLERANCE_MM, rtol=0)
    )


def resample_labels_to_grid(
    labels: np.ndarray, affine: np.ndarray, shape: Sequence[int], target_affine: np.ndarray
) -> np.ndarray:
    """Nearest-neighbour resampling of a label map onto another grid by world coordinates.

    Voxels of the target grid that fall outside the source get label 0; a source voxel covers
    half a voxel either side of its centre, so a target voxel a hair beyond the last source
    centre (floating-point rounding of two affines) still takes its label.
    """
    from scipy import ndimage

    # target voxel index -> world -> source voxel index, as one affine
    target_to_source = np.linalg.inv(affine) @ target_affine
    return ndimage.affine_transform(
        labels,
        target_to_source[:3, :3],
        offset=target_to_source[:3, 3],
        output_shape=tuple(shape),
        order=0,
        mode="grid-constant",  # "constant" would zero a whole edge plane sampled at n - 1 + 1e-9
        cval=0,
    ).astype(labels.dtype)


def _read_image(path: Path, *, series_id: str | None, dtype: type | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Read any supported image to (array x-y-z, RAS affine, source description)."""
    check_input(path, "file")
    if path.is_dir():
        array, affine = read_dicom_series(path, series_id, ct=dtype is not None)  # labels: any Modality
    elif is_nifti(path):
        array, affine = read_nifti(path, dtype)
    elif is_dicom_seg(path):
        raise CorruptFileError(f"{path}: is a DICOM SEG (a segmentation); expected a CT image")
    else:
        array, affine = read_sitk_file(path)
    if np.iscomplexobj(array):
        raise VoxelTypeError(f"{path}: voxels are {array.dtype}; expected real HU values")
    array = _squeeze_to_3d(array, path)
    check_grid(affine, str(path))
    if dtype is not None:
        array = np.ascontiguousarray(array, dtype=dtype)
    return array, np.asarray(affine, dtype=np.float64), str(path)


def _squeeze_to_3d(array: np.ndarray, path: Path) -> np.ndarray:
    """Drop trailing singleton axes (a 4D file with one frame is a 3D volume); refuse the rest."""
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or min(array.shape) < 2:
        kind = f"a {array.ndim}D image" if array.ndim > 3 else "a 2D image"
        raise DimensionError(
            f"{path}: image has shape {tuple(array.shape)} ({kind}); expected a 3D volume (x, y, z)"
        )
    return array


def save_mask(
    mask: np.ndarray, like: Volume, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write a mask as uint8 NIfTI on exactly the grid and affine of ``like``, atomically.

    Raises:
        GridMismatchError: the mask's shape is not the volume's.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    if tuple(mask.shape) != like.shape:
        raise GridMismatchError(f"mask shape {tuple(mask.shape)} does not match the volume shape {like.shape}")
    return save_nifti(mask, like.affine, path, dtype=np.uint8, overwrite=overwrite)


PROBABILITY_LEVELS = 65535  # uint16 steps of 1.5e-5: two bytes a voxel as float16, but even precision


def save_probability(
    probability: np.ndarray, like: Volume, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write a probability map in [0, 1] on ``like``'s grid as a two-byte NIfTI, atomically.

    NIfTI has no float16; the map is stored as uint16 with scale factor 1/65535 (readers return
    float probabilities, within 7.7e-6 of the original). ``stored >= 0.5`` is exactly
    ``probability >= 0.5``: rounding cannot carry a value across one half.

    Raises:
        GridMismatchError: the map's shape is not the volume's.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    if tuple(probability.shape) != like.shape:
        raise GridMismatchError(f"probability shape {tuple(probability.shape)} does not match the volume shape {like.shape}")
    stored = np.empty(like.shape, dtype=np.uint16)
    for k in range(0, like.shape[2], 16):  # float64 makes p * 65535 exact; in slabs, to spare memory
        slab = np.clip(probability[:, :, k : k + 16].astype(np.float64), 0.0, 1.0) * PROBABILITY_LEVELS
        stored[:, :, k : k + 16] = np.rint(slab)
    return save_nifti(stored, like.affine, path, dtype=np.uint16, slope=1.0 / PROBABILITY_LEVELS, overwrite=overwrite)


def _fmt(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.3g}" for v in values)
