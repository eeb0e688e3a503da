"""Tumours as lesions: 3D connected components and their size (volume, RECIST diameter, centroid).

Lesion geometry serves both stages below it: inference (the cascade's tumour statistics and its
smallest-lesion rule) and evaluation (lesion matching, :mod:`livseg.evaluation.lesions`).

Definitions (decided here, relied on by predict's statistics and evaluate's tumour metrics):
    Lesion          a 3D connected component of the tumour mask with full (26-) connectivity:
                    voxels that touch at a face, an edge or a corner belong to the same lesion,
                    so the digitised outline of one round lesion is never split in two. (Liver
                    post-processing uses face connectivity for the opposite reason: to cut off
                    blobs that merely graze the liver.)
    Volume          voxel count x voxel volume, in mL.
    Centroid        mean of the lesion's voxel centres in world RAS mm.
    Diameter        the longest axial diameter, as RECIST measures it: on every axial slice (the
                    array axis closest to superior-inferior) the longest distance between two
                    points of the lesion's outline, the largest over the slices, in mm with the
                    real spacing. The outline is the marching-squares contour of the slice at
                    0.5, whose vertices are the midpoints between each lesion pixel and its
                    4-neighbours outside the lesion; so a lesion n pixels wide along an axis
                    measures n pixels there (edge to edge), one pixel measures its side, and a
                    digitised disc of diameter d measures about d.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage, spatial

from livseg.data.masks import as_bool, bounding_box
from livseg.data.preprocessing import to_ras

__all__ = ["LESION_STRUCTURE", "SIZE_SPLIT_MM", "axial_diameters", "label_lesions", "lesion_table",
           "remove_small_lesions"]

LESION_STRUCTURE = ndimage.generate_binary_structure(3, 3)  # 26-connectivity
SIZE_SPLIT_MM = 10.0  # lesions at least this long (RECIST diameter) count as measurable


def label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Lesion labels 1..n of a tumour mask (26-connectivity) and n; 0 is background."""
    labels, n = ndimage.label(as_bool(mask), structure=LESION_STRUCTURE)
    return labels, int(n)


def remove_small_lesions(mask: np.ndarray, voxel_mm3: float, min_mm3: float) -> np.ndarray:
    """The tumour mask without lesions smaller than ``min_mm3`` (boolean, same shape)."""
    mask = as_bool(mask)
    if min_mm3 <= 0 or not mask.any():
        return mask.copy()
    labels, n = label_lesions(mask)
    keep = np.bincount(labels.ravel(), minlength=n + 1) * float(voxel_mm3) >= min_mm3
    keep[0] = False
    return keep[labels]


def _outline_points(slice_mask: np.ndarray) -> np.ndarray:
    """Marching-squares vertices of a 2D mask's outline at 0.5: pixel index +- 0.5 along an axis
    wherever the neighbour that way is outside, as float (n, 2)."""
    padded = np.pad(slice_mask, 1)
    inside = padded[1:-1, 1:-1]
    points = []
    for axis in (0, 1):
        for step in (-1, 1):
            neighbour = np.roll(padded, -step, axis=axis)[1:-1, 1:-1]
            edge = np.argwhere(inside & ~neighbour).astype(np.float64)
            edge[:, axis] += 0.5 * step
            points.append(edge)
    return np.concatenate(points)


def _longest_chord(points_mm: np.ndarray) -> float:
    """Largest distance between two of the points (via their convex hull when there are many)."""
    if len(points_mm) < 2:
        return 0.0
    if len(points_mm) > 64:
        try:
            points_mm = points_mm[spatial.ConvexHull(points_mm).vertices]
        except spatial.QhullError:  # all on one line: the extreme points along it are enough
            pass
    return float(spatial.distance.pdist(points_mm).max())


def axial_diameters(labels_ras: np.ndarray, n: int, ras_affine: np.ndarray) -> np.ndarray:
    """Longest axial diameter in mm of lesions 1..n of a label array in RAS axis order.

    Args:
        labels_ras: lesion labels with axes (R, A, S): axial slices are ``[:, :, k]``.
        n: number of lesions.
        ras_affine: the array's voxel -> world affine (in-plane distances use its first two columns).

    Returns:
        ``(n,)`` float64, entry i for lesion i + 1.
    """
    in_plane = np.asarray(ras_affine, dtype=np.float64)[:3, :2]
    result = np.zeros(n, dtype=np.float64)
    for index, box in enumerate(ndimage.find_objects(labels_ras, max_label=n)):
        if box is None:
            continue
        lesion = labels_ras[box] == index + 1
        for k in range(lesion.shape[2]):
            if lesion[:, :, k].any():
                points = _outline_points(lesion[:, :, k]) @ in_plane.T
                result[index] = max(result[index], _longest_chord(points))
    return result


def lesion_table(mask: np.ndarray, affine: np.ndarray) -> list[dict[str, Any]]:
    """Every lesion of a tumour mask, largest first.

    Args:
        mask: tumour mask on a CT's grid (non-zero = tumour).
        affine: the grid's voxel -> RAS mm affine.

    Returns:
        One dict per lesion: ``volume_ml``, ``diameter_mm`` (longest axial, RECIST), ``centroid_mm``
        (world RAS, [x, y, z]) and ``voxels``.
    """
    mask = as_bool(mask)
    box = bounding_box(mask)
    if box is None:
        return []
    affine = np.asarray(affine, dtype=np.float64)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    labels, n = label_lesions(mask)
    ras_labels, ras_affine = to_ras(labels, affine)
    diameters = axial_diameters(np.ascontiguousarray(ras_labels), n, ras_affine)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    index = np.indices(labels[box].shape).reshape(3, -1) + np.array([s.start for s in box])[:, None]
    flat = labels[box].ravel()
    sums = np.stack([np.bincount(flat, weights=axis, minlength=n + 1) for axis in index])
    centres = sums[:, 1:] / np.maximum(counts[1:], 1)
    world = affine[:3, :3] @ centres + affine[:3, 3:4]
    table = [{"volume_ml": float(counts[i + 1] * voxel_ml), "diameter_mm": float(diameters[i]),
              "centroid_mm": [float(v) for v in world[:, i]], "voxels": int(counts[i + 1])} for i in range(n)]
    return sorted(table, key=lambda row: -row["voxels"])
