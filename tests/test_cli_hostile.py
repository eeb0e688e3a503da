"""Bad input found in a hostile pass over the CLI beyond issue 24's numbered cases: each gives one
line on stderr and exit 2 and writes nothing (or, where it was an exit 0 with a wrong answer or a
late failure, now works or is refused up front)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import AFFINE, body_ct, refused, write_case, write_dicom_series

from livseg.cli import main


def test_usage_errors_are_one_line(capsys) -> None:  # noqa: ANN001
    for argv, message in [
        (["predict"], r"^livseg predict: error: the following arguments are required: INPUT, -o/--out \(see livseg "
                      r"predict --help\)$"),
        (["predict", "ct.nii.gz", "-o", "out", "--threshold", "abc"], r"argument --threshold: invalid float value: 'abc'"),
        (["predict", "ct.nii.gz", "-o", "out", "--overwrite", "--skip-existing"],
         r"argument --skip-existing: not allowed with argument --overwrite"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and re.search(message, err), err


def test_unreadable_files_say_what_they_are(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (tmp_path / "notes.txt").write_text("hello")
    refused(capsys, ["predict", str(tmp_path / "notes.txt"), "-o", str(tmp_path / "out")],
            r"notes.txt: not an image livseg can read; expected a NIfTI file \(.nii, .nii.gz\), a DICOM series folder")
    header = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), AFFINE).header  # a header that promises 64 G voxels
    header["dim"][1:4] = 4000
    header["vox_offset"] = 352
    (tmp_path / "huge.nii").write_bytes(header.binaryblock + bytes(4) + bytes(1024))
    refused(capsys, ["predict", str(tmp_path / "huge.nii"), "-o", str(tmp_path / "out")],
            r"huge.nii: the header gives shape \(4000, 4000, 4000\), 64,000,000,000 voxels, more than the 2,147,483,648")
    nib.save(nib.Nifti1Image(body_ct(), AFFINE), str(tmp_path / "whole.nii"))
    (tmp_path / "cut.nii").write_bytes((tmp_path / "whole.nii").read_bytes()[:5000])
    refused(capsys, ["predict", str(tmp_path / "cut.nii"), "-o", str(tmp_path / "out")],
            r"cut.nii: truncated: 24 x 20 x 12 int16 voxels need 11,872 bytes, the file has 5,000$")
    refused(capsys, ["phantom", "-o", str(tmp_path / "ph"), "--n", "1", "--seed", "-1"],
            r"seed=-1: expected an integer >= 0", tmp_path / "ph")  # was numpy's ValueError and a traceback


def test_evaluate_refuses_references_without_liver_and_unlabelled_cases(checkpoint: Path, tmp_path: Path,
                                                                         capsys) -> None:  # noqa: ANN001
    for n in range(2):
        write_case(tmp_path / "data", n)
    refused(capsys, ["evaluate", str(tmp_path / "data"), "--checkpoint", str(checkpoint), "--split", "all",
                     "--liver-labels", "5", "-o", str(tmp_path / "out")],
            r"no reference of the 2 case\(s\) holds a liver label \[5\], so every score would be against an empty "
            r"liver", tmp_path / "out")  # was exit 0 with Dice 0
    (tmp_path / "data" / "segmentation-1.nii.gz").unlink()
    refused(capsys, ["evaluate", str(tmp_path / "data"), "--checkpoint", str(checkpoint), "--split", "all", "-o",
                     str(tmp_path / "out")], r"1 of 2 cases have no label, e.g. lits-1 \(.*volume-1.nii.gz\); cannot "
                                             r"evaluate them", tmp_path / "out")


def test_dicom_seg_of_a_series_without_slice_thickness(checkpoint: Path, tmp_path: Path) -> None:
    import pydicom

    series = write_dicom_series(tmp_path / "scan-1", [(0, 0, 2.0 * k) for k in range(8)])  # SliceThickness is optional
    assert "SliceThickness" not in pydicom.dcmread(next(series.iterdir()))
    assert main(["predict", str(series), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "out"), "--output-type",
                 "dicom-seg"]) == 0  # highdicom needed it: "cannot derive a DICOM SEG" after the network had run
    seg = pydicom.dcmread(tmp_path / "out" / "scan-1_seg.dcm")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"


def test_evaluate_into_a_run_folder_is_refused(trained_run: dict[str, Path], tmp_path: Path, capsys) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    shutil.copytree(trained_run["run"], run)
    before = (run / "metrics.csv").read_bytes()
    refused(capsys, ["evaluate", str(trained_run["data"]), "--checkpoint", str(run / "best.pt"), "-o", str(run),
                     "--overwrite"], r"is a training run folder: evaluate's metrics.csv and report would replace the run's")
    assert (run / "metrics.csv").read_bytes() == before
