"""Binary masks as arrays: the foreground as booleans and its bounding box.

Shared by post-processing and mask statistics (inference) and by the surface metrics
(evaluation), which all work on the box around the foreground instead of the whole scan.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_bool", "bounding_box"]


def as_bool(mask: np.ndarray) -> np.ndarray:
    """The mask as a boolean array (any non-zero voxel is foreground); no copy if already bool."""
    mask = np.asarray(mask)
    return mask if mask.dtype == np.bool_ else mask != 0


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Index box of the foreground, grown by ``margin`` voxels per side and clipped to the array.

    Args:
        mask: array of any dimension; non-zero is foreground.
        margin: voxels added on every side (clipped at the array border).

    Returns:
        One ``slice`` per axis (``mask[box]`` is the crop), or None when the mask is empty.
    """
    mask = as_bool(mask)
    box = []
    for axis in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != axis)
        # per-axis profiles: np.nonzero on a whole-abdomen mask would allocate gigabytes
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)
