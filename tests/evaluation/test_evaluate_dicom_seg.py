"""`evaluate` against a DICOM SEG reference: the same scores as against the same mask as NRRD."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from livseg.evaluation.evaluate import evaluate


def test_a_dicom_seg_reference_scores_like_the_same_mask_as_nrrd(checkpoint: Path, shared_data: Path,
                                                                 tmp_path: Path) -> None:
    folder = shared_data / "real" / "dcmqi-ct-3slice"
    table = tmp_path / "cases.csv"
    table.write_text("image,label,case_id\n"
                     f"{folder / 'ct'},{folder / 'liver_seg.dcm'},seg\n"
                     f"{folder / 'ct'},{folder / 'liver_seg.nrrd'},nrrd\n")
    evaluate(checkpoint, table, split="all", out_dir=tmp_path / "eval", progress=False, figures=False)
    with (tmp_path / "eval" / "metrics.csv").open() as f:
        rows = {(row["case"], row["grid"]): row for row in csv.DictReader(f)}
    # on the CT's own grid the reference is the data README's 107,098 voxels of 0.81 x 0.81 x 1 mm
    assert float(rows[("seg", "original_grid")]["volume_ref_ml"]) == pytest.approx(107_098 * 0.810547**2 / 1000, rel=1e-4)
    for grid in {g for _, g in rows}:
        seg, nrrd = rows[("seg", grid)], rows[("nrrd", grid)]
        for key in ("dice", "volume_ref_ml", "volume_pred_ml", "n_ref", "n_overlap"):
            assert seg[key] == nrrd[key], (grid, key)
