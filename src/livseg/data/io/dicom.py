"""DICOM series and other SimpleITK formats (.mha, .nrrd): the only LPS -> RAS conversion.

SimpleITK indexes voxels (i, j, k) like NIfTI but describes the world in LPS, so the affine is
built from its direction, spacing and origin and then its first two world rows are negated
(LPS -> RAS). A DICOM series and the same series converted to NIfTI therefore give the same
array and affine.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from livseg.errors import CorruptFileError, DimensionError, EmptyDicomFolderError, one_line

log = logging.getLogger(__name__)

SITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def sitk_to_ras(image) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 (SimpleITK image)
    """SimpleITK image -> (array indexed x, y, z; RAS affine). The only LPS->RAS conversion."""
    import SimpleITK as sitk

    dim = image.GetDimension()
    array = sitk.GetArrayFromImage(image)  # indexed [k, j, i]
    array = np.transpose(array, tuple(range(array.ndim))[::-1])  # -> [i, j, k]
    if dim != 3:
        return array, np.eye(4)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = direction * spacing  # column j = direction_j * spacing_j
    affine_lps[:3, 3] = image.GetOrigin()
    return array, LPS_TO_RAS @ affine_lps


def read_sitk_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One image file SimpleITK reads (.mha, .nrrd, ...) -> (array x-y-z, RAS affine)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CorruptFileError(f"{path}: cannot read image ({one_line(exc)[:200]})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DimensionError(f"{path}: image has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected one")
    return sitk_to_ras(image)


def find_dicom_series(folder: Path) -> dict[str, list[str]]:
    """All DICOM series under a folder (searched recursively): series UID -> sorted file names."""
    import SimpleITK as sitk

    # ITK prints "No Series were found" straight to the C stderr for every folder without DICOM;
    # our own error says it in one line instead
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    reader = sitk.ImageSeriesReader()
    series: dict[str, list[str]] = {}
    for directory, _, _ in os.walk(folder):
        for uid in reader.GetGDCMSeriesIDs(directory):
            files = list(reader.GetGDCMSeriesFileNames(directory, uid))
            if files and len(files) > len(series.get(uid, [])):
                series[uid] = files
    return series


def dicom_series_files(folder: Path, series_id: str | None) -> list[str]:
    """The slice files of the named series of a folder, or of its largest, in slice order.

    This choice is the one :func:`read_dicom_series` reads, so a writer that references the
    source slices (:mod:`livseg.data.io.dicom_seg`) finds the same files.

    Raises:
        EmptyDicomFolderError: no DICOM series, or none with ``series_id``.
    """
    series = find_dicom_series(folder)
    if not series:
        raise EmptyDicomFolderError(f"{folder}: folder holds no DICOM series; expected a folder of DICOM slice files")
    if series_id is not None:
        if series_id not in series:
            raise EmptyDicomFolderError(f"{folder}: no DICOM series {series_id!r}; found {sorted(series)}")
        return series[series_id]
    uid = max(series, key=lambda key: len(series[key]))
    if len(series) > 1:
        log.warning(
            "%s holds %d DICOM series; reading %s (%d slices), the largest. Pass series_id to choose.",
            folder, len(series), uid or "(no UID)", len(series[uid]),
        )
    return series[uid]


def read_dicom_series(folder: Path, series_id: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The named series of a folder, or its largest -> (array x-y-z, RAS affine)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(dicom_series_files(folder, series_id))
    try:
        image = reader.Execute()  # sorts by slice position, applies rescale slope/intercept
    except RuntimeError as exc:
        raise CorruptFileError(f"{folder}: cannot read DICOM series ({one_line(exc)[:200]})") from None
    return sitk_to_ras(image)
