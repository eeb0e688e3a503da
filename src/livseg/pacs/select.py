"""Which series of a study to segment: the one a radiologist would pick for the liver.

A series is *readable* when it is CT (modality CT, single-frame CT Image Storage, not a
localizer) with at least 8 slices forming one evenly spaced, untilted stack (the geometry check
of :func:`livseg.data.io.dicom.check_slice_geometry`: no gap, duplicate or mixed orientation), and
*usable* when it is also axial (the slice normal runs mostly head-foot). Among the usable series
of a study the thinnest slices win, then the most slices (the widest coverage), then the lowest
series number. Everything is decided from the headers (WADO-RS metadata), before any pixel data
is retrieved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from livseg.data.io.dicom import check_slice_geometry
from livseg.errors import GeometryError, PacsError, one_line
from livseg.pacs.client import SeriesInfo, tag_value

__all__ = ["MIN_SLICES", "SeriesCheck", "check_series", "choose_series", "describe_checks"]

MIN_SLICES = 8  # fewer slices cannot hold a liver (segment() refuses under 8 voxels per axis)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
PLANES = ("sagittal", "coronal", "axial")  # the dominant component (x, y, z) of the slice normal
SOP_CLASS, IMAGE_TYPE, POSITION, ORIENTATION = "00080016", "00080008", "00200032", "00200037"
PIXEL_SPACING, ROWS, COLUMNS = "00280030", "00280010", "00280011"


@dataclass(frozen=True)
class SeriesCheck:
    """What the headers of one series say.

    Attributes:
        series: the series.
        readable: CT images that livseg can read as one volume.
        plane: ``axial``, ``coronal``, ``sagittal`` or ``""`` when unknown.
        slices: number of instances.
        spacing_mm: distance between neighbouring slices along their normal, when readable.
        reason: why it is not usable, or a summary of it (``"129 axial slices 1.60 mm apart"``).
    """

    series: SeriesInfo
    readable: bool
    plane: str
    slices: int
    spacing_mm: float | None
    reason: str

    @property
    def usable(self) -> bool:
        """Readable and axial: a series livseg chooses (and the watch loop segments) by itself."""
        return self.readable and self.plane == "axial"


def _values(item: Mapping[str, Any], tag: str) -> list[Any]:
    entry = item.get(tag)
    return list(entry.get("Value") or []) if isinstance(entry, Mapping) else []


def check_series(series: SeriesInfo, metadata: Sequence[Mapping[str, Any]]) -> SeriesCheck:
    """Judge one series from its instances' headers (DICOM JSON, as WADO-RS metadata gives them).

    Args:
        series: the series as QIDO listed it.
        metadata: one DICOM JSON object per instance; may be empty for a series that is not CT
            (its modality alone decides).
    """
    def refuse(reason: str, plane: str = "") -> SeriesCheck:
        return SeriesCheck(series, readable=False, plane=plane, slices=len(metadata), spacing_mm=None, reason=reason)

    if series.modality.upper() != "CT":
        return refuse(f"modality {series.modality or 'unknown'}, not CT")
    classes = {str(tag_value(item, SOP_CLASS, "")) for item in metadata}
    if ENHANCED_CT in classes:
        return refuse("enhanced (multi-frame) CT; livseg reads single-frame CT images")
    if classes - {CT_IMAGE_STORAGE}:
        return refuse(f"holds instances that are not CT images (SOP class {sorted(classes - {CT_IMAGE_STORAGE})[0] or 'missing'})")
    if any("LOCALIZER" in [str(v).upper() for v in _values(item, IMAGE_TYPE)] for item in metadata):
        return refuse("a localizer (scout)")
    if len(metadata) < MIN_SLICES:
        return refuse(f"{len(metadata)} image{'s' if len(metadata) != 1 else ''}: too few slices for a liver "
                      f"(at least {MIN_SLICES})")
    try:
        positions = np.array([[float(v) for v in _values(item, POSITION)] for item in metadata])
        orientations = np.array([[float(v) for v in _values(item, ORIENTATION)] for item in metadata])
        pixel = min(float(v) for item in metadata[:1] for v in _values(item, PIXEL_SPACING))
    except (ValueError, TypeError):
        return refuse("slices without a usable position, orientation or pixel spacing")
    if positions.shape != (len(metadata), 3) or orientations.shape != (len(metadata), 6):
        return refuse("slices without a position or orientation")
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    plane = PLANES[int(np.argmax(np.abs(normal)))]
    try:
        check_slice_geometry(positions, orientations, pixel_mm=pixel, where="series")
    except GeometryError as exc:
        return refuse(one_line(exc).removeprefix("series: "), plane)
    along = np.sort(positions @ normal)
    spacing = float(np.median(np.diff(along)))
    size = f"{tag_value(metadata[0], COLUMNS, '?')}x{tag_value(metadata[0], ROWS, '?')}"
    summary = f"{len(metadata)} {plane} slices of {size}, {spacing:.2f} mm apart"
    if plane != "axial":
        summary += "; livseg picks axial series"
    return SeriesCheck(series, readable=True, plane=plane, slices=len(metadata), spacing_mm=spacing, reason=summary)


def choose_series(checks: Sequence[SeriesCheck], *, series_uid: str | None = None) -> SeriesCheck:
    """The series to segment: the one named, else the thinnest usable one.

    Args:
        checks: every series of the study.
        series_uid: the user's choice; it must be readable (any plane).

    Raises:
        PacsError: the named series is not in the study or cannot be read; or no series is usable
            (the message lists every series and why).
    """
    if series_uid is not None:
        named = [check for check in checks if check.series.series_uid == series_uid]
        if not named:
            raise PacsError(f"the study has no series {series_uid}; it holds {describe_checks(checks)}")
        if not named[0].readable:
            raise PacsError(f"series {series_uid} cannot be segmented: {named[0].reason}")
        return named[0]
    usable = [check for check in checks if check.usable]
    if not usable:
        raise PacsError(f"the study has no axial CT series livseg can segment: {describe_checks(checks)}; "
                        "pick one with --series")
    return min(usable, key=lambda c: (round(c.spacing_mm or 0.0, 3), -c.slices,
                                      c.series.number if c.series.number is not None else 1 << 30, c.series.series_uid))


def describe_checks(checks: Sequence[SeriesCheck]) -> str:
    """Every series and what was found, on one line: what a user needs to pick one."""
    if not checks:
        return "no series"
    return "; ".join(f"{check.series.label()}: {check.reason}" for check in checks)
