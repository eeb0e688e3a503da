"""`livseg predict` output types: DICOM SEG round trip on real DICOM, probabilities, and the checks
that refuse what an input cannot have."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import write_case

from livseg.cli import main
from livseg.data.io.dicom import dicom_series_files
from livseg.data.io.volume import load_labels, load_volume
from livseg.inference.segment import segment


@pytest.mark.slow
def test_dicom_seg_round_trip_on_ircadb(checkpoint: Path, shared_data: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    dicom = shared_data / "real" / "ircadb-01-patient1" / "PATIENT_DICOM"
    out = tmp_path / "out"
    volume = load_volume(dicom)
    # The TINY test model is barely trained (its probabilities vary by a few thousandths), so a
    # threshold at its 80th percentile gives a mask that is neither empty nor full.
    probability = segment(volume, checkpoint, device="cpu", keep_probabilities=True).input_probabilities["liver"]
    threshold = float(np.quantile(probability, 0.8))
    rc = main(["predict", str(dicom), "--checkpoint", str(checkpoint), "-o", str(out), "--device", "cpu",
               "--output-type", "both", "--save-probabilities", "--threshold", repr(threshold)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "ircadb-01-patient1_liver.nii.gz", "ircadb-01-patient1_liver_probability.nii.gz", "ircadb-01-patient1_seg.dcm",
        "ircadb-01-patient1_stats.json"]
    mask_file = nib.load(str(out / "ircadb-01-patient1_liver.nii.gz"))
    mask = np.asarray(mask_file.dataobj)
    assert 0.001 < mask.mean() < 0.5, mask.mean()  # a real test needs a non-trivial mask

    seg_path = out / "ircadb-01-patient1_seg.dcm"
    np.testing.assert_array_equal(load_labels(seg_path, like=volume), mask)  # voxel for voxel, same grid
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pydicom.dcmread(seg_path)
        hd.seg.segread(seg_path)
    assert ds.Modality == "SEG" and [s.SegmentLabel for s in ds.SegmentSequence] == ["Liver"]
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in dicom_series_files(dicom, None)]
    referenced = [item.ReferencedSOPInstanceUID for item in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert sorted(referenced) == sorted(s.SOPInstanceUID for s in sources) and len(referenced) == 129
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert ds.PatientName == sources[0].PatientName and ds.StudyInstanceUID == sources[0].StudyInstanceUID
    # one frame per source slice that holds liver
    assert ds.NumberOfFrames == int(np.count_nonzero(mask.any(axis=(0, 1))))

    probability = nib.load(str(out / "ircadb-01-patient1_liver_probability.nii.gz"))
    assert probability.get_data_dtype() == np.uint16 and probability.shape == volume.shape
    np.testing.assert_allclose(probability.affine, volume.affine, atol=1e-4)
    values = probability.get_fdata(dtype=np.float32)
    assert 0.0 <= values.min() and values.max() <= 1.0
    stats = json.loads((out / "ircadb-01-patient1_stats.json").read_text())
    assert stats["outputs"] == {"mask": "ircadb-01-patient1_liver.nii.gz", "seg": "ircadb-01-patient1_seg.dcm",
                                "stats": "ircadb-01-patient1_stats.json",
                                "probability_liver": "ircadb-01-patient1_liver_probability.nii.gz"}


def test_probabilities_are_the_map_the_raw_mask_thresholds(checkpoint: Path, tmp_path: Path) -> None:
    write_case(tmp_path / "in", 0, shape=(30, 22, 13))
    image, out = tmp_path / "in" / "volume-0.nii.gz", tmp_path / "out"
    expected = segment(load_volume(image), checkpoint, device="cpu", keep_probabilities=True).input_probabilities["liver"]
    threshold = float(np.median(expected))  # the TINY model's map is nearly flat: cut it in half
    assert main(["predict", str(image), "--checkpoint", str(checkpoint), "-o", str(out), "--save-probabilities",
                 "--no-postprocess", "--threshold", repr(threshold)]) == 0
    mask = np.asarray(nib.load(str(out / "volume-0_liver.nii.gz")).dataobj)
    np.testing.assert_array_equal(mask == 1, expected >= threshold)
    assert 0.3 < mask.mean() < 0.7
    probability = nib.load(str(out / "volume-0_liver_probability.nii.gz"))
    assert probability.get_data_dtype() == np.uint16  # NIfTI has no float16: two bytes, scale 1/65535
    np.testing.assert_allclose(probability.affine, nib.load(str(image)).affine)
    assert np.abs(probability.get_fdata(dtype=np.float32) - expected).max() <= 0.5 / 65535 + 1e-7


@pytest.mark.parametrize("output_type", ["dicom-seg", "both"])
def test_dicom_seg_for_nifti_input_is_refused_before_any_work(
    output_type: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_case(tmp_path / "in", 0)
    out = tmp_path / "out"
    # the checkpoint does not exist: the refusal must come before the model is loaded
    rc = main(["predict", str(tmp_path / "in" / "volume-0.nii.gz"), "--checkpoint", str(tmp_path / "absent.pt"),
               "-o", str(out), "--output-type", output_type])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("livseg predict: error: --output-type") and "DICOM series" in err
    assert not out.exists()
