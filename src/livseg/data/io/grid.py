"""The voxel grid every reader's affine must describe: finite, rectangular, with plausible voxel sizes.

Every image (NIfTI, DICOM series, .mha/.nrrd) passes :func:`check_grid` after it is read, so that a
damaged or foreign header fails with one line before any work instead of giving a wrong volume
(column norms of a sheared affine overstate the voxel volume) or an absurd allocation (a spacing
of metres resampled to a millimetre grid).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from livseg.errors import GeometryError

# A CT voxel is 0.2-10 mm along any axis; outside 0.05-50 mm the header is wrong (a unit error:
# metres or microns stored as millimetres), and a grid derived from it would be absurd.
MIN_SPACING_MM, MAX_SPACING_MM = 0.05, 50.0
# Array axes must meet at right angles: |cos| below 1e-3 (0.06 degrees) is rounding in a header
SHEAR_TOLERANCE = 1e-3

__all__ = ["MAX_SPACING_MM", "MIN_SPACING_MM", "check_grid", "check_grid_voxels", "describe_origin",
           "spacing_from_affine"]


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm per array axis from a 4x4 affine (norms of its columns)."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))  # type: ignore[return-value]


def check_grid(affine: np.ndarray, where: str) -> None:
    """Refuse an affine that gives no usable voxel grid.

    Args:
        affine: 4x4 voxel index -> RAS+ mm.
        where: the file, for messages.

    Raises:
        GeometryError: NaN or infinite entries; a zero voxel spacing; array axes that are not
            perpendicular (a sheared grid, which livseg refuses as it refuses gantry tilt); a voxel
            spacing outside 0.05-50 mm.
    """
    affine = np.asarray(affine, dtype=np.float64)
    rounded = np.round(affine[:3], 4).tolist()
    if not np.isfinite(affine).all():
        raise GeometryError(f"{where}: the voxel-to-world affine holds NaN or infinite values ({rounded}); the "
                            "header's geometry (sform/qform, pixdim, or DICOM position/spacing) is damaged")
    spacing = spacing_from_affine(affine)
    if min(spacing) < 1e-6:
        raise GeometryError(f"{where}: voxel spacing is 0 along array axis {int(np.argmin(spacing))} (affine "
                            f"{np.round(affine[:3, :3], 4).tolist()}); expected positive voxel sizes")
    axes = affine[:3, :3] / np.asarray(spacing)
    cosines = np.abs(axes.T @ axes - np.eye(3))
    if cosines.max() > SHEAR_TOLERANCE:
        i, j = (int(v) for v in np.unravel_index(int(np.argmax(cosines)), cosines.shape))
        angle = float(np.degrees(np.arccos(min(1.0, abs(float(axes[:, i] @ axes[:, j]))))))  # the acute one
        raise GeometryError(
            f"{where}: sheared voxel grid: array axes {min(i, j)} and {max(i, j)} meet at {angle:.1f} degrees, not 90 "
            f"(affine {np.round(affine[:3, :3], 4).tolist()}); livseg needs a rectangular grid, as it refuses gantry "
            "tilt: resample the image onto one first"
        )
    odd = [k for k, s in enumerate(spacing) if not MIN_SPACING_MM <= s <= MAX_SPACING_MM]
    if odd:
        raise GeometryError(
            f"{where}: voxel spacing {_fmt(spacing)} mm: {spacing[odd[0]]:.4g} mm along array axis {odd[0]} is outside "
            f"the {MIN_SPACING_MM:g}-{MAX_SPACING_MM:g} mm of any CT; the header's unit or spacing is wrong (NIfTI: "
            "xyzt_units; metres or microns stored as millimetres)"
        )


def check_grid_voxels(shape: Sequence[int], *, what: str) -> None:
    """Refuse a derived grid (a CT resampled to a model's spacing, a liver region) larger than any
    network grid livseg allows (:data:`livseg.config.MAX_TARGET_VOXELS`, 512^3), before it is allocated.

    Args:
        shape: the grid's shape.
        what: the sentence start that says what it is and where it came from.

    Raises:
        GeometryError: naming the grid's shape and voxel count.
    """
    from livseg.config import MAX_TARGET_VOXELS

    voxels = int(np.prod([int(n) for n in shape], dtype=np.float64))
    if voxels > MAX_TARGET_VOXELS:
        raise GeometryError(f"{what} would be {tuple(int(n) for n in shape)}, {voxels:,} voxels, more than the "
                            f"{MAX_TARGET_VOXELS:,} (512^3) livseg allows; check the image's voxel spacing, or crop it")


def describe_origin(affine: np.ndarray) -> str:
    """``origin (x, y, z) mm``: where voxel (0, 0, 0) lies, for messages about two grids."""
    return "origin (" + ", ".join(f"{v:.2f}" for v in np.asarray(affine)[:3, 3]) + ") mm"


def _fmt(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)
