"""livseg.pacs.send against a real Orthanc: IRCADb patient 1 uploaded, segmented through DICOMweb,
and the stored SEG fetched back and compared voxel for voxel with what `livseg predict` writes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from orthanc_server import Orthanc, client_for, copy_series

from livseg.data.io.volume import load_labels, load_volume
from livseg.errors import PacsError, PacsUnavailableError
from livseg.pacs.client import Credentials, PacsClient
from livseg.pacs.send import find_study_series, send

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def uploaded(archive: Orthanc, ircadb_files: list[Path]) -> dict[str, str]:
    assert archive.upload(ircadb_files) == 129
    first = pydicom.dcmread(ircadb_files[0], stop_before_pixels=True)
    return {"study": str(first.StudyInstanceUID), "series": str(first.SeriesInstanceUID)}


def test_send_stores_the_seg_that_predict_writes_into_the_same_study(
        archive: Orthanc, uploaded: dict[str, str], ircadb_files: list[Path], segmenter, tmp_path: Path) -> None:
    from livseg.inference.predict import predict

    result = send(client_for(archive), segmenter, study_uid=uploaded["study"], out_dir=tmp_path / "kept")
    assert result.chosen.series.series_uid == uploaded["series"]
    assert result.chosen.reason == "129 axial slices of 512x512, 1.60 mm apart"
    assert set(result.processed.timings) == {"retrieve", "segment", "write", "store"}

    # the archive now lists a SEG series beside the CT, in the same study
    series = {s["MainDicomTags"]["Modality"]: s for s in archive.series_of_study(uploaded["study"])}
    assert set(series) == {"CT", "SEG"} and len(series["SEG"]["Instances"]) == 1
    stored = tmp_path / "stored_seg.dcm"
    client_for(archive).retrieve_instance(uploaded["study"], result.processed.seg_series_uid, result.processed.seg_uid,
                                          stored)
    seg = pydicom.dcmread(stored)
    assert seg.SOPClassUID == SEGMENTATION_STORAGE and seg.Modality == "SEG"
    assert seg.StudyInstanceUID == uploaded["study"] and seg.SOPInstanceUID == result.processed.seg_uid
    assert [ref.SeriesInstanceUID for ref in seg.ReferencedSeriesSequence] == [uploaded["series"]]
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in ircadb_files}
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Liver"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SNOMED CT liver
    assert seg.SeriesDescription == "livseg segmentation"

    # voxel for voxel what `livseg predict` writes for the same series, read locally
    predict([ircadb_files[0].parent], out_dir=tmp_path / "predict", device="cpu", progress=False)
    ct = load_volume(ircadb_files[0].parent)
    expected = np.asarray(nib.load(tmp_path / "predict" / "ircadb-01-patient1_liver.nii.gz").dataobj)
    from_archive = load_labels(stored, like=ct)
    assert from_archive.shape == (512, 512, 129) and int(expected.sum()) > 2_000_000  # about 1.5 L of 0.52 mm^3 voxels
    np.testing.assert_array_equal(from_archive, expected)

    # -o kept predict's outputs, named after the series, with the archive's address in the stats
    kept = result.processed.outputs
    assert sorted(p.name for p in kept.values()) == sorted(f"{uploaded['series']}_{s}" for s in
                                                           ("liver.nii.gz", "seg.dcm", "stats.json"))
    np.testing.assert_array_equal(np.asarray(nib.load(kept["mask"]).dataobj), expected)
    assert result.processed.stats["pacs"]["seg_uid"] == result.processed.seg_uid
    assert result.processed.stats["input"].endswith(f"/studies/{uploaded['study']}/series/{uploaded['series']}")


def test_the_thinnest_series_of_a_study_is_chosen_and_named(archive: Orthanc, ircadb_files: list[Path],
                                                            tmp_path: Path) -> None:
    study, thin, files = copy_series(ircadb_files[:40], tmp_path / "thin", description="thin", number=3)
    _, thick, thick_files = copy_series(ircadb_files[:40:2], tmp_path / "thick", study_uid=study, description="thick",
                                        number=2)
    _, scout, scout_files = copy_series(ircadb_files[60:61], tmp_path / "scout", study_uid=study, number=1,
                                        image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    archive.upload(files + thick_files + scout_files)
    _, checks = find_study_series(client_for(archive), study_uid=None, series_uid=thick)  # the study found from a series
    assert [(c.series.number, c.usable, c.reason) for c in checks] == [
        (1, False, "a localizer (scout)"),
        (2, True, "20 axial slices of 512x512, 3.20 mm apart"),
        (3, True, "40 axial slices of 512x512, 1.60 mm apart"),
    ]
    from livseg.pacs.select import choose_series

    assert choose_series(checks).series.series_uid == thin


def test_unknown_uids_wrong_credentials_and_a_stopped_archive_give_one_line(archive: Orthanc, segmenter) -> None:
    with pytest.raises(PacsError, match="holds no study 1.2.3.4"):
        send(client_for(archive), segmenter, study_uid="1.2.3.4")
    with pytest.raises(PacsError, match="holds no series 1.2.3.5"):
        send(client_for(archive), segmenter, series_uid="1.2.3.5")
    wrong = PacsClient(archive.dicomweb, credentials=Credentials("livseg", "wrong-password"))
    with pytest.raises(PacsError, match="refused the credentials \\(HTTP 401\\)") as caught:
        send(wrong, segmenter, study_uid="1.2.3.4")
    assert "wrong-password" not in str(caught.value)
    stopped = PacsClient("http://127.0.0.1:1/dicom-web", retries=0)  # nothing listens on port 1
    with pytest.raises(PacsUnavailableError, match="cannot reach the archive"):
        send(stopped, segmenter, study_uid="1.2.3.4")
