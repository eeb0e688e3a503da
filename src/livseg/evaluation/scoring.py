"""Scores of one case on one grid, and their summaries over cases (see :mod:`livseg.evaluation.evaluate`).

``score_case`` gives every metric of :data:`METRICS` plus the voxel counts that the global Dice
needs; ``score_network_grid`` is the paper's measurement on the network grid; ``summarize`` gives
mean, std (ddof=0) and median over the finite values of each metric, with the global Dice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from livseg.config import PreprocessConfig
from livseg.data.masks import as_bool
from livseg.evaluation.metrics import case_metrics

if TYPE_CHECKING:  # preprocessing imports torch: only where a CT is evaluated
    from livseg.data.preprocessing import GridMap

__all__ = ["GRIDS", "METRICS", "QUALITY_COLUMNS", "SUMMARY_NOTE", "network_grid_spacing", "quality_note", "score_case",
           "score_network_grid", "summarize", "summarize_quality", "tumour_note"]

GRIDS = ("network_grid", "original_grid", "stage1_original_grid")
METRICS = (
    "dice", "jaccard", "voe", "rvd", "assd", "mssd", "hd95", "voxel_accuracy", "volume_pred_ml", "volume_ref_ml",
)
COUNTS = ("n_pred", "n_ref", "n_overlap")  # voxel counts kept per case for the global Dice
QUALITY_COLUMNS = ("predicted_dice", "review")  # the quality estimate beside the actual Dice (original grid)
BAD_DICE, GOOD_DICE = 0.90, 0.95  # a mask under BAD_DICE should be flagged; one at GOOD_DICE or more should not
SUMMARY_NOTE = (
    "mean, std (ddof=0) and median over cases with a finite value; n_nonfinite counts the cases "
    "left out (inf surface distances or RVD when exactly one of prediction and reference is empty)"
)



def score_case(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one case on one grid, plus the voxel counts that the
    global Dice needs (``n_pred``, ``n_ref``, ``n_overlap``).

    Args:
        pred: predicted mask (non-zero = liver).
        ref: reference mask on the same grid.
        spacing: voxel size in mm per array axis.

    Raises:
        GridMismatchError: the shapes differ.
    """
    pred, ref = as_bool(pred), as_bool(ref)
    result = {key: float(value) for key, value in case_metrics(pred, ref, spacing).items()}
    result.update(
        n_pred=int(np.count_nonzero(pred)),
        n_ref=int(np.count_nonzero(ref)),
        n_overlap=int(np.count_nonzero(pred & ref)),
    )
    return result


def network_grid_spacing(
    shape: Sequence[int], spacing: Sequence[float], grid_shape: Sequence[int]
) -> tuple[float, float, float]:
    """Spacing in mm of the network grid: original extent / grid shape, per axis."""
    return tuple(float(n) * float(s) / float(g) for n, s, g in zip(shape, spacing, grid_shape))  # type: ignore[return-value]


def score_network_grid(
    probabilities: np.ndarray,
    labels: np.ndarray,
    affine: np.ndarray,
    config: PreprocessConfig,
    *,
    threshold: float = 0.5,
    grid: GridMap | None = None,
) -> dict[str, float]:
    """The paper's measurement: ``probabilities >= threshold`` on the network grid versus the
    label map resampled there (:func:`livseg.data.preprocessing.preprocess_labels`: nearest
    neighbour on the paper's grid, label > 0), no post-processing.

    Args:
        probabilities: network output on the network grid.
        labels: label map on the CT's own grid (0/1/2).
        affine: the CT's affine (its spacing, converted with :func:`network_grid_spacing`, and
            its orientation, when ``config.reorient``).
        config: the checkpoint's preprocessing config.
        threshold: probability threshold (paper: 0.5).
        grid: the CT's network grid (``Segmentation.grid``); needed for a body crop or a
            fixed-spacing grid.
    """
    from livseg.data.io.volume import spacing_from_affine
    from livseg.data.preprocessing import network_view, preprocess_labels

    oriented, oriented_affine = network_view(labels, affine, config)
    ref = preprocess_labels(oriented, replace(config, reorient=False), grid=grid)
    spacing = spacing_from_affine(oriented_affine)
    if grid is not None:
        grid_spacing = grid.spacing(spacing)
    else:
        grid_spacing = network_grid_spacing(oriented.shape, spacing, config.target_shape)
    return score_case(probabilities >= threshold, ref, grid_spacing)


def _stats(values: Iterable[float]) -> dict[str, Any]:
    array = np.asarray(list(values), dtype=np.float64)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return {"mean": None, "std": None, "median": None, "n": 0, "n_nonfinite": int(array.size)}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "median": float(np.median(finite)),
        "n": int(finite.size),
        "n_nonfinite": int(array.size - finite.size),
    }


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summaries per grid from per-case rows (each with ``grid``, the metrics and the counts).

    Returns:
        ``{grid: {"n_cases", "global_dice", "metrics": {metric: {mean, std, median, n,
        n_nonfinite}}}}`` for every grid present; ``null`` statistics where no case is finite.
    """
    summary: dict[str, Any] = {}
    for grid in GRIDS:
        mine = [row for row in rows if row.get("grid") == grid]
        if not mine:
            continue
        total = sum(row["n_pred"] + row["n_ref"] for row in mine)
        overlap = sum(row["n_overlap"] for row in mine)
        summary[grid] = {
            "n_cases": len(mine),
            "global_dice": 1.0 if total == 0 else 2.0 * overlap / total,
            "metrics": {metric: _stats(row[metric] for row in mine) for metric in METRICS},
        }
    return summary


def tumour_note(tumour: Mapping[str, Any]) -> str:
    """One line of the tumour summary, for reports."""
    def show(value: Any, fmt: str = ".3f") -> str:
        return "n/a" if value is None else format(value, fmt)

    return (f"tumour ({tumour['n_cases_with_tumour']} of {tumour['n_cases']} cases with tumour): Dice per case "
            f"{show(tumour['dice_per_case']['mean'])}, global {show(tumour['dice_global'])}; lesions: recall "
            f"{show(tumour['recall'])} ({tumour['lesions_ref']} reference), >= 10 mm {show(tumour['recall_10mm'])}, "
            f"precision {show(tumour['precision'])}, false positives per case {show(tumour['fp_per_case'], '.2f')}; "
            f"burden error {show(tumour['burden_abs_error_pct'], '.2f')} percentage points (mean absolute)")


def summarize_quality(rows: Sequence[Mapping[str, Any]], *, review_below: float) -> dict[str, Any]:
    """How well the quality estimate matched the actual Dice over cases (original-grid rows with
    ``dice``, ``predicted_dice`` and ``review``).

    Returns:
        ``{"n_cases", "review_below", "spearman"`` (rank correlation of predicted and actual
        Dice; None under 3 cases or when either is constant), ``"flagged"``, ``"below_090"`` /
        ``"below_090_flagged"`` (cases under Dice 0.90, and how many of them were flagged: all
        should be), ``"good"`` / ``"good_flagged"`` (Dice >= 0.95, and how many were flagged
        anyway)``}``.
    """
    from scipy.stats import spearmanr

    actual = np.array([float(r["dice"]) for r in rows])
    predicted = np.array([float(r["predicted_dice"]) for r in rows])
    review = np.array([bool(r["review"]) for r in rows], dtype=bool)
    rho = None
    if len(rows) >= 3 and np.ptp(actual) > 0 and np.ptp(predicted) > 0:
        rho = float(spearmanr(predicted, actual)[0])
    bad, good = actual < BAD_DICE, actual >= GOOD_DICE
    return {"n_cases": len(rows), "review_below": float(review_below), "spearman": rho,
            "flagged": int(review.sum()), "below_090": int(bad.sum()), "below_090_flagged": int((bad & review).sum()),
            "good": int(good.sum()), "good_flagged": int((good & review).sum())}


def quality_note(quality: Mapping[str, Any]) -> str:
    """One line of the quality summary, for reports."""
    rho = "n/a" if quality["spearman"] is None else f"{quality['spearman']:.3f}"
    return (f"quality estimate: Spearman {rho} between predicted and actual Dice over {quality['n_cases']} case(s); "
            f"{quality['flagged']} flagged for review (predicted Dice below {quality['review_below']:.2f}); "
            f"under Dice 0.90: {quality['below_090_flagged']} of {quality['below_090']} flagged; "
            f"Dice 0.95 or more: {quality['good_flagged']} of {quality['good']} flagged")
