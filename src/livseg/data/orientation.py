"""Array axes and RAS: the exact re-indexing (no interpolation) that shows the network every CT
with the liver on the same side, and its inverse."""

from __future__ import annotations

import nibabel as nib
import numpy as np


def ras_orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation (axis permutation and flips) that takes array axes to RAS+."""
    return nib.orientations.io_orientation(np.asarray(affine))


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute and flip array axes so that they run along R, A, S (the closest canonical
    orientation, as ``nibabel.as_closest_canonical``); returns the array and its new affine.

    No interpolation happens: it is an exact re-indexing of the same voxels, returned as a
    view (strides may be negative; ``np.ascontiguousarray`` it where a copy is needed).
    """
    ornt = ras_orientation(affine)
    out = nib.orientations.apply_orientation(array, ornt)
    return out, np.asarray(affine) @ nib.orientations.inv_ornt_aff(ornt, array.shape)


def from_ras(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Undo :func:`to_ras`: take an array in RAS axis order back to the axes of the grid whose
    original affine is ``affine``."""
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ras_orientation(affine))
    return np.ascontiguousarray(nib.orientations.apply_orientation(array, back))
