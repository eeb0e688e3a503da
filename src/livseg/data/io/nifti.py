"""NIfTI files (nibabel): the convention every other format is brought into.

A NIfTI file's array axes and its qform/sform affine (voxel index -> RAS+ mm) are used exactly as
nibabel gives them.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from livseg.data.io.files import atomic_output
from livseg.errors import (
    CorruptFileError,
    DimensionError,
    GeometryError,
    LivsegError,
    UnreadableInputError,
    VoxelTypeError,
    one_line,
)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    """True for .nii and .nii.gz file names."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: Path, dtype: type | None) -> tuple[np.ndarray, np.ndarray]:
    """(array as stored, affine in mm); ``dtype=None`` keeps label integers exact, else float32.

    The header must say where the voxels lie (:func:`check_header`); an affine in metres or
    microns (``xyzt_units``) is converted to millimetres.
    """
    try:
        with nib.imageglobals.LoggingOutputSuppressor():  # nibabel logs the header "fixes" it makes: refused below
            image = nib.load(str(path))
            check_header(path, image)
        check_size(path, image)
        if image.get_data_dtype().kind == "c":  # get_fdata would drop the imaginary part
            raise VoxelTypeError(f"{path}: voxels are {image.get_data_dtype()}; expected real HU values")
        if image.get_data_dtype().names:  # RGB24 / RGBA32: a colour image (a screenshot, a rendering)
            raise VoxelTypeError(f"{path}: voxels are {len(image.get_data_dtype().names)}-channel colours "
                                 f"({', '.join(image.get_data_dtype().names)}); expected one HU value per voxel")
        if dtype is None:
            # labels: keep integers exact; scaling (if any) is applied by nibabel's dataobj
            array = np.asarray(image.dataobj)
        else:
            array = image.get_fdata(dtype=np.float32)
    except LivsegError:
        raise
    except PermissionError as exc:
        raise UnreadableInputError(f"{path}: cannot read the file: permission denied ({one_line(exc)})") from None
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise CorruptFileError(f"{path}: cannot read NIfTI ({one_line(exc)}); the file may be truncated") from None
    except Exception as exc:  # zlib/gzip errors of damaged .nii.gz surface as several types
        raise CorruptFileError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {one_line(exc)})") from None
    return array, nifti_affine(image)


MAX_IMAGE_VOXELS = 2**31  # 8 GB as float32, twice a 1024 x 1024 x 1024 CT: more is a damaged header


def check_size(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse, before reading, a header that promises more voxels than any CT has, or (for an
    uncompressed file) more bytes than the file holds.

    Raises:
        DimensionError: more than :data:`MAX_IMAGE_VOXELS` voxels.
        CorruptFileError: a truncated .nii file.
    """
    shape = tuple(int(n) for n in image.shape)
    voxels = int(np.prod(shape, dtype=np.float64))
    if voxels > MAX_IMAGE_VOXELS:
        raise DimensionError(f"{path}: the header gives shape {shape}, {voxels:,} voxels, more than the "
                             f"{MAX_IMAGE_VOXELS:,} livseg reads; a damaged header, or not a CT")
    if not path.name.lower().endswith(".gz"):
        proxy = image.dataobj
        needed = int(proxy.offset) + voxels * np.dtype(proxy.dtype).itemsize
        size = path.stat().st_size
        if size < needed:
            raise CorruptFileError(f"{path}: truncated: {' x '.join(map(str, shape))} {proxy.dtype} voxels need "
                                   f"{needed:,} bytes, the file has {size:,}")


UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}  # NIfTI xyzt_units; unknown: mm


def nifti_affine(image: nib.Nifti1Image) -> np.ndarray:
    """The image's affine in millimetres: nibabel's affine scaled by the header's spatial unit
    (``xyzt_units``: metres x1000, microns x0.001; no unit is taken as millimetres, as every tool does)."""
    unit = image.header.get_xyzt_units()[0] if hasattr(image.header, "get_xyzt_units") else "unknown"
    affine = np.array(image.affine, dtype=np.float64)
    affine[:3] *= UNIT_TO_MM.get(unit, 1.0)
    return affine


def check_header(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse a header whose grid nibabel would have to guess.

    Without an sform the grid comes from the qform and pixdim, read here unchecked (loading
    "fixes" them silently): a NaN or zero pixdim, no orientation at all (qform_code and
    sform_code 0: nibabel falls back to a left-right mirrored grid, other readers do not), or a
    negative pixdim (nibabel takes its absolute value, niftilib 1 mm) has no one meaning.

    Raises:
        GeometryError: naming the field and how to fix the file.
    """
    if int(image.header.get("sform_code", 0)) > 0:
        return
    with nib.openers.ImageOpener(str(path)) as handle:
        raw = type(image.header).from_fileobj(handle, check=False)
    pixdim = [float(raw["pixdim"][axis + 1]) for axis in range(min(3, int(raw["dim"][0])))]
    if not np.isfinite(pixdim).all():
        raise GeometryError(f"{path}: voxel size in the header is not finite (pixdim {pixdim}) and no sform gives "
                            "the grid; expected positive voxel sizes")
    if 0.0 in pixdim:
        raise GeometryError(f"{path}: voxel spacing is 0 along array axis {pixdim.index(0.0)} (header pixdim) and no "
                            "sform gives the grid; expected positive voxel sizes")
    if int(raw["qform_code"]) <= 0:
        raise GeometryError(
            f"{path}: the header holds no orientation (qform_code and sform_code are 0), so left and right cannot be "
            "told apart (nibabel would mirror the image); write the file again with its orientation (qform or sform "
            "code 1: convert the DICOM with dcm2niix, or nibabel's image.set_sform(affine, code=1))"
        )
    if min(pixdim) < 0:
        raise GeometryError(
            f"{path}: negative voxel size in the header (pixdim {pixdim}) and no sform: readers disagree on what it "
            "means (nibabel takes its absolute value, others 1 mm); write the file again with an sform (code 1)"
        )


def save_nifti(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike[str],
    *,
    dtype: type = np.float32,
    overwrite: bool = False,
    slope: float | None = None,
) -> Path:
    """Write a 3D array as NIfTI with the given affine (qform and sform), atomically.

    Args:
        slope: scale factor (scl_slope) for an integer ``array`` that stores ``value / slope``;
            every NIfTI reader multiplies it back on load.

    Returns:
        The written path.
    """
    path = Path(path)
    if not is_nifti(path):
        raise ValueError(f"{path}: expected a .nii or .nii.gz file name")
    image = nib.Nifti1Image(np.asarray(array, dtype=dtype), np.asarray(affine, dtype=np.float64))
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    with atomic_output(path, overwrite=overwrite) as tmp:
        nib.save(image, str(tmp))
    return path

