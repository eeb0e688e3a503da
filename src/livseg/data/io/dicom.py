"""DICOM series and other SimpleITK formats (.mha, .nrrd): the only LPS -> RAS conversion.

SimpleITK indexes voxels (i, j, k) like NIfTI but describes the world in LPS, so the affine is
built from its direction, spacing and origin and then its first two world rows are negated
(LPS -> RAS). A DICOM series and the same series converted to NIfTI therefore give the same
array and affine.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np

from livseg.data.io.dicom_checks import (
    check_ct_slices,
    check_pixel_spacing,
    damaged_dicom_files,
    explain_failed_read,
)
from livseg.data.io.metaimage import check_metaimage
from livseg.errors import (
    CorruptFileError,
    DimensionError,
    EmptyDicomFolderError,
    GeometryError,
    one_line,
)

log = logging.getLogger(__name__)

SITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
POSITION, ORIENTATION, SERIES_DESCRIPTION, PATIENT_ID = "0020|0032", "0020|0037", "0008|103e", "0010|0020"
PIXEL_SPACING, MODALITY, SOP_CLASS = "0028|0030", "0008|0060", "0008|0016"
# slice stacks: a step may differ from the median by 10 % or 0.05 mm, whichever is more; two
# slices closer than 1 micrometre are one position; a sideways drift of 0.05 mm or half a pixel is tilt
SPACING_TOLERANCE, SPACING_TOLERANCE_MM, DUPLICATE_MM, TILT_TOLERANCE_MM = 0.10, 0.05, 1e-3, 0.05


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

    if path.suffix.lower() in (".mha", ".mhd"):
        check_metaimage(path)  # MetaIO would print its own lines past our one-line error
    try:
        with _itk_quiet():  # ITK prints its warnings straight to stderr, past our one-line error
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        if "Unable to determine ImageIO reader" in str(exc) and path.suffix.lower() not in SITK_SUFFIXES:
            raise CorruptFileError(f"{path}: not an image livseg can read; expected a NIfTI file (.nii, .nii.gz), a "
                                   "DICOM series folder, or a .mha/.mhd/.nrrd/.nhdr file") from None
        raise CorruptFileError(f"{path}: cannot read image ({one_line(exc)})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DimensionError(f"{path}: image has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected one")
    return sitk_to_ras(image)


@contextlib.contextmanager
def _itk_quiet():  # noqa: ANN202
    """ITK's warnings off (it prints them straight to the C stderr, past our one-line errors),
    then back to whatever the process had: a library must not change it for good."""
    import SimpleITK as sitk

    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def find_dicom_series(folder: Path) -> dict[str, list[str]]:
    """All DICOM series under a folder (searched recursively): series UID -> sorted file names."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series: dict[str, list[str]] = {}
    with _itk_quiet():  # "No Series were found" for every folder without DICOM: our error says it once
        for directory, _, _ in os.walk(folder):
            for uid in reader.GetGDCMSeriesIDs(directory):
                files = list(reader.GetGDCMSeriesFileNames(directory, uid))
                if files and len(files) > len(series.get(uid, [])):
                    series[uid] = files
    return series


def header(file: str, *keys: str) -> dict[str, str]:
    """Some tags of one DICOM file (``"0008|103e"`` ...), stripped; missing ones are ''."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    try:
        with _itk_quiet():
            reader.ReadImageInformation()
    except RuntimeError:
        return {key: "" for key in keys}
    return {key: reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else "" for key in keys}


def first_header(folder: Path, *keys: str) -> dict[str, str]:
    """Some tags of the first readable DICOM file under ``folder`` (all '' when there is none)."""
    for directory, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            tags = header(os.path.join(directory, name), *keys, "0008|0060")  # every DICOM image has a Modality
            if any(tags.values()):
                return {key: tags[key] for key in keys}
    return {key: "" for key in keys}


def describe_series(series: dict[str, list[str]]) -> str:
    """``UID (129 slices, "venous phase"), ...``, largest first: what a user needs to choose one."""
    parts = []
    for uid in sorted(series, key=lambda key: -len(series[key])):
        description = header(series[uid][0], SERIES_DESCRIPTION)[SERIES_DESCRIPTION]
        parts.append(f"{uid or '(no UID)'} ({len(series[uid])} slices{f', {description!r}' if description else ''})")
    return ", ".join(parts)


def dicom_series_files(folder: Path, series_id: str | None) -> list[str]:
    """The slice files of the named series of a folder, or of its largest, in slice order.

    This choice is the one :func:`read_dicom_series` reads, so a writer that references the
    source slices (:mod:`livseg.data.io.dicom_seg`) finds the same files.

    Raises:
        EmptyDicomFolderError: no DICOM series, or none with ``series_id`` (the message lists
            the series there are).
        CorruptFileError: a damaged DICOM file of the series, which GDCM left out of it
            (:func:`damaged_dicom_files`).
    """
    series = find_dicom_series(folder)
    uid = None
    if series_id is not None and series_id in series:
        uid = series_id
    elif series_id is None and series:
        uid = max(series, key=lambda key: len(series[key]))
    damaged = damaged_dicom_files(folder, series, uid or series_id)
    if damaged:
        file, reason = damaged[0]
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise CorruptFileError(f"{file}: damaged DICOM file{more} ({reason}), left out of the series of {folder}; "
                               "replace it with an intact copy")
    if not series:
        raise EmptyDicomFolderError(f"{folder}: folder holds no DICOM series; expected a folder of DICOM slice files")
    if uid is None:
        raise EmptyDicomFolderError(f"{folder}: no DICOM series {series_id!r}; it holds {describe_series(series)}")
    if len(series) > 1 and series_id is None:
        log.warning("%s holds %d DICOM series: %s; reading %s, the largest. Choose with --series-id (series_id=)",
                    folder, len(series), describe_series(series), uid or "(no UID)")
    return series[uid]


def read_dicom_series(folder: Path, series_id: str | None, *, ct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The named series of a folder, or its largest -> (array x-y-z, RAS affine).

    ``ct=False`` reads a label map stored as a DICOM series (IRCADb's masks), whose Modality
    is not checked.

    Raises:
        GeometryError: the slices are not one evenly spaced, untilted stack
            (:func:`check_slice_geometry`), or differ in size or pixel spacing.
        ModalityError: with ``ct``, a slice that is not CT (:func:`check_ct_slices`).
        CorruptFileError: a damaged slice file (named), or a series SimpleITK cannot read.
        DimensionError: colour slices.
    """
    import SimpleITK as sitk

    files = dicom_series_files(folder, series_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()  # the slices' own positions, for the geometry check
    try:
        with _itk_quiet():  # ITK's "non uniform sampling" warning would print past our error
            image = reader.Execute()  # sorts by slice position, applies rescale slope/intercept
    except RuntimeError as exc:
        explain_failed_read(folder, files)  # slices of different sizes, a file pydicom cannot read
        raise CorruptFileError(f"{folder}: cannot read DICOM series ({one_line(exc)})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DimensionError(f"{folder}: slices have {image.GetNumberOfComponentsPerPixel()} components per pixel "
                             "(colour images); expected one HU value per pixel")
    slices = range(image.GetSize()[2]) if image.GetDimension() == 3 else range(0)
    tags = {key: [reader.GetMetaData(k, key).strip() if reader.HasMetaDataKey(k, key) else "" for k in slices]
            for key in (MODALITY, SOP_CLASS, PIXEL_SPACING)}
    if ct:
        check_ct_slices(tags[MODALITY], tags[SOP_CLASS], files, where=str(folder))
    check_pixel_spacing(tags[PIXEL_SPACING], files, where=str(folder), read_mm=tuple(image.GetSpacing()[:2]))
    if all(reader.HasMetaDataKey(k, POSITION) and reader.HasMetaDataKey(k, ORIENTATION) for k in slices):
        check_slice_geometry(
            np.array([_numbers(reader.GetMetaData(k, POSITION)) for k in slices]),
            np.array([_numbers(reader.GetMetaData(k, ORIENTATION)) for k in slices]),
            pixel_mm=min(image.GetSpacing()[:2]), where=str(folder),
        )
    return sitk_to_ras(image)


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.strip().split("\\")]


def check_slice_geometry(positions: np.ndarray, orientations: np.ndarray, *, pixel_mm: float, where: str) -> None:
    """Refuse slices that are not one evenly spaced stack along their normal.

    SimpleITK places the slices at the first slice's position plus a constant step along the
    slice normal, so an uneven step (a missing slice, two series mixed) or a stack that drifts
    sideways (gantry tilt) would silently give a wrong geometry.

    Args:
        positions: ImagePositionPatient per slice, ``(n, 3)`` mm.
        orientations: ImageOrientationPatient per slice, ``(n, 6)``.
        pixel_mm: the in-plane pixel size; a sideways drift of half of it is tilt.
        where: the series, for messages.

    Raises:
        GeometryError: naming the gap (mm, and where along the normal), the duplicate
            position, the tilt angle, or the number of orientations.
    """
    if len(positions) < 2:
        return
    distinct = np.unique(np.round(orientations, 4), axis=0)
    if len(distinct) > 1:
        raise GeometryError(f"{where}: slices have {len(distinct)} different orientations "
                                 "(ImageOrientationPatient): two series mixed; livseg needs one stack of slices")
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    steps = np.diff(along)
    if steps.min() < DUPLICATE_MM:
        k = int(np.argmin(steps))
        raise GeometryError(f"{where}: two slices at {along[k]:.2f} mm along the slice normal: a duplicate slice "
                                 "or two series mixed; livseg needs one slice per position")
    median = float(np.median(steps))
    uneven = np.flatnonzero(np.abs(steps - median) > max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE * median))
    if uneven.size:
        k = int(uneven[0])
        raise GeometryError(
            f"{where}: slice gap of {steps[k]:.2f} mm between slices at {along[k]:.2f} and {along[k + 1]:.2f} mm "
            f"along the slice normal, where the series steps {median:.2f} mm ({uneven.size} uneven "
            f"step{'s' if uneven.size > 1 else ''}): a missing slice or a mixed series; livseg needs evenly spaced slices"
        )
    offsets = positions - positions[0]
    sideways = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    if sideways.max() > max(TILT_TOLERANCE_MM, 0.5 * pixel_mm):
        angle = float(np.degrees(np.arctan2(sideways[-1], along[-1] - along[0])))
        raise GeometryError(
            f"{where}: gantry tilt: the slices are stacked at {angle:.1f} degrees to their normal "
            f"(ImageOrientationPatient), {sideways[-1]:.2f} mm off at the last slice; livseg does not resample "
            "tilted series: correct the tilt first (e.g. dcm2niix)"
        )

