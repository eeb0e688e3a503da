"""livseg.data.io.dicom_seg: DICOM SEG read onto CT grids (a SEG made by dcmqi), written with highdicom
and read back voxel for voxel, codes, references, and bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from livseg.data.io.dicom_seg import LITS_SEGMENTS, LIVER, is_dicom_seg, write_dicom_seg
from livseg.data.io.volume import Volume, load_labels, load_volume, resample_labels_to_grid, save_probability
from livseg.errors import ConfigError, CorruptFileError, GridMismatchError, LabelValueError


@pytest.fixture(scope="module")
def dcmqi(shared_data: Path) -> dict:
    folder = shared_data / "real/dcmqi-ct-3slice"
    ct = load_volume(folder / "ct")
    return {"folder": folder, "ct": ct, "nrrd": load_labels(folder / "liver_seg.nrrd", like=ct)}


def shifted(ct: Volume, voxels: tuple[float, float, float]) -> Volume:
    """The same CT on a grid moved by a number of voxels along its own axes."""
    affine = ct.affine.copy()
    affine[:3, 3] += ct.affine[:3, :3] @ np.asarray(voxels, float)
    return Volume(array=ct.array, affine=affine, source=ct.source)


def read_strictly(path: Path) -> pydicom.Dataset:
    """pydicom and highdicom read the file with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pydicom.dcmread(path)
        hd.seg.segread(path)
    return ds


# ------------------------------------------------------------------------------------ reading


def test_dcmqi_seg_equals_its_nrrd_voxel_for_voxel(dcmqi: dict) -> None:
    seg_path = dcmqi["folder"] / "liver_seg.dcm"
    assert is_dicom_seg(seg_path) and not is_dicom_seg(dcmqi["folder"] / "liver_seg.nrrd")
    on_ct = load_labels(seg_path, like=dcmqi["ct"])
    assert on_ct.shape == (512, 512, 3) and on_ct.dtype == np.uint8
    assert int(on_ct.sum()) == 107_098  # the data README's count
    np.testing.assert_array_equal(on_ct, dcmqi["nrrd"])
    np.testing.assert_array_equal(load_labels(seg_path), dcmqi["nrrd"])  # its own grid is the CT's
    np.testing.assert_array_equal(load_labels(seg_path, like=dcmqi["ct"], select=1), dcmqi["nrrd"])


def test_seg_on_a_shifted_grid_is_placed_by_plane_position(dcmqi: dict) -> None:
    seg_path = dcmqi["folder"] / "liver_seg.dcm"
    # the CT grid one voxel further along x and one slice lower: frames still on voxel centres
    grid = shifted(dcmqi["ct"], (1, 0, -1))
    on_grid = load_labels(seg_path, like=Volume(array=np.zeros((512, 512, 5), np.float32), affine=grid.affine))
    expected = np.zeros((512, 512, 5), np.uint8)
    expected[:511, :, 1:4] = dcmqi["nrrd"][1:, :, :]  # grid voxel i is CT voxel i + 1; slice k is CT slice k - 1
    assert dcmqi["nrrd"][0].sum() == 0  # nothing falls off the edge
    np.testing.assert_array_equal(on_grid, expected)


def test_seg_off_the_grid_is_refused_unless_resampled(dcmqi: dict) -> None:
    seg_path = dcmqi["folder"] / "liver_seg.dcm"
    off = shifted(dcmqi["ct"], (0.3, 0, 0))  # not 0.5: nearest neighbour would face exact ties
    with pytest.raises(GridMismatchError, match="does not match the CT grid"):
        load_labels(seg_path, like=off)
    resampled = load_labels(seg_path, like=off, resample=True)
    nrrd = dcmqi["nrrd"]
    np.testing.assert_array_equal(resampled, resample_labels_to_grid(nrrd, dcmqi["ct"].affine, off.shape, off.affine))
    assert abs(int(resampled.sum()) - 107_098) < 1000


def test_a_seg_is_not_a_ct(dcmqi: dict) -> None:
    with pytest.raises(CorruptFileError, match="is a DICOM SEG"):
        load_volume(dcmqi["folder"] / "liver_seg.dcm")


# ------------------------------------------------------------------------------------ writing


def test_write_read_round_trip_codes_and_references(dcmqi: dict, tmp_path: Path) -> None:
    ct, labels = dcmqi["ct"], dcmqi["nrrd"].copy()
    labels[190:200, 230:240, 1] = 2  # a "tumour" block inside the liver, one slice only
    assert (dcmqi["nrrd"][190:200, 230:240, 1] == 1).all()
    path = write_dicom_seg(labels, ct, tmp_path / "case_seg.dcm")

    np.testing.assert_array_equal(load_labels(path, like=ct), labels)
    ds = read_strictly(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.SegmentationType == "BINARY"
    liver, tumour = ds.SegmentSequence
    assert (liver.SegmentNumber, liver.SegmentLabel, tumour.SegmentNumber) == (1, "Liver", 2)
    code = lambda item: (item.CodeValue, item.CodingSchemeDesignator)  # noqa: E731
    assert code(liver.SegmentedPropertyTypeCodeSequence[0]) == ("10200004", "SCT")  # Liver
    assert code(liver.SegmentedPropertyCategoryCodeSequence[0]) == ("91723000", "SCT")  # Anatomical Structure
    assert code(tumour.SegmentedPropertyTypeCodeSequence[0]) == ("108369006", "SCT")  # Neoplasm
    assert code(tumour.SegmentedPropertyCategoryCodeSequence[0]) == ("49755003", "SCT")  # Morphologically Abnormal Structure
    assert code(tumour.AnatomicRegionSequence[0]) == ("10200004", "SCT")  # in the liver

    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted((dcmqi["folder"] / "ct").iterdir())]
    referenced = {item.ReferencedSOPInstanceUID for item in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID and ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    # liver on 3 slices, tumour on 1: 4 frames, each on the source slice it derives from
    assert ds.NumberOfFrames == 4
    position = {s.SOPInstanceUID: [float(v) for v in s.ImagePositionPatient] for s in sources}
    for frame in ds.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient] == pytest.approx(position[source])


def test_write_liver_only_table_and_empty_mask(dcmqi: dict, tmp_path: Path) -> None:
    ct = dcmqi["ct"]
    path = write_dicom_seg(np.zeros(ct.shape, np.uint8), ct, tmp_path / "empty.dcm", segments={1: LIVER})
    ds = read_strictly(path)
    assert len(ds.SegmentSequence) == 1 and ds.SegmentSequence[0].SegmentLabel == "Liver"
    assert load_labels(path, like=ct).sum() == 0


def test_write_bad_input(dcmqi: dict, tmp_path: Path) -> None:
    ct, labels = dcmqi["ct"], dcmqi["nrrd"]
    with pytest.raises(LabelValueError, match=r"label values \[3\] have no segment"):
        write_dicom_seg(np.where(labels > 0, 3, 0).astype(np.uint8), ct, tmp_path / "a.dcm")
    with pytest.raises(GridMismatchError, match="does not match the volume shape"):
        write_dicom_seg(labels[:, :, :2], ct, tmp_path / "a.dcm")
    with pytest.raises(GridMismatchError, match="does not lie on a slice"):
        write_dicom_seg(labels, shifted(ct, (0, 0, 0.5)), tmp_path / "a.dcm")
    nifti = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ct.array, ct.affine), str(nifti))
    with pytest.raises(ConfigError, match="expected a DICOM series folder"):
        write_dicom_seg(labels, load_volume(nifti), tmp_path / "a.dcm")
    with pytest.raises(ConfigError, match="must run 1, 2"):
        write_dicom_seg(labels, ct, tmp_path / "a.dcm", segments={2: LITS_SEGMENTS[2]})
    assert not list(tmp_path.glob("*.dcm")) and not list(tmp_path.glob(".*"))


# ------------------------------------------------------------------------------------ probabilities


def test_probability_map_is_two_bytes_and_keeps_the_half_threshold(tmp_path: Path) -> None:
    like = Volume(array=np.zeros((3, 2, 2), np.float32), affine=np.diag([0.8, 0.8, 2.5, 1.0]))
    values = np.array([0.0, 1.0, 0.5, np.nextafter(np.float32(0.5), np.float32(0)), 0.25, 1e-9,
                       0.999999, 0.123456, 0.5000001, 0.75, 0.3, 0.9], dtype=np.float32).reshape(like.shape)
    path = save_probability(values, like, tmp_path / "p.nii.gz")
    image = nib.load(str(path))
    assert image.get_data_dtype() == np.uint16
    back = image.get_fdata(dtype=np.float32)
    assert np.abs(back - values).max() <= 0.5 / 65535 + 1e-7
    np.testing.assert_array_equal(back >= 0.5, values >= 0.5)  # 0.49999997 stays below, 0.5 stays at
    np.testing.assert_allclose(image.affine, like.affine)


@pytest.mark.parametrize("stats, description", [
    ({"liver_volume_ml": 1500.0}, "livseg segmentation"),  # no quality estimate in the statistics
    ({"quality": {"review": False, "predicted_dice": 0.95}}, "livseg segmentation"),
    ({"quality": {"review": True, "predicted_dice": 0.81}}, "livseg segmentation [REVIEW]"),
    ({"quality": "not a block"}, "livseg segmentation"),
])
def test_the_seg_series_description_carries_the_review_flag(stats: dict, description: str) -> None:
    from livseg.data.io.dicom_seg import seg_series_description

    assert seg_series_description(stats) == description
