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
from livseg.errors import CorruptFileError, GeometryError, LivsegError, VoxelTypeError, one_line

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    """True for .nii and .nii.gz file names."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: Path, dtype: type | None) -> tuple[np.ndarray, np.ndarray]:
    """(array as stored, affine); ``dtype=None`` keeps label integers exact, else float32."""
    try:
        with nib.imageglobals.LoggingOutputSuppressor():  # nibabel logs "setting 0 dims to 1": refused below
            image = nib.load(str(path))
        if image.get_data_dtype().kind == "c":  # get_fdata would drop the imaginary part
            raise VoxelTypeError(f"{path}: voxels are {image.get_data_dtype()}; expected real HU values")
        if zero := zero_pixdim_axes(path, image):
            raise GeometryError(f"{path}: voxel spacing is 0 along array axis {zero[0]} (header pixdim) and no sform "
                                "gives the grid; expected positive voxel sizes")
        if dtype is None:
            # labels: keep integers exact; scaling (if any) is applied by nibabel's dataobj
            array = np.asarray(image.dataobj)
        else:
            array = image.get_fdata(dtype=np.float32)
    except LivsegError:
        raise
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise CorruptFileError(f"{path}: cannot read NIfTI ({one_line(exc)}); the file may be truncated") from None
    except Exception as exc:  # zlib/gzip errors of damaged .nii.gz surface as several types
        raise CorruptFileError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {one_line(exc)})") from None
    return array, image.affine


def zero_pixdim_axes(path: Path, image: nib.Nifti1Image) -> list[int]:
    """Spatial axes whose stored pixdim is 0 when no sform defines the grid (nibabel then uses
    1 mm, silently). The header is read again unchecked, since loading "fixes" it."""
    if int(image.header.get("sform_code", 0)) > 0:
        return []
    with nib.openers.ImageOpener(str(path)) as handle:
        raw = type(image.header).from_fileobj(handle, check=False)
    return [axis for axis in range(min(3, int(raw["dim"][0]))) if float(raw["pixdim"][axis + 1]) == 0.0]


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

