"""Training targets of a multi-organ model on a fixed-spacing network grid.

A case's class map (values = class indices, :mod:`livseg.data.organ_classes`) on its CT grid
becomes two uint8 arrays on the network grid (:func:`organ_targets`): the liver's share of each
voxel (0-255, as liver-v1 is trained: soft at the liver's boundary) and the most frequent other
class in it (background or a neighbour). :func:`organ_patch_target` turns a patch of them into
the soft ``[C, ...]`` target of the partial-label loss: the liver channel holds the share, the
voxel's other class the rest. A voxel half liver, half stomach is therefore (0.5 liver, 0.5
stomach), not half background.
"""

from __future__ import annotations

import numpy as np

from livseg.config import PreprocessConfig
from livseg.data.preprocessing import GridMap, network_view
from livseg.data.resample import resample_faces

__all__ = ["organ_patch_target", "organ_targets"]


def organ_targets(class_map: np.ndarray, affine: np.ndarray, grid: GridMap, config: PreprocessConfig,
                  n_classes: int, liver_index: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The liver share and the other class of each network voxel.

    Args:
        class_map: uint8 class indices on the CT's grid.
        affine: the CT's affine.
        grid: where the network grid lies (from :func:`livseg.data.preprocessing.network_input`).
        config: the preprocessing (reorientation).
        n_classes: number of classes (values >= it are refused).
        liver_index: the liver's class index.

    Returns:
        ``(share, other)`` on ``grid.shape``: uint8 liver share 0-255, and uint8 index of the
        class with the largest share among the non-liver classes (background included).

    Raises:
        ValueError: a class index outside ``0 .. n_classes - 1``.
    """
    if class_map.size and int(class_map.max()) >= n_classes:
        raise ValueError(f"class map holds {int(class_map.max())}; expected class indices below {n_classes}")
    crop = network_view(class_map, affine, config)[0][grid.slices]
    present = np.bincount(crop.ravel(), minlength=n_classes)
    share = resample_faces((crop == liver_index).astype(np.float32), grid.shape).clip(0.0, 1.0)
    best = np.full(grid.shape, -1.0, dtype=np.float32)
    other = np.zeros(grid.shape, dtype=np.uint8)
    for index in range(n_classes):
        if index == liver_index or (index and not present[index]):
            continue
        fraction = resample_faces((crop == index).astype(np.float32), grid.shape)
        wins = fraction > best
        other[wins] = index
        np.maximum(best, fraction, out=best)
    return np.rint(share * 255).astype(np.uint8), other


def organ_patch_target(share: np.ndarray, other: np.ndarray, n_classes: int, liver_index: int = 1) -> np.ndarray:
    """The soft ``[C, ...]`` target of a patch: liver channel = share, the other class = the rest.

    Args:
        share: the liver's share, uint8 0-255 or float in [0, 1].
        other: the other class index per voxel.
        n_classes: C.
        liver_index: the liver's channel.

    Returns:
        float32 ``[C, *share.shape]`` summing to 1 over C.
    """
    s = share.astype(np.float32) / (np.float32(255.0) if share.dtype == np.uint8 else np.float32(1.0))
    target = np.zeros((n_classes, *share.shape), dtype=np.float32)
    np.put_along_axis(target, other[None].astype(np.int64), (1.0 - s)[None], axis=0)
    target[liver_index] += s
    return target

