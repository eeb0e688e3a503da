"""The liver's region for stage 2 of the cascade: cut it out at a fixed spacing, and put it back.

Stage 2 sees the CT cropped to the liver's bounding box plus a margin in mm, resampled to
``RegionConfig.spacing_mm``. Everything happens in the voxel index frame of the CT re-indexed to
RAS (:func:`livseg.data.preprocessing.to_ras`, an exact re-indexing), so any affine works, oblique
or flipped, and no general affine resampling is needed:

    RAS array --crop index box--> crop --resample (corner-aligned)--> region grid   (forward)
    region grid --resample back to the crop's shape--> crop --paste--> RAS array      (back)

The resampling is the one preprocessing uses (:func:`resample_linear`: ``zoom``'s corner-aligned
convention, crop voxel 0 onto region voxel 0 and the last onto the last), so its inverse is the
same function with the shapes swapped. The region grid's spacing is therefore the target spacing
rounded so that a whole number of voxels spans the crop: (crop size - 1) * CT spacing /
(region size - 1), within half a voxel of the target over the whole box.

A :class:`Region` records where the crop lies; its :meth:`Region.affine` maps region voxels to
world RAS mm, which is what the geometry tests check (a lesion placed in world coordinates comes
back where it was).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from livseg.data.io.grid import check_grid_voxels
from livseg.data.io.volume import Volume, spacing_from_affine
from livseg.data.masks import bounding_box
from livseg.data.preprocessing import from_ras, resample_linear, resample_nearest, to_ras, window

__all__ = [
    "Region", "RegionImage", "crop_region", "cut_liver_region", "grow_box", "liver_region", "paste_region",
    "region_shape", "region_to_input_grid",
]

Box = tuple[tuple[int, int, int], tuple[int, int, int]]  # (start, stop) index per axis


@dataclass(frozen=True)
class Region:
    """A crop of a RAS-ordered CT and the grid it is resampled to.

    Attributes:
        start: first index of the crop per RAS array axis.
        stop: one past the last index per axis (``array[start:stop]`` is the crop).
        shape: shape of the region grid (the crop resampled to the target spacing).
        ras_shape: shape of the whole RAS array the crop was cut from.
    """

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    shape: tuple[int, int, int]
    ras_shape: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Index of the crop in the RAS array."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def crop_shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def scale(self) -> np.ndarray:
        """RAS-array voxels per region voxel, per axis (corner-aligned: 0 for a one-voxel axis)."""
        crop, out = np.asarray(self.crop_shape, float), np.asarray(self.shape, float)
        return np.where(out > 1, (crop - 1) / np.maximum(out - 1, 1), 0.0)

    def affine(self, ras_affine: np.ndarray) -> np.ndarray:
        """Region voxel index -> world RAS mm, given the RAS array's affine."""
        to_crop = np.diag([*self.scale(), 1.0])
        to_crop[:3, 3] = self.start
        return np.asarray(ras_affine, dtype=np.float64) @ to_crop

    def spacing(self, ras_spacing: Sequence[float]) -> tuple[float, float, float]:
        """Voxel size of the region grid in mm (the target spacing, rounded to fit the crop)."""
        return tuple(float(s) * float(k) if k > 0 else float(s) for s, k in zip(ras_spacing, self.scale()))  # type: ignore[return-value]


def region_shape(crop_shape: Sequence[int], spacing: Sequence[float], target_mm: Sequence[float]) -> tuple[int, int, int]:
    """Shape of the region grid that samples a crop at about ``target_mm``.

    A crop of n voxels spans (n - 1) * spacing mm between its outer voxel centres; the region grid
    spans the same with (that / target) + 1 voxels, rounded, at least 1.
    """
    return tuple(
        max(1, int(round((n - 1) * float(s) / float(t))) + 1) if n > 1 else 1
        for n, s, t in zip(crop_shape, spacing, target_mm)
    )  # type: ignore[return-value]


def grow_box(box: Box, lo_mm: Sequence[float], hi_mm: Sequence[float], spacing: Sequence[float],
             shape: Sequence[int]) -> Box:
    """Move each face of an index box outwards by a distance in mm (inwards when negative).

    Distances are rounded up to whole voxels outwards (down inwards), the box keeps at least one
    voxel, and it is clipped to an array of ``shape``.

    Args:
        box: ``(start, stop)`` per axis.
        lo_mm: how far the low faces move outwards, per axis.
        hi_mm: how far the high faces move outwards, per axis.
        spacing: voxel size in mm per axis.
        shape: shape of the array the box must stay within.
    """
    start, stop = [], []
    for a, b, lo, hi, s, n in zip(*box, lo_mm, hi_mm, spacing, shape):
        grow_lo = math.ceil(lo / s - 1e-9) if lo >= 0 else -math.floor(-lo / s + 1e-9)
        grow_hi = math.ceil(hi / s - 1e-9) if hi >= 0 else -math.floor(-hi / s + 1e-9)
        new_a, new_b = min(max(a - grow_lo, 0), n - 1), max(min(b + grow_hi, n), 1)
        if new_b <= new_a:  # faces crossed: keep the voxel in the middle of the old box
            middle = min(max((a + b - 1) // 2, 0), n - 1)
            new_a, new_b = middle, middle + 1
        start.append(int(new_a))
        stop.append(int(new_b))
    return tuple(start), tuple(stop)  # type: ignore[return-value]


def liver_region(mask_ras: np.ndarray, ras_spacing: Sequence[float], *, margin_mm: float,
                 target_mm: Sequence[float]) -> Region | None:
    """The region around a liver mask (already in RAS axis order): its box plus ``margin_mm``.

    Returns:
        The :class:`Region`, or None for an empty mask.

    Raises:
        GeometryError: a region grid of more than 512^3 voxels (a CT of metres).
    """
    box = bounding_box(mask_ras)
    if box is None:
        return None
    start, stop = grow_box((tuple(s.start for s in box), tuple(s.stop for s in box)), [margin_mm] * 3, [margin_mm] * 3,
                           ras_spacing, mask_ras.shape)
    crop = tuple(b - a for a, b in zip(start, stop))
    shape = region_shape(crop, ras_spacing, target_mm)
    check_grid_voxels(shape, what=f"the liver's region ({' x '.join(f'{(n - 1) * s:.0f}' for n, s in zip(crop, ras_spacing))} "
                                  f"mm) at {' x '.join(f'{t:g}' for t in target_mm)} mm")
    return Region(start, stop, shape, tuple(mask_ras.shape))  # type: ignore[arg-type]


def crop_region(array_ras: np.ndarray, region: Region, *, labels: bool = False) -> np.ndarray:
    """Cut a region out of a RAS-ordered array and resample it to the region grid.

    Args:
        array_ras: CT (already windowed) or label map in RAS axis order, shape ``region.ras_shape``.
        region: where and at what size.
        labels: nearest neighbour (keeps the label values and dtype) instead of linear (float32).
    """
    crop = np.asarray(array_ras[region.slices])
    if labels:
        return resample_nearest(crop, region.shape)
    return resample_linear(crop, region.shape)


def paste_region(values: np.ndarray, region: Region, *, fill: float = 0.0) -> np.ndarray:
    """Map region-grid values (``[X, Y, Z]`` or ``[C, X, Y, Z]``) back onto the whole RAS array.

    Linear resampling to the crop's shape (the inverse of :func:`crop_region`), pasted into an
    array of ``region.ras_shape`` that holds ``fill`` outside the crop. float32.
    """
    values = np.asarray(values, dtype=np.float32)
    channels = values[None] if values.ndim == 3 else values
    out = np.full((channels.shape[0], *region.ras_shape), fill, dtype=np.float32)
    for c, channel in enumerate(channels):
        out[(c, *region.slices)] = resample_linear(channel, region.crop_shape)
    return out[0] if values.ndim == 3 else out


@dataclass
class RegionImage:
    """A CT's liver region, ready for stage 2.

    Attributes:
        image: windowed CT on the region grid, float32 in [0, 1].
        region: where the crop lies in the RAS-ordered CT.
        ras_affine: affine of the RAS-ordered CT (``region.affine(ras_affine)`` is the grid's).
        spacing: the region grid's voxel size in mm.
    """

    image: np.ndarray
    region: Region
    ras_affine: np.ndarray
    spacing: tuple[float, float, float]


def cut_liver_region(volume: Volume, liver_mask: np.ndarray, *, margin_mm: float, target_mm: Sequence[float],
                     hu_min: float, hu_max: float) -> RegionImage | None:
    """The liver's region of a CT on the stage-2 grid, from a liver mask on the CT's own grid.

    Args:
        volume: the CT.
        liver_mask: non-zero = liver (stage 1's prediction, or the reference at training), on
            ``volume``'s grid.
        margin_mm: context around the mask's bounding box.
        target_mm: spacing of the region grid.
        hu_min, hu_max: the HU window (as preprocessing).

    Returns:
        The :class:`RegionImage`, or None when the mask is empty.
    """
    mask_ras, ras_affine = to_ras(np.asarray(liver_mask) != 0, volume.affine)
    ras_spacing = spacing_from_affine(ras_affine)
    region = liver_region(mask_ras, ras_spacing, margin_mm=margin_mm, target_mm=target_mm)
    if region is None:
        return None
    ct_ras = to_ras(volume.array, volume.affine)[0]
    image = resample_linear(window(np.asarray(ct_ras[region.slices]), hu_min, hu_max), region.shape)
    return RegionImage(image=image, region=region, ras_affine=ras_affine, spacing=region.spacing(ras_spacing))


def region_to_input_grid(values: np.ndarray, region: Region, volume: Volume, *, fill: float = 0.0) -> np.ndarray:
    """Region-grid values (``[X, Y, Z]`` or ``[C, X, Y, Z]``) on ``volume``'s own grid: pasted into the
    RAS array (:func:`paste_region`), then the reorientation undone."""
    pasted = paste_region(values, region, fill=fill)
    if pasted.ndim == 3:
        return from_ras(pasted, volume.affine)
    return np.stack([from_ras(channel, volume.affine) for channel in pasted])
