"""DICOM SEG: a label map written as a Segmentation Storage object tied to its source series
(with highdicom); reading one back onto a CT grid is :mod:`livseg.data.io.dicom_seg_read`.

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

from livseg.data.io.dicom import dicom_series_files
from livseg.data.io.dicom_seg_read import frame_affine, is_dicom_seg, plane_on_grid, read_dicom_seg
from livseg.data.io.files import atomic_output
from livseg.errors import ConfigError, CorruptFileError, GridMismatchError, LabelValueError, one_line

log = logging.getLogger(__name__)

__all__ = [  # is_dicom_seg and read_dicom_seg live in dicom_seg_read; re-exported here
    "LITS_SEGMENTS", "LIVER", "LIVER_TUMOUR", "SegmentSpec", "is_dicom_seg", "read_dicom_seg", "seg_series_description",
    "write_dicom_seg",
]


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
            frame = frame_affine(ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing)
            size = max(int(ds.Rows), int(ds.Columns))
        except (AttributeError, TypeError, ValueError):
            raise CorruptFileError(f"{ds.filename}: slice lacks its position, orientation or pixel spacing") from None
        placed = plane_on_grid(frame, size, affine)
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


