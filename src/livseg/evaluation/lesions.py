"""Lesion-wise matching of a predicted tumour mask against a reference, as LiTS scored detection.

Lesions, their volume and RECIST diameter are defined in :mod:`livseg.data.lesions`.

Detection: a reference lesion is detected when one predicted lesion covers more than half of
its voxels (LiTS). A predicted lesion is correct when it detects a reference lesion or lies more
than half inside reference tumour (a fragment of a real lesion is not a false alarm); otherwise
it is a false positive. Precision = correct predicted lesions / predicted lesions; recall =
detected reference lesions / reference lesions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from livseg.data.lesions import axial_diameters, label_lesions
from livseg.data.masks import as_bool, bounding_box
from livseg.data.preprocessing import to_ras

__all__ = ["LesionMatch", "match_lesions"]


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
