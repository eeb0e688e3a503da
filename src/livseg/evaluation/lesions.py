"""Tumours as lesions: 3D connected components, their size (volume, RECIST diameter, centroid),
and lesion-wise matching of a prediction against a reference, as LiTS scored detection.

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
    Detection       a reference lesion is detected when one predicted lesion covers more than
                    half of its voxels (LiTS). A predicted lesion is correct when it detects a
                    reference lesion or lies more than half inside reference tumour (a fragment
                    of a real lesion is not a false alarm); otherwise it is a false positive.
                    Precision = correct predicted lesions / predicted lesions; recall = detected
                    reference lesions / reference lesions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage, spatial

from livseg.data.masks import as_bool, bounding_box
from livseg.data.preprocessing import to_ras

__all__ = ["LESION_STRUCTURE", "LesionMatch", "label_lesions", "lesion_table", "match_lesions",
           "remove_small_lesions", "axial_diameters"]

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


@dataclass
class LesionMatch:
    """Lesion-wise comparison of one case (see the module docstring).

    Attributes:
        ref_detected: per reference lesion, whether it was detected.
        ref_diameter_mm: per reference lesion, its longest axial diameter.
        pred_correct: per predicted lesion, whether it is correct (not a false positive).
    """

    ref_detected: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    ref_diameter_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pred_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def false_positives(self) -> int:
        return int(np.count_nonzero(~self.pred_correct))


def match_lesions(pred: np.ndarray, ref: np.ndarray, affine: np.ndarray) -> LesionMatch:
    """Match predicted lesions to reference lesions (LiTS: more than half of a reference lesion).

    Args:
        pred: predicted tumour mask.
        ref: reference tumour mask on the same grid.
        affine: the grid's affine (for the reference lesions' diameters).

    Raises:
        ValueError: if the shapes differ.
    """
    pred, ref = as_bool(pred), as_bool(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    box = bounding_box(pred | ref)
    if box is None:
        return LesionMatch()
    pred_labels, n_pred = label_lesions(pred[box])
    ref_labels, n_ref = label_lesions(ref[box])
    pairs = np.bincount((ref_labels.astype(np.int64) * (n_pred + 1) + pred_labels).ravel(),
                        minlength=(n_ref + 1) * (n_pred + 1)).reshape(n_ref + 1, n_pred + 1)
    overlap = pairs[1:, 1:]  # [reference lesion, predicted lesion] voxels in common
    ref_size = pairs[1:, :].sum(axis=1)
    pred_size = pairs[:, 1:].sum(axis=0)
    covers = overlap * 2 > ref_size[:, None]  # predicted lesion p covers more than half of r
    inside = overlap.sum(axis=0) * 2 > pred_size  # p lies more than half in reference tumour
    sub_affine = np.asarray(affine, dtype=np.float64).copy()
    sub_affine[:3, 3] += sub_affine[:3, :3] @ [s.start for s in box]
    ras_labels, ras_affine = to_ras(ref_labels, sub_affine)
    return LesionMatch(
        ref_detected=covers.any(axis=1),
        ref_diameter_mm=axial_diameters(np.ascontiguousarray(ras_labels), n_ref, ras_affine),
        pred_correct=covers.any(axis=0) | inside,
    )
