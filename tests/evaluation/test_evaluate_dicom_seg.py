"""`evaluate` against a DICOM SEG reference: the same scores as against the same mask as NIfTI."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from livseg.data.io.dicom_seg import LIVER, write_dicom_seg
from livseg.data.io.volume import load_labels, load_volume, save_mask
from livseg.evaluation.evaluate import evaluate


@pytest.mark.slow
def test_a_dicom_seg_reference_scores_like_the_same_mask_as_nifti(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "real" / "ircadb-01-patient1"
    ct = load_volume(folder / "PATIENT_DICOM")
    liver = load_labels(folder / "MASKS_DICOM" / "liver", like=ct, select=255)  # the experts' mask, 0/1
    write_dicom_seg(liver, ct, tmp_path / "liver_seg.dcm", segments={1: LIVER})
    save_mask(liver, ct, tmp_path / "liver.nii.gz")
    table = tmp_path / "cases.csv"
    table.write_text("image,label,case_id\n"
                     f"{folder / 'PATIENT_DICOM'},{tmp_path / 'liver_seg.dcm'},seg\n"
                     f"{folder / 'PATIENT_DICOM'},{tmp_path / 'liver.nii.gz'},nifti\n")
    # the built-in model: a near-right mask keeps the surface distances cheap (the tiny test
    # checkpoint's large false-positive surfaces made this one test 300 s of the suite)
    evaluate(None, table, split="all", out_dir=tmp_path / "eval", progress=False, figures=False)
    with (tmp_path / "eval" / "metrics.csv").open() as f:
        rows = {(row["case"], row["grid"]): row for row in csv.DictReader(f)}
    assert float(rows[("seg", "original_grid")]["volume_ref_ml"]) == pytest.approx(1489, rel=0.01)  # data README
    for grid in {g for _, g in rows}:
        seg, nifti = rows[("seg", grid)], rows[("nifti", grid)]
        for key in ("dice", "assd", "volume_ref_ml", "volume_pred_ml", "n_ref", "n_overlap"):
            assert seg[key] == nifti[key], (grid, key)
