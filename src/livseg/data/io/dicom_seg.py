"""DICOM SEG: a label map written as a Segmentation Storage object tied to its source series
(with highdicom), and DICOM SEG files read back onto a CT grid.

Layout: a livseg array read from a DICOM series is indexed (x, y, z) = (column, row, slice) of
that series (SimpleITK's i, j, k; see :mod:`livseg.data.io.dicom`), so pixel [row r, column c]
of source slice k is ``array[c, r, k]``. Which source file is slice k is decided by geometry,
not by file order: each file's Image Position/Orientation (Patient) and Pixel Spacing are mapped
through the volume's affine and must land exactly on one slice of the grid. Reading goes the
same way backwards: every frame's plane position is mapped onto the CT grid.

Label values are segment numbers: ``{1: LIVER, 2: LIVER_TUMOUR}`` for LiTS-style maps. The codes
come from pydicom's SNOMED CT dictionary (looked up by keyword, not typed in): liver is
``Anatomical Structure`` / ``Liver`` (SCT 91723000 / 10200004), a liver tumour
``Morphologically Abnormal Structure`` / ``Neoplasm`` (SCT 49755003 / 108369006) with anatomic
region ``Liver``.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from livseg.data.io.dicom import LPS_TO_RAS, dicom_series_files
from livseg.data.io.files import atomic_output
from livseg.errors import ConfigError, CorruptFileError, GridMismatchError, LabelValueError, one_line

log = logging.getLogger(__name__)

__all__ = ["LITS_SEGMENTS", "LIVER", "LIVER_TUMOUR", "SegmentSpec", "is_dicom_seg", "read_dicom_seg", "seg_series_description",
           "write_dicom_seg"]

SEG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage",
}
# how far (in voxels, at the far corner of a frame) a frame may sit from the CT grid and still be
# on it: DICOM decimal strings keep ~16 digits, a half-voxel shift is 0.5
ON_GRID_TOLERANCE = 0.05


@dataclass(frozen=True)
class SegmentSpec:
    """One structure of a label map, as a DICOM segment.

    Attributes:
        label: the Segment Label viewers show.
        category: keyword of the Segmented Property Category in pydicom's SCT dictionary.
        property_type: keyword of the Segmented Property Type in the same dictionary.
        anatomic_region: keyword of the Anatomic Region (for a finding inside an organ), or None.
        rgb: recommended display colour, 0-255 (stored as CIELab).
    """

    label: str
    category: str
    property_type: str
    anatomic_region: str | None = None
    rgb: tuple[int, int, int] = (221, 130, 101)


LIVER = SegmentSpec("Liver", "AnatomicalStructure", "Liver", rgb=(221, 130, 101))  # 3D Slicer's liver colour
LIVER_TUMOUR = SegmentSpec("Liver tumour", "MorphologicallyAbnormalStructure", "Neoplasm", "Liver", rgb=(255, 213, 0))
LITS_SEGMENTS: Mapping[int, SegmentSpec] = {1: LIVER, 2: LIVER_TUMOUR}


DEFAULT_SERIES_DESCRIPTION = "livseg segmentation"
REVIEW_MARK = " [REVIEW]"  # what a PACS series list shows for a mask the quality estimate flags


def seg_series_description(stats: Mapping[str, Any]) -> str:
    """The SEG's Series Description for a prediction's statistics: the default, marked
    ``[REVIEW]`` when its quality block (issue 26: ``stats["quality"]["review"]``) flags it."""
    quality = stats.get("quality")
    review = isinstance(quality, Mapping) and bool(quality.get("review"))
    return DEFAULT_SERIES_DESCRIPTION + (REVIEW_MARK if review else "")


# ------------------------------------------------------------------------------------ geometry


def _frame_affine(position: Sequence[float], orientation: Sequence[float], spacing: Sequence[float]) -> np.ndarray:
    """4x4 RAS affine of one DICOM plane: (column, row, 0) -> world mm."""
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * float(spacing[1])  # along a row: the column index grows; Pixel Spacing[1]
    lps[:3, 1] = col_dir * float(spacing[0])  # down a column: the row index grows; Pixel Spacing[0]
    lps[:3, 2] = np.cross(row_dir, col_dir)
    lps[:3, 3] = np.asarray(position, float)
    return LPS_TO_RAS @ lps


def _plane_on_grid(frame_affine: np.ndarray, size: int, grid_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(R, offset)`` such that pixel (c, r) is voxel ``R @ (c, r) + offset`` of the grid, when
    the plane's pixel centres coincide with voxel centres; None otherwise."""
    m = np.linalg.inv(grid_affine) @ frame_affine
    linear, offset = m[:3, :2], m[:3, 3]
    r = np.round(linear)
    if np.abs(linear - r).max() * size > ON_GRID_TOLERANCE or np.abs(offset - np.round(offset)).max() > ON_GRID_TOLERANCE:
        return None
    # each pixel axis must step along exactly one voxel axis, by one voxel, and not the same one
    if sorted(np.abs(r).sum(axis=0).tolist()) != [1.0, 1.0] or np.abs(r).sum(axis=1).max() > 1:
        return None
    return r.astype(np.int64), np.round(offset).astype(np.int64)


# ------------------------------------------------------------------------------------ writing


def write_dicom_seg(
    labels: np.ndarray,
    like: Any,
    path: str | os.PathLike[str],
    *,
    segments: Mapping[int, SegmentSpec] = LITS_SEGMENTS,
    series_id: str | None = None,
    overwrite: bool = False,
    series_description: str = DEFAULT_SERIES_DESCRIPTION,
) -> Path:
    """Write a label map as one DICOM SEG object referencing the series ``like`` was read from.

    Every segment of ``segments`` is described (a structure the model looks for but did not find
    is an empty segment); frames are written for the source slices where a segment is present.

    Args:
        labels: integer label map with exactly ``like``'s shape; 0 is background and every other
            value must be a key of ``segments``.
        like: the :class:`~livseg.data.io.volume.Volume` read from a DICOM series folder.
        path: output file (``.dcm``), written atomically.
        segments: label value -> segment description (``{1: LIVER, 2: LIVER_TUMOUR}``); keys
            are the segment numbers and must run 1, 2, ...
        series_id: the SeriesInstanceUID read from a folder holding several series.
        overwrite: replace an existing file.
        series_description: Series Description of the new SEG series.

    Returns:
        ``path``.

    Raises:
        ConfigError: ``like`` was not read from a DICOM folder, or bad ``segments``.
        GridMismatchError: shape mismatch, or the source slices do not lie on ``like``'s grid.
        LabelValueError: values in ``labels`` without a segment.
        CorruptFileError: unreadable source files, or headers highdicom cannot derive a SEG from.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from livseg import __version__

    folder = Path(like.source)
    if not folder.is_dir():
        raise ConfigError(f"{like.source}: a DICOM SEG references the slices of a DICOM series; expected a DICOM series folder, not a file")
    if tuple(labels.shape) != tuple(like.shape):
        raise GridMismatchError(f"label map shape {tuple(labels.shape)} does not match the volume shape {like.shape}")
    if sorted(segments) != list(range(1, len(segments) + 1)):
        raise ConfigError(f"segment numbers must run 1, 2, ...; got {sorted(segments)}")
    extra = sorted(set(np.unique(labels).tolist()) - {0, *segments})
    if extra:
        raise LabelValueError(f"label values {extra[:10]} have no segment; described: {sorted(segments)}")

    sources = [_read_header(f, pydicom) for f in dicom_series_files(folder, series_id)]
    _fill_frame_of_reference(sources, folder, pydicom)
    for ds in sources:  # highdicom copies it into the SEG; a series without it (optional in DICOM) still has a step
        if not ds.get("SliceThickness"):
            ds.SliceThickness = f"{float(like.spacing[2]):.6g}"
    ordered = _order_by_grid(sources, like.shape, like.affine, folder)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="livseg", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=spec.label,
            segmented_property_category=getattr(codes.SCT, spec.category),
            segmented_property_type=getattr(codes.SCT, spec.property_type),
            algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm,
            anatomic_regions=[getattr(codes.SCT, spec.anatomic_region)] if spec.anatomic_region else None,
            display_color=hd.color.CIELabColor.from_rgb(*spec.rgb),
        )
        for number, spec in sorted(segments.items())
    ]
    frames = np.ascontiguousarray(np.transpose(labels, (2, 1, 0)).astype(np.uint8 if len(segments) < 256 else np.uint16))
    series_number = int(getattr(ordered[0], "SeriesNumber", None) or 0) + 1000
    with warnings.catch_warnings(record=True) as caught:  # highdicom's remarks on the source headers
        warnings.simplefilter("always")
        try:
            seg = hd.seg.Segmentation(
                source_images=ordered,
                pixel_array=frames,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="livseg",
                manufacturer_model_name="livseg",
                software_versions=__version__,
                device_serial_number="0",
                series_description=series_description,
                content_label="LIVSEG",
                content_description=series_description,
            )
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise CorruptFileError(f"{folder}: cannot derive a DICOM SEG from these slices ({one_line(exc)[:200]})") from None
    for warning in caught:  # nothing a user can act on: -v shows them
        log.debug("%s: DICOM SEG: %s", folder, one_line(warning.message))
    with atomic_output(path, overwrite=overwrite) as tmp:
        seg.save_as(tmp)
    return Path(path)


def _read_header(file: str, pydicom: Any) -> Any:
    """One source slice's header (no pixels), with the quirks highdicom refuses smoothed over."""
    try:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise CorruptFileError(f"{file}: cannot read DICOM header ({one_line(exc)[:200]})") from None
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet  # empty means the default repertoire
    return ds


def _fill_frame_of_reference(sources: list[Any], folder: Path, pydicom: Any) -> None:
    """A SEG must carry a Frame of Reference UID; for a series without one (IRCADb has none),
    derive one from its Series Instance UID, so every slice and every run agree on it."""
    missing = [ds for ds in sources if not ds.get("FrameOfReferenceUID")]
    if not missing:
        return
    uid = pydicom.uid.generate_uid(entropy_srcs=[str(missing[0].get("SeriesInstanceUID", folder)), "frame of reference"])
    for ds in missing:
        ds.FrameOfReferenceUID = uid
    log.debug("%s: %d slices have no Frame of Reference UID; the SEG uses %s, derived from the series", folder,
              len(missing), uid)


def _order_by_grid(sources: list[Any], shape: Sequence[int], affine: np.ndarray, folder: Path) -> list[Any]:
    """The source headers in slice order k = 0, 1, ... of the grid, matched by their geometry."""
    by_slice: dict[int, Any] = {}
    for ds in sources:
        try:
            frame = _frame_affine(ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing)
            size = max(int(ds.Rows), int(ds.Columns))
        except (AttributeError, TypeError, ValueError):
            raise CorruptFileError(f"{ds.filename}: slice lacks its position, orientation or pixel spacing") from None
        placed = _plane_on_grid(frame, size, affine)
        on_grid = (
            placed is not None
            and placed[0].tolist() == [[1, 0], [0, 1], [0, 0]]
            and placed[1][:2].tolist() == [0, 0]
            and (int(ds.Columns), int(ds.Rows)) == tuple(shape[:2])
            and 0 <= placed[1][2] < shape[2]
            and int(placed[1][2]) not in by_slice
        )
        if not on_grid:
            raise GridMismatchError(
                f"{ds.filename}: source slice does not lie on a slice of the volume's grid {tuple(shape)}; "
                "expected the series the volume was read from"
            )
        by_slice[int(placed[1][2])] = ds  # type: ignore[index]
    if len(by_slice) != shape[2]:
        raise GridMismatchError(f"{folder}: {len(by_slice)} source slices for a volume of {shape[2]} slices")
    return [by_slice[k] for k in range(shape[2])]


# ------------------------------------------------------------------------------------ reading


def is_dicom_seg(path: str | os.PathLike[str]) -> bool:
    """True for a DICOM file whose SOP class is a Segmentation (binary, fractional or label map)."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as f:
        if f.read(132)[128:] != b"DICM":
            return False
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 (any unreadable header: not a SEG; the image readers report it)
        return False
    return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASSES


@dataclass(frozen=True)
class _Frames:
    values: np.ndarray  # (n, rows, cols) label value per pixel (segment number, 0 background)
    affines: np.ndarray  # (n, 4, 4) RAS: (column, row, 0) -> world
    slice_spacing: float | None  # Spacing Between Slices, when the file states it


def read_dicom_seg(
    path: str | os.PathLike[str], shape: Sequence[int] | None = None, affine: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A DICOM SEG file as a label map: value = segment number, 0 background.

    Where segments overlap, the higher segment number wins (a tumour segment drawn over the
    liver stays tumour). Fractional segments count where the fraction is at least one half.

    Args:
        path: the SEG file.
        shape, affine: a CT grid. When every frame lies on it (its pixel centres on voxel
            centres), the labels come back on that grid, voxel for voxel.

    Returns:
        ``(labels, affine)``: uint16 labels indexed (x, y, z) and their RAS affine: the given
        grid when the frames lie on it, else the SEG's own grid (its frames stacked along the
        plane normal), which the caller compares with the CT grid, refuses or resamples.

    Raises:
        CorruptFileError: not a readable DICOM SEG, or frames that lie on no regular grid.
    """
    frames = _read_frames(Path(path))
    if shape is not None and affine is not None:
        on_grid = _paste(frames, tuple(shape), np.asarray(affine, float))
        if on_grid is not None:
            return on_grid, np.asarray(affine, float)
    own_shape, own_affine = _own_grid(frames, path)
    labels = _paste(frames, own_shape, own_affine)
    if labels is None:
        raise CorruptFileError(f"{path}: SEG frames do not lie on one regular grid of parallel planes")
    return labels, own_affine


def _read_frames(path: Path) -> _Frames:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        kind = SEG_SOP_CLASSES[str(ds.SOPClassUID)]
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 (pydicom raises many types for a damaged file)
        raise CorruptFileError(f"{path}: cannot read as DICOM SEG ({one_line(exc)[:200]})") from None
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    pixels = pixels.reshape(n, int(ds.Rows), int(ds.Columns))
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None] * n

    def item(group: Any, name: str) -> Any:
        for source in (group, shared):
            if source is not None and name in source:
                return source[name][0]
        raise CorruptFileError(f"{path}: SEG frame without {name}")

    segment_type = str(ds.get("SegmentationType", "LABELMAP" if "Label Map" in kind else "BINARY"))
    values = np.zeros(pixels.shape, dtype=np.uint16)
    affines = np.zeros((n, 4, 4))
    for i, group in enumerate(per_frame):
        measures = item(group, "PixelMeasuresSequence")
        affines[i] = _frame_affine(
            item(group, "PlanePositionSequence").ImagePositionPatient,
            item(group, "PlaneOrientationSequence").ImageOrientationPatient,
            measures.PixelSpacing,
        )
        if segment_type == "LABELMAP":
            values[i] = pixels[i]
            continue
        number = int(item(group, "SegmentIdentificationSequence").ReferencedSegmentNumber)
        if segment_type == "FRACTIONAL":
            inside = 2 * pixels[i].astype(np.int64) >= int(ds.MaximumFractionalValue)
        else:
            inside = pixels[i] != 0
        values[i] = np.where(inside, number, 0)
    spacing = None
    if shared is not None and "PixelMeasuresSequence" in shared:
        spacing = float(shared.PixelMeasuresSequence[0].get("SpacingBetweenSlices") or 0) or None
    return _Frames(values=values, affines=affines, slice_spacing=spacing)


def _paste(frames: _Frames, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray | None:
    """The frames' labels on a grid, or None when a frame is off it (or reaches outside it)."""
    out = np.zeros(shape, dtype=np.uint16)
    size = max(frames.values.shape[1:])
    for values, frame_affine in zip(frames.values, frames.affines):
        placed = _plane_on_grid(frame_affine, size, affine)
        if placed is None:
            return None
        rotation, offset = placed
        rows, cols = np.nonzero(values)
        index = rotation @ np.stack([cols, rows]) + offset[:, None]
        if index.size and ((index.min(axis=1) < 0).any() or (index.max(axis=1) >= np.asarray(shape)).any()):
            return None
        target = tuple(index)
        out[target] = np.maximum(out[target], values[rows, cols])
    return out


def _own_grid(frames: _Frames, path: Any) -> tuple[tuple[int, int, int], np.ndarray]:
    """The regular grid the frames were cut from: in-plane as the frames, slices along the normal."""
    normal = frames.affines[0][:3, 2]
    depth = frames.affines[:, :3, 3] @ normal
    levels = np.unique(np.round(depth, 3))
    spacing = frames.slice_spacing or (float(np.diff(levels).min()) if len(levels) > 1 else 1.0)
    first = int(np.argmin(depth))
    affine = frames.affines[first].copy()
    affine[:3, 2] = normal * spacing
    n_slices = int(round((levels[-1] - levels[0]) / spacing)) + 1
    if n_slices > 10 * len(levels) + 1000:
        raise CorruptFileError(f"{path}: SEG frame positions span {n_slices} slices of {spacing} mm; expected a regular stack")
    rows, cols = frames.values.shape[1:]
    return (cols, rows, n_slices), affine
