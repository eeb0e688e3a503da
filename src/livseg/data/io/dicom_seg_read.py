"""DICOM SEG files read back onto a CT grid, and the frame geometry that writing shares.

Every frame's plane (Image Position/Orientation (Patient), Pixel Spacing) is mapped through the
CT's affine and must land exactly on one slice of its grid (:func:`plane_on_grid`); see
:mod:`livseg.data.io.dicom_seg` for the array layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from livseg.data.io.dicom import LPS_TO_RAS
from livseg.errors import CorruptFileError, one_line

__all__ = ["ON_GRID_TOLERANCE", "SEG_SOP_CLASSES", "frame_affine", "is_dicom_seg", "plane_on_grid", "read_dicom_seg"]

SEG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage",
}
# how far (in voxels, at the far corner of a frame) a frame may sit from the CT grid and still be
# on it: DICOM decimal strings keep ~16 digits, a half-voxel shift is 0.5
ON_GRID_TOLERANCE = 0.05


def frame_affine(position: Sequence[float], orientation: Sequence[float], spacing: Sequence[float]) -> np.ndarray:
    """4x4 RAS affine of one DICOM plane: (column, row, 0) -> world mm."""
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * float(spacing[1])  # along a row: the column index grows; Pixel Spacing[1]
    lps[:3, 1] = col_dir * float(spacing[0])  # down a column: the row index grows; Pixel Spacing[0]
    lps[:3, 2] = np.cross(row_dir, col_dir)
    lps[:3, 3] = np.asarray(position, float)
    return LPS_TO_RAS @ lps


def plane_on_grid(frame_affine: np.ndarray, size: int, grid_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
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
        affines[i] = frame_affine(
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
        placed = plane_on_grid(frame_affine, size, affine)
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
