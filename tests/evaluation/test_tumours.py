"""livseg.evaluation.tumours: per-case tumour metrics and their summary, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livseg.evaluation.tumours import score_tumours, summarize_tumours


def _case(tumour_ref: slice | None, tumour_pred: slice | None) -> tuple[np.ndarray, np.ndarray]:
    """Reference and prediction on a (30, 5, 5) grid at 1 mm: liver (tumour included) = 100 voxels
    (x 0..24, y and z 1..2), tumour a run along x at (y, z) = (2, 2)."""
    ref = np.zeros((30, 5, 5), np.uint8)
    ref[0:25, 1:3, 1:3] = 1  # 25 x 2 x 2 = 100 voxels of liver
    pred = ref.copy()
    if tumour_ref is not None:
        ref[tumour_ref, 2, 2] = 2
    if tumour_pred is not None:
        pred[tumour_pred, 2, 2] = 2
    return pred, ref


def test_tumour_metrics_of_two_cases() -> None:
    # case 1: reference lesion x 2..11 (10 voxels, 10 mm), predicted x 6..13 (8 voxels, 6 shared)
    one = score_tumours(*_case(slice(2, 12), slice(6, 14)), np.eye(4))
    assert one["tumour_dice"] == pytest.approx(2 * 6 / (8 + 10))
    assert one["burden_pred_pct"] == pytest.approx(8.0) and one["burden_ref_pct"] == pytest.approx(10.0)
    assert one["burden_error_pct"] == pytest.approx(-2.0)
    assert one["tumour_volume_ref_ml"] == pytest.approx(0.010)
    assert (one["lesions_ref"], one["lesions_detected"], one["lesions_ref_10mm"], one["lesions_detected_10mm"],
            one["lesions_pred"], one["lesions_fp"]) == (1, 1, 1, 1, 1, 0)
    # case 2: no reference tumour, a 3-voxel false positive
    two = score_tumours(*_case(None, slice(20, 23)), np.eye(4))
    assert math.isnan(two["tumour_dice"])
    assert (two["lesions_ref"], two["lesions_pred"], two["lesions_fp"]) == (0, 1, 1)
    assert two["burden_error_pct"] == pytest.approx(3.0)

    summary = summarize_tumours([one, two])
    assert summary["n_cases"] == 2 and summary["n_cases_with_tumour"] == 1
    assert summary["dice_per_case"]["mean"] == pytest.approx(2 / 3)
    assert summary["dice_global"] == pytest.approx(12 / 21)  # 2 * 6 / (8 + 10 + 3)
    assert summary["precision"] == 0.5 and summary["recall"] == 1.0 and summary["recall_10mm"] == 1.0
    assert summary["recall_below_10mm"] is None  # no small reference lesion
    assert summary["fp_per_case"] == 0.5
    assert summary["burden_abs_error_pct"] == pytest.approx(2.5) and summary["burden_error_pct"] == pytest.approx(0.5)


def test_a_case_without_any_tumour_is_perfect_but_has_no_dice() -> None:
    row = score_tumours(*_case(None, None), np.eye(4))
    summary = summarize_tumours([row])
    assert summary["dice_per_case"]["mean"] is None and summary["dice_global"] == 1.0
    assert summary["precision"] is None and summary["recall"] is None and summary["fp_per_case"] == 0.0
