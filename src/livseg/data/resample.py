"""Resampling of 3D arrays: the paper's corner-aligned zoom, and the anti-aliased face-aligned grid.

Corner-aligned (the paper, ``scipy.ndimage.zoom``): output index i samples input coordinate
``i * (n_in - 1) / (n_out - 1)``; :func:`resample_linear` (torch trilinear, ``align_corners=True``,
equal to ``zoom(order=1, mode="nearest")`` to about 1e-5) and :func:`resample_nearest` (index
arithmetic, identical to ``zoom(order=0, mode="nearest")``).

Face-aligned (fixed-spacing grids): output voxel j of m is centred at input index
``(j + 0.5) * n / m - 0.5``, so grid faces line up and the spacing is exactly ``n * spacing / m``;
:func:`resample_faces` (block-averaged when shrinking) and its inverse for probability maps,
:func:`upsample_faces`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from livseg.data.masks import bounding_box

Shape3 = tuple[int, int, int]


def resample_linear(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear resampling of a 3D array to ``shape``, equal to
    ``scipy.ndimage.zoom(order=1, mode="nearest")`` with zoom = shape / array.shape (float32)."""
    shape = _check_shape(shape)
    if tuple(array.shape) == shape:
        return np.asarray(array, dtype=np.float32).copy()
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    with torch.no_grad():
        out = torch.nn.functional.interpolate(tensor[None, None], size=shape, mode="trilinear", align_corners=True)
    return out[0, 0].numpy()


def resample_nearest(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resampling to ``shape``, identical to
    ``scipy.ndimage.zoom(order=0, mode="nearest")`` with zoom = shape / array.shape; keeps the
    dtype (use it for labels)."""
    shape = _check_shape(shape)
    index = [_nearest_index(n_in, n_out) for n_in, n_out in zip(array.shape, shape)]
    return np.ascontiguousarray(array[np.ix_(*index)])


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    if n_out == 1:
        return np.zeros(1, dtype=np.intp)
    coords = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1))
    return np.floor(coords + 0.5).astype(np.intp).clip(0, n_in - 1)


def _check_shape(shape: Sequence[int]) -> Shape3:
    result = tuple(int(s) for s in shape)
    if len(result) != 3 or min(result) < 1:
        raise ValueError(f"target shape must be three positive sizes, got {tuple(shape)}")
    return result  # type: ignore[return-value]


def resample_faces(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Anti-aliased linear resampling onto a grid whose voxels tile the same field of view.

    Output voxel ``j`` of ``m`` along an axis of ``n`` input voxels is centred at input index
    ``(j + 0.5) * n / m - 0.5`` (``align_corners=False``), so grid faces, not corner voxel
    centres, line up, and the output spacing is exactly ``n * spacing / m``. When shrinking by
    a factor ``f >= 2``, blocks of ``floor(f)`` voxels are averaged first (the block grid is
    sampled at the same physical positions), so thin-slice noise is averaged, not aliased, as a
    thicker reconstruction would; the cost is one strided pass (0.2 s for 512 x 512 x 150).
    """
    shape = _check_shape(shape)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    if tuple(array.shape) == shape:
        return x[0, 0].numpy().copy()
    n = np.asarray(array.shape, dtype=np.float64)
    k = np.maximum(np.floor(n / np.asarray(shape)), 1).astype(int)
    with torch.no_grad():
        if (k > 1).any():
            pad = (-np.asarray(array.shape)) % k  # replicate the last voxels up to whole blocks
            if pad.any():
                x = torch.nn.functional.pad(x, (0, int(pad[2]), 0, int(pad[1]), 0, int(pad[0])), mode="replicate")
            x = torch.nn.functional.avg_pool3d(x, tuple(int(v) for v in k), stride=tuple(int(v) for v in k))
        # the pooled grid has voxels k times larger on the same origin: scale = m * k / n
        scale = tuple(float(m * kk / nn) for m, kk, nn in zip(shape, k, n))
        # one replicated voxel at the far end: interpolate's floor(size * scale) can fall one
        # short of m in floating point; the extra input moves no sample, it only completes the last
        x = torch.nn.functional.pad(x, (0, 1, 0, 1, 0, 1), mode="replicate")
        out = torch.nn.functional.interpolate(x, scale_factor=scale, mode="trilinear", align_corners=False,
                                              recompute_scale_factor=False)
    return np.ascontiguousarray(out[0, 0, : shape[0], : shape[1], : shape[2]].numpy())


PROBABILITY_FLOOR = 1e-3  # fixed-spacing grids map back only where the network said more than this


def upsample_faces(probabilities: np.ndarray, shape: Sequence[int], *, out: np.ndarray,
                   floor: float = PROBABILITY_FLOOR) -> None:
    """Trilinear resampling, ``align_corners=False``, of a probability map onto ``shape`` into
    ``out`` (zeros where every contributing value is below ``floor``).

    Output voxel ``i`` of ``n`` samples input coordinate ``(i + 0.5) * m / n - 0.5`` (clamped at 0,
    as ``torch.nn.functional.interpolate`` does), the inverse of :func:`resample_faces`. Computed
    axis by axis on the box of input voxels at or above ``floor`` grown by one voxel, so outside it
    ``out`` keeps its zeros; inside, the values equal the full interpolation (to 1e-6). Measured
    for a liver-sized box of a 512 x 512 x 133 scan: 0.2 s, against 1.2 s for the whole scan.
    """
    box = bounding_box(probabilities >= floor, margin=1)
    if box is None:
        return
    t = np.asarray(probabilities[box], dtype=np.float32)
    targets = []
    for axis, (m, n, sl) in enumerate(zip(probabilities.shape, shape, box)):
        u = np.maximum((np.arange(n) + 0.5) * (m / n) - 0.5, 0.0)
        lo = np.minimum(np.floor(u), m - 1).astype(np.intp)
        hi = np.minimum(lo + 1, m - 1)
        # outputs whose two neighbours both lie outside the box are below the floor
        keep = np.flatnonzero((hi >= sl.start) & (lo < sl.stop))
        if not len(keep):
            return
        i0, i1 = int(keep[0]), int(keep[-1]) + 1
        targets.append(slice(i0, i1))
        w = (u - np.floor(u))[i0:i1].astype(np.float32).reshape(-1, 1, 1)
        last = sl.stop - sl.start - 1
        # gather along the leading axis (whole rows at a time): 6x faster than torch's index_select
        t = np.moveaxis(t, axis, 0)
        t = t[np.clip(lo[i0:i1] - sl.start, 0, last)] * (1 - w) + t[np.clip(hi[i0:i1] - sl.start, 0, last)] * w
        t = np.moveaxis(t, 0, axis)
    out[tuple(targets)] = t
