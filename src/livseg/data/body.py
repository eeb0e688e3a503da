"""The patient's body in a CT: the box that holds it, so preprocessing can cut off air and table.

:func:`body_box` thresholds the scan at -500 HU (between air/lung and soft tissue, fat
included), keeps the largest 6-connected component (the trunk; the table, the cushions' edges
and separate arms are smaller) and returns its in-plane bounding box grown by a margin. It
works on a subsampled copy (about 4 mm in-plane, 5 mm between slices), so it costs about
0.05 s on a 512 x 512 x 150 CT; the box is widened by one subsampling step on each side so it
never cuts into the body.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["BODY_HU", "body_box"]

BODY_HU = -500.0  # air and lung lie below, fat (-120 to -80 HU) and every other tissue above
STEP_MM = (4.0, 4.0, 5.0)  # subsampling of the search: far finer than a body's outline needs
MIN_FRACTION = 0.01  # a largest component smaller than this share of the scan is not a body


def body_box(
    array: np.ndarray, spacing: Sequence[float], *, margin_mm: float = 10.0, threshold: float = BODY_HU
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Index box ``((x0, x1), (y0, y1), (z0, z1))`` (stop exclusive) of the body in a CT.

    Only the first two (in-plane) axes are cropped; z always spans the whole scan, so a scan that
    stops inside the body keeps every slice. Arrays whose largest component above ``threshold`` is
    tiny (no body found, e.g. a crop inside the liver) are not cropped at all.

    Args:
        array: CT in HU with axes (x, y, z), z the slice axis (RAS order after reorientation).
        spacing: voxel size in mm per axis.
        margin_mm: added on each side of the body's box (clipped to the array).
        threshold: HU above which a voxel can be body.

    Returns:
        The box as (start, stop) per axis.
    """
    shape = array.shape
    steps = [max(1, int(round(step / max(float(s), 1e-6)))) for step, s in zip(STEP_MM, spacing)]
    coarse = np.asarray(array[:: steps[0], :: steps[1], :: steps[2]]) > threshold
    full = ((0, shape[0]), (0, shape[1]), (0, shape[2]))
    labels, n = ndimage.label(coarse)
    if n == 0:
        return full
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    biggest = int(np.argmax(sizes))
    if sizes[biggest] < MIN_FRACTION * coarse.size:
        return full
    box = []
    for axis in range(2):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero((labels == biggest).any(axis=other))
        pad = steps[axis] + int(np.ceil(margin_mm / float(spacing[axis])))
        box.append((max(int(hits[0]) * steps[axis] - pad, 0), min((int(hits[-1]) + 1) * steps[axis] + pad, shape[axis])))
    return box[0], box[1], full[2]
