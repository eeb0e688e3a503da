"""livseg.evaluation.lesions: lesion-wise matching of a prediction against a reference (LiTS)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import voxel_mask as _mask

from livseg.evaluation.lesions import match_lesions


def test_lesion_matching_table() -> None:
    """Reference A (10 voxels), B (10), C (4) along x; predictions P1..P4:

    P1 covers 6 of A's 10 (> half): detects A.       P2 is 5 voxels inside B (exactly half of B): B is
    missed, but P2 lies wholly in B: not a false alarm.  P4 covers all of C (and 10 more voxels):
    detects C.  P3 touches nothing: the one false positive.
    """
    ref = _mask((70, 5, 5), (slice(2, 12), 2, 2), (slice(20, 30), 2, 2), (slice(40, 44), 2, 2))
    pred = _mask((70, 5, 5), (slice(6, 14), 2, 2), (slice(20, 25), 2, 2), (slice(60, 63), 2, 2),
                 (slice(40, 54), 2, 2))
    match = match_lesions(pred, ref, np.eye(4))
    assert match.ref_detected.tolist() == [True, False, True]  # A, B, C in array order
    assert match.ref_diameter_mm.tolist() == [10.0, 10.0, 4.0]
    assert match.pred_correct.tolist() == [True, True, True, False]  # P1, P2, P4, P3 in array order
    assert match.false_positives == 1
    big = match.ref_diameter_mm >= 10
    assert match.ref_detected[big].mean() == 0.5 and match.ref_detected[~big].mean() == 1.0


def test_matching_of_empty_masks() -> None:
    empty = np.zeros((5, 5, 5), bool)
    match = match_lesions(empty, empty, np.eye(4))
    assert match.ref_detected.size == 0 and match.pred_correct.size == 0 and match.false_positives == 0
    match = match_lesions(_mask((5, 5, 5), (2, 2, 2)), empty, np.eye(4))
    assert match.pred_correct.tolist() == [False] and match.false_positives == 1
    with pytest.raises(ValueError, match="differs"):
        match_lesions(empty, np.zeros((4, 5, 5), bool), np.eye(4))
