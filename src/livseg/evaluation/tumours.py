"""Tumour metrics of a 0/1/2 prediction against a 0/1/2 reference, per case and summarised (LiTS task 2).

Per case (:func:`score_tumours`): tumour Dice (only for cases whose reference has tumour; NaN
otherwise, as LiTS's per-case tumour Dice), the voxel counts for the global tumour Dice, lesion
counts from :func:`livseg.evaluation.lesions.match_lesions` (reference lesions, detected ones, also
for lesions of at least 10 mm longest axial diameter, predicted lesions, false positives),
tumour volumes and the tumour burden (tumour / liver volume, liver = label > 0, in %) of both.

Summary (:func:`summarize_tumours`): mean per-case Dice over the cases with tumour, global Dice
(voxels pooled over all cases), lesion precision and recall pooled over all lesions (recall also
for lesions >= 10 mm and < 10 mm), false-positive lesions per case, and the mean absolute and
mean signed tumour-burden error in percentage points.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from livseg.data.lesions import SIZE_SPLIT_MM
from livseg.evaluation.lesions import match_lesions
from livseg.evaluation.metrics import dice

__all__ = ["TUMOUR_METRICS", "score_tumours", "summarize_tumours"]

TUMOUR_METRICS = (
    "tumour_dice", "tumour_volume_pred_ml", "tumour_volume_ref_ml", "burden_pred_pct", "burden_ref_pct",
    "burden_error_pct", "lesions_ref", "lesions_detected", "lesions_ref_10mm", "lesions_detected_10mm",
    "lesions_pred", "lesions_fp", "t_pred", "t_ref", "t_overlap",
)


def _burden(labels: np.ndarray) -> float:
    liver = np.count_nonzero(labels > 0)
    return 100.0 * np.count_nonzero(labels == 2) / liver if liver else 0.0


def score_tumours(pred: np.ndarray, ref: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    """Tumour metrics of one case (see the module docstring); keys :data:`TUMOUR_METRICS`.

    Args:
        pred: predicted label map (0 background, 1 liver, 2 tumour).
        ref: reference label map on the same grid.
        affine: the grid's voxel -> RAS affine (voxel volume and lesion diameters).

    Raises:
        ValueError: if the shapes differ.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0
    pred_t, ref_t = pred == 2, ref == 2
    n_pred, n_ref = int(np.count_nonzero(pred_t)), int(np.count_nonzero(ref_t))
    match = match_lesions(pred_t, ref_t, affine)
    big = match.ref_diameter_mm >= SIZE_SPLIT_MM
    burden_pred, burden_ref = _burden(pred), _burden(ref)
    return {
        "tumour_dice": dice(pred_t, ref_t) if n_ref else math.nan,
        "tumour_volume_pred_ml": n_pred * voxel_ml,
        "tumour_volume_ref_ml": n_ref * voxel_ml,
        "burden_pred_pct": burden_pred,
        "burden_ref_pct": burden_ref,
        "burden_error_pct": burden_pred - burden_ref,
        "lesions_ref": int(match.ref_detected.size),
        "lesions_detected": int(np.count_nonzero(match.ref_detected)),
        "lesions_ref_10mm": int(np.count_nonzero(big)),
        "lesions_detected_10mm": int(np.count_nonzero(match.ref_detected & big)),
        "lesions_pred": int(match.pred_correct.size),
        "lesions_fp": match.false_positives,
        "t_pred": n_pred,
        "t_ref": n_ref,
        "t_overlap": int(np.count_nonzero(pred_t & ref_t)),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else float(numerator) / float(denominator)


def summarize_tumours(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The tumour summary over cases scored by :func:`score_tumours` (see the module docstring).

    Returns:
        ``n_cases``, ``n_cases_with_tumour``, ``dice_per_case`` (mean, std, median over the cases
        with tumour), ``dice_global``, ``lesions_ref``, ``lesions_pred``, ``precision``, ``recall``,
        ``recall_10mm``, ``recall_below_10mm``, ``fp_per_case``, ``burden_abs_error_pct``,
        ``burden_error_pct``; ``None`` where a ratio has nothing to count.
    """
    def total(key: str) -> float:
        return float(sum(row[key] for row in rows))

    per_case = np.asarray([row["tumour_dice"] for row in rows], dtype=np.float64)
    per_case = per_case[np.isfinite(per_case)]
    errors = np.asarray([row["burden_error_pct"] for row in rows], dtype=np.float64)
    pooled = total("t_pred") + total("t_ref")
    n_pred = total("lesions_pred")
    small_ref = total("lesions_ref") - total("lesions_ref_10mm")
    return {
        "n_cases": len(rows),
        "n_cases_with_tumour": int(per_case.size),
        "dice_per_case": {"mean": float(per_case.mean()) if per_case.size else None,
                          "std": float(per_case.std()) if per_case.size else None,
                          "median": float(np.median(per_case)) if per_case.size else None},
        "dice_global": 1.0 if pooled == 0 else 2.0 * total("t_overlap") / pooled,
        "lesions_ref": int(total("lesions_ref")),
        "lesions_pred": int(n_pred),
        "precision": _ratio(n_pred - total("lesions_fp"), n_pred),
        "recall": _ratio(total("lesions_detected"), total("lesions_ref")),
        "recall_10mm": _ratio(total("lesions_detected_10mm"), total("lesions_ref_10mm")),
        "recall_below_10mm": _ratio(total("lesions_detected") - total("lesions_detected_10mm"), small_ref),
        "fp_per_case": _ratio(total("lesions_fp"), len(rows)),
        "burden_abs_error_pct": float(np.abs(errors).mean()) if errors.size else None,
        "burden_error_pct": float(errors.mean()) if errors.size else None,
    }
