"""Overlap and surface metrics on binary masks, in millimetres, as the LiTS challenge reports them.

Masks are numpy arrays with axes (x, y, z) as :mod:`livseg.data.io` gives them; any non-zero voxel is
foreground. ``spacing`` is the voxel size in mm per array axis, in the same order.

Definitions:
    Surface         the mask voxels that have at least one 6-connected (face) neighbour in the
                    background, i.e. ``mask XOR binary_erosion(mask)`` with the cross-shaped
                    structuring element; voxels on the array border count as surface (outside the
                    array is background). This is medpy's definition (``connectivity=1``).
    Surface distance  for every surface voxel of one mask, the Euclidean distance in mm to the
                    nearest surface voxel of the other, voxel indices scaled by ``spacing``. It is
                    the value ``scipy.ndimage.distance_transform_edt(~surface, sampling=spacing)``
                    (medpy's method) gives at that voxel, found with a k-d tree over the surface
                    voxels instead: on a 512 x 512 x 200 liver case it is about 7x faster than two
                    EDTs over the joint bounding box, and a stray false-positive voxel far from the
                    liver, which would blow that box up to the whole volume, costs it nothing. The
                    surfaces are extracted inside the joint bounding box plus a one-voxel margin,
                    which changes no surface voxel.
    ASSD            mean of the pooled distances of both directions (medpy ``assd``, LiTS).
    MSSD            maximum of the pooled distances: the symmetric Hausdorff distance between
                    surfaces (medpy ``hd``; LiTS "maximum symmetric surface distance").
    HD95            95th percentile (numpy's linear interpolation) of the pooled distances of
                    both directions, as medpy ``hd95``. MONAI's ``compute_hausdorff_distance(...,
                    percentile=95)`` differs: it takes the larger of the two directed 95th
                    percentiles, which is >= ours when one direction has the outliers.
    RVD             (|pred| - |ref|) / |ref|, signed as in LiTS (negative = under-segmentation).
    VOE             1 - Jaccard.

Empty masks (decided here, relied on by the reports):
    both empty      dice = jaccard = 1, voe = 0, rvd = 0, assd = mssd = hd95 = 0.0.
    one empty       dice = jaccard = 0, voe = 1, assd = mssd = hd95 = ``inf`` (no surface to
                    measure to; like MONAI and unlike medpy, which raises), rvd = -1 when pred is
                    empty and ``inf`` when ref is empty, as the formula gives.
    Summaries must therefore use ``numpy.isfinite`` / medians, or report the count of infinite
    cases, rather than a plain mean.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage, spatial

from livseg.data.masks import as_bool, bounding_box
from livseg.errors import GridMismatchError

__all__ = [
    "assd",
    "case_metrics",
    "dice",
    "global_dice",
    "hd95",
    "jaccard",
    "mssd",
    "rvd",
    "surface_distances",
    "surface_mask",
    "voe",
    "volume_ml",
    "voxel_accuracy",
]

_CROP_MARGIN = 1  # voxels around the joint bounding box, so erosion sees the background


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = as_bool(pred), as_bool(ref)
    if pred.shape != ref.shape:
        raise GridMismatchError(
            f"prediction shape {pred.shape} differs from reference shape {ref.shape}; "
            f"score on one grid (map the prediction back to the reference grid first)"
        )
    return pred, ref


def _spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be {ndim} positive sizes in mm (one per array axis), got {spacing}")
    return values


def _counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int, int]:
    """``(|pred|, |ref|, |pred ∩ ref|, number of voxels)`` of a checked pair."""
    pred, ref = _pair(pred, ref)
    return np.count_nonzero(pred), np.count_nonzero(ref), np.count_nonzero(pred & ref), pred.size


def _dice(n_pred: int, n_ref: int, n_inter: int) -> float:
    return 1.0 if n_pred + n_ref == 0 else 2.0 * n_inter / (n_pred + n_ref)


def _jaccard(n_pred: int, n_ref: int, n_inter: int) -> float:
    union = n_pred + n_ref - n_inter
    return 1.0 if union == 0 else n_inter / union


def _rvd(n_pred: int, n_ref: int) -> float:
    if n_ref == 0:
        return 0.0 if n_pred == 0 else float("inf")
    return (n_pred - n_ref) / n_ref


def _accuracy(n_pred: int, n_ref: int, n_inter: int, size: int) -> float:
    disagree = n_pred + n_ref - 2 * n_inter  # voxels in exactly one of the masks
    return (size - disagree) / size


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|); 1.0 when both are empty.

    Raises:
        GridMismatchError: if the shapes differ.
    """
    return _dice(*_counts(pred, ref)[:3])


def jaccard(pred: np.ndarray, ref: np.ndarray) -> float:
    """Jaccard index |A∩B| / |A∪B|; 1.0 when both are empty.

    Raises:
        GridMismatchError: if the shapes differ.
    """
    return _jaccard(*_counts(pred, ref)[:3])


def voe(pred: np.ndarray, ref: np.ndarray) -> float:
    """Volumetric overlap error, 1 - Jaccard (0 is perfect).

    Raises:
        GridMismatchError: if the shapes differ.
    """
    return 1.0 - jaccard(pred, ref)


def rvd(pred: np.ndarray, ref: np.ndarray) -> float:
    """Signed relative volume difference (|pred| - |ref|) / |ref|, as LiTS.

    Returns:
        0.0 when both are empty, ``inf`` when only ``ref`` is empty, -1.0 when only ``pred``
        is empty.

    Raises:
        GridMismatchError: if the shapes differ.
    """
    return _rvd(*_counts(pred, ref)[:2])


def voxel_accuracy(pred: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of voxels where prediction and reference agree (the paper's "accuracy").

    Raises:
        GridMismatchError: if the shapes differ.
    """
    return _accuracy(*_counts(pred, ref))


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of the foreground in millilitres (1 mL = 1000 mm^3).

    Raises:
        ValueError: if ``spacing`` does not give one positive size per axis.
    """
    mask = as_bool(mask)
    return np.count_nonzero(mask) * float(np.prod(_spacing(spacing, mask.ndim))) / 1000.0


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a 6-connected background neighbour (array border = background)."""
    mask = as_bool(mask)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each surface voxel of one mask to the nearest surface voxel of the other.

    Args:
        pred: predicted mask.
        ref: reference mask, same shape.
        spacing: voxel size in mm per array axis.

    Returns:
        ``(pred_to_ref, ref_to_pred)``, 1-D float64 arrays with one entry per surface voxel of
        ``pred`` and of ``ref``. Both are empty when both masks are empty; when only one mask is
        empty, the other's surface voxels get ``inf`` and the empty one's array is empty.

    Raises:
        GridMismatchError: if the shapes differ.
        ValueError: if ``spacing`` does not give one positive size per axis.
    """
    pred, ref = _pair(pred, ref)
    sampling = _spacing(spacing, pred.ndim)
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not (has_pred and has_ref):
        # No opposite surface: every existing surface voxel is infinitely far from it.
        n_pred = np.count_nonzero(surface_mask(pred)) if has_pred else 0
        n_ref = np.count_nonzero(surface_mask(ref)) if has_ref else 0
        return np.full(n_pred, np.inf), np.full(n_ref, np.inf)

    box = bounding_box(pred | ref, margin=_CROP_MARGIN)  # both masks are non-empty here
    scale = np.asarray(sampling)
    # Coordinates in mm inside the box; the shift of the box origin cancels in the differences.
    pred_points = np.argwhere(surface_mask(pred[box])) * scale
    ref_points = np.argwhere(surface_mask(ref[box])) * scale
    pred_to_ref = spatial.cKDTree(ref_points).query(pred_points, k=1)[0]
    ref_to_pred = spatial.cKDTree(pred_points).query(ref_points, k=1)[0]
    return np.asarray(pred_to_ref, dtype=np.float64), np.asarray(ref_to_pred, dtype=np.float64)


def _summaries(pred_to_ref: np.ndarray, ref_to_pred: np.ndarray) -> dict[str, float]:
    """ASSD, MSSD and HD95 from both directions' distances, with the empty-mask conventions."""
    pooled = np.concatenate([pred_to_ref, ref_to_pred])
    if pooled.size == 0:  # both masks empty
        return {"assd": 0.0, "mssd": 0.0, "hd95": 0.0}
    if not np.all(np.isfinite(pooled)):  # exactly one mask empty
        return {"assd": float("inf"), "mssd": float("inf"), "hd95": float("inf")}
    return {
        "assd": float(pooled.mean()),
        "mssd": float(pooled.max()),
        "hd95": float(np.percentile(pooled, 95)),
    }


def assd(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm (0 if both empty, inf if one is).

    Raises:
        GridMismatchError: if the shapes differ.
        ValueError: for a bad ``spacing``.
    """
    return _summaries(*surface_distances(pred, ref, spacing))["assd"]


def mssd(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """Maximum symmetric surface distance (surface Hausdorff distance) in mm.

    Raises:
        GridMismatchError: if the shapes differ.
        ValueError: for a bad ``spacing``.
    """
    return _summaries(*surface_distances(pred, ref, spacing))["mssd"]


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """95th percentile of the pooled symmetric surface distances in mm (medpy's ``hd95``).

    Raises:
        GridMismatchError: if the shapes differ.
        ValueError: for a bad ``spacing``.
    """
    return _summaries(*surface_distances(pred, ref, spacing))["hd95"]


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """All metrics of one case, computing the surface distances once.

    Args:
        pred: predicted mask.
        ref: reference mask on the same grid.
        spacing: voxel size in mm per array axis.

    Returns:
        ``dice, jaccard, voe, rvd, assd, mssd, hd95`` (mm), ``voxel_accuracy``,
        ``volume_pred_ml`` and ``volume_ref_ml``, as Python floats (see the module docstring for
        empty masks; distances may be ``inf``).

    Raises:
        GridMismatchError: if the shapes differ.
        ValueError: for a bad ``spacing``.
    """
    pred, ref = _pair(pred, ref)
    n_pred, n_ref, n_inter, size = _counts(pred, ref)
    voxel_ml = float(np.prod(_spacing(spacing, pred.ndim))) / 1000.0
    jac = _jaccard(n_pred, n_ref, n_inter)
    result = {
        "dice": _dice(n_pred, n_ref, n_inter),
        "jaccard": jac,
        "voe": 1.0 - jac,
        "rvd": _rvd(n_pred, n_ref),
    }
    result.update(_summaries(*surface_distances(pred, ref, spacing)))
    result["voxel_accuracy"] = _accuracy(n_pred, n_ref, n_inter, size)
    result["volume_pred_ml"] = n_pred * voxel_ml
    result["volume_ref_ml"] = n_ref * voxel_ml
    return result


def global_dice(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """Dice over all cases pooled, as LiTS "Dice global": sum 2|A∩B| / sum (|A| + |B|).

    Args:
        pairs: ``(pred, ref)`` masks per case; each pair on its own grid.

    Returns:
        The pooled Dice; 1.0 if every mask is empty (or there are no pairs).

    Raises:
        GridMismatchError: if a pair's shapes differ.
    """
    overlap = total = 0
    for pred, ref in pairs:
        pred, ref = _pair(pred, ref)
        overlap += np.count_nonzero(pred & ref)
        total += np.count_nonzero(pred) + np.count_nonzero(ref)
    return 1.0 if total == 0 else 2.0 * overlap / total
