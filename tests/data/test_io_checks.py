"""Issue 24's bad inputs at the I/O layer: headers that would give a silently wrong geometry,
DICOM series that are not one CT stack, and inputs that cannot be opened. Each must raise its
own exception from livseg.errors with a message that says what is wrong (the CLI's one line and
exit 2 are tested in tests/test_cli_bad_input.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import nifti_with_header

from livseg.data.io.volume import Volume, load_labels, load_volume
from livseg.errors import (
    CorruptFileError,
    GeometryError,
    GridMismatchError,
    InputFileNotFoundError,
    ModalityError,
    UnreadableInputError,
    VoxelTypeError,
)

AFFINE = np.diag([2.0, 3.0, 4.0, 1.0])
CT = np.full((8, 8, 8), -1000, np.int16)


# ----------------------------------------------------------------------------- NIfTI headers


@pytest.mark.parametrize(
    "fields, message",
    [  # case 2: no orientation at all, and a negative pixdim without an sform
        (dict(qform_code=0, sform_code=0), r"the header holds no orientation \(qform_code and sform_code are 0\), so "
                                           r"left and right cannot be told apart"),
        (dict(sform_code=0, qform_code=1, pixdim={1: -2.0}), r"negative voxel size in the header \(pixdim "
                                                             r"\[-2.0, 3.0, 4.0\]\) and no sform"),
        # case 8: non-finite geometry, in the sform and in the pixdim a qform uses
        (dict(srow_x={0: np.nan}), r"the voxel-to-world affine holds NaN or infinite values"),
        (dict(srow_y={3: np.inf}), r"the voxel-to-world affine holds NaN or infinite values"),
        (dict(sform_code=0, qform_code=1, pixdim={2: np.nan}), r"voxel size in the header is not finite"),
        # case 3: a sheared affine (refused as gantry tilt is, rather than resampled)
        (dict(srow_x={1: 1.5}), r"sheared voxel grid: array axes 0 and 1 meet at 63.4 degrees, not 90"),
        # case 4: implausible spacings, also those that a unit makes so
        (dict(srow_z={2: 0.01}), r"0.01 mm along array axis 2 is outside the 0.05-50 mm of any CT"),
        (dict(srow_x={0: 60.0}), r"60 mm along array axis 0 is outside the 0.05-50 mm"),
        (dict(xyzt_units=1), r"2000 mm along array axis 0 is outside the 0.05-50 mm of any CT; the header's unit or "
                             r"spacing is wrong \(NIfTI: xyzt_units"),
        # case 9: the affine of a scan in metres read as millimetres (x1000): refused before resampling
        (dict(srow_x={0: 2000.0}, srow_y={1: 3000.0}, srow_z={2: 4000.0}), r"2000 mm along array axis 0 is outside"),
    ],
    ids=["no orientation", "negative pixdim", "NaN sform", "inf sform", "NaN pixdim", "shear", "0.01 mm", "60 mm",
         "metres", "affine x1000"],
)
def test_headers_without_a_trustworthy_grid_are_refused(fields, message, tmp_path: Path) -> None:  # noqa: ANN001
    path = nifti_with_header(tmp_path / "ct.nii", CT, AFFINE, **fields)
    with pytest.raises(GeometryError, match=message):
        load_volume(path)
    with pytest.raises(GeometryError, match=message):  # a label map gets the same checks
        load_labels(path, allowed=None)


@pytest.mark.parametrize("unit, code", [("metres", 1), ("micrometres", 3)])
def test_nifti_units_are_honoured(unit: str, code: int, tmp_path: Path) -> None:
    # case 4: 0.0007 m and 700 um are both 0.7 mm; with the voxels' volume follows the liver's
    scale = 0.001 if code == 1 else 1000.0  # millimetres -> the file's unit
    affine = np.diag([0.7 * scale] * 3 + [1.0])
    affine[:3, 3] = np.array([100.0, 200.0, 300.0]) * scale
    volume = load_volume(nifti_with_header(tmp_path / f"{unit}.nii", CT, affine, xyzt_units=code))
    assert volume.spacing == pytest.approx((0.7, 0.7, 0.7), rel=1e-5)
    assert volume.affine[:3, 3] == pytest.approx((100.0, 200.0, 300.0), rel=1e-5)  # the origin is converted too
    assert volume.voxel_volume_ml == pytest.approx(0.7**3 / 1000, rel=1e-5)


def test_voxel_volume_is_the_determinant() -> None:
    # case 3: column norms of a sheared affine overstate a voxel (1242 mL instead of 1111 mL in the
    # trial); |det| is right for every affine, and equals the product of spacings on a rectangular grid
    sheared = np.array(AFFINE)
    sheared[0, 1] = 1.5
    assert Volume(np.zeros((2, 2, 2), np.float32), sheared).voxel_volume_ml == pytest.approx(0.024)
    rotated = np.eye(4)
    rotated[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([0.8, 0.8, 2.5])
    assert Volume(np.zeros((2, 2, 2), np.float32), rotated).voxel_volume_ml == pytest.approx(0.0016)


def test_rgb_voxels_are_refused(tmp_path: Path) -> None:
    # case 15: a colour NIfTI gave numpy's DTypePromotionError
    rgb = np.zeros((8, 8, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, AFFINE), str(tmp_path / "rgb.nii.gz"))
    with pytest.raises(VoxelTypeError, match=r"rgb.nii.gz: voxels are 3-channel colours \(R, G, B\); expected one HU "
                                             r"value per voxel"):
        load_volume(tmp_path / "rgb.nii.gz")


def test_label_grid_mismatch_prints_the_origins(tmp_path: Path) -> None:
    # case 15: a shifted origin: shapes and spacings agree, so the message must show what differs
    nib.save(nib.Nifti1Image(CT, AFFINE), str(tmp_path / "ct.nii.gz"))
    shifted = np.array(AFFINE)
    shifted[:3, 3] = (5.0, 0.0, 0.0)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), shifted), str(tmp_path / "seg.nii.gz"))
    with pytest.raises(GridMismatchError, match=r"\(spacing 2 x 3 x 4 mm, origin \(5.00, 0.00, 0.00\) mm\) does not "
                                                r"match the CT grid \(8, 8, 8\) \(spacing 2 x 3 x 4 mm, origin "
                                                r"\(0.00, 0.00, 0.00\) mm\)"):
        load_labels(tmp_path / "seg.nii.gz", like=load_volume(tmp_path / "ct.nii.gz"))


# ----------------------------------------------------------------------------- inputs that cannot be opened


def test_symlink_loop_and_dangling_link_are_named(tmp_path: Path) -> None:
    os.symlink(tmp_path / "b.nii.gz", tmp_path / "a.nii.gz")
    os.symlink(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    with pytest.raises(UnreadableInputError, match=r"a.nii.gz' cannot be opened: a symbolic-link loop"):
        load_volume(tmp_path / "a.nii.gz")
    os.symlink(tmp_path / "gone.nii.gz", tmp_path / "dangling.nii.gz")
    with pytest.raises(InputFileNotFoundError, match=r"dangling.nii.gz' \(a symbolic link to a missing target\)"):
        load_volume(tmp_path / "dangling.nii.gz")


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "ct.nii")  # opening it would wait for a writer forever
    with pytest.raises(UnreadableInputError, match=r"ct.nii' is not a file or a folder \(a device, FIFO or socket\)"):
        load_volume(tmp_path / "ct.nii")


def test_permission_denied_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # root reads any file, so the denial is simulated where the file is opened
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(CT, AFFINE), str(path))
    real_open = open

    def denying_open(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denying_open)
    with pytest.raises(UnreadableInputError, match=r"ct.nii.gz' cannot be read: permission denied$"):
        load_volume(path)


# ----------------------------------------------------------------------------- DICOM series that are not one CT stack


@pytest.fixture
def ircadb_slices(shared_data: Path, tmp_path: Path):  # noqa: ANN201
    """A function copying ten consecutive IRCADb slices into a new folder, with ``edit(dataset)``
    applied to the slice at ``index`` (every slice for index None)."""
    import pydicom
    import SimpleITK as sitk

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(shared_data / "real/ircadb-01-patient1/PATIENT_DICOM"))

    def copy(name: str, edit=None, index: int | None = 4) -> Path:  # noqa: ANN001
        folder = tmp_path / name
        folder.mkdir()
        for k, file in enumerate(files[40:50]):
            if edit is None or (index is not None and k != index):
                shutil.copy(file, folder / Path(file).name)
                continue
            ds = pydicom.dcmread(file)
            edit(ds)
            ds.save_as(folder / Path(file).name)
        return folder

    return copy


def _pixel_spacing(ds) -> None:  # noqa: ANN001
    ds.PixelSpacing = [0.8, 0.8]


def _quarter(ds) -> None:  # noqa: ANN001
    ds.PixelData = ds.pixel_array[:256, :256].copy().tobytes()
    ds.Rows, ds.Columns = 256, 256


def _no_spacing(ds) -> None:  # noqa: ANN001
    del ds.PixelSpacing


def _mr(ds) -> None:  # noqa: ANN001
    ds.Modality, ds.SOPClassUID = "MR", "1.2.840.10008.5.1.4.1.1.4"


@pytest.mark.parametrize(
    "edit, index, error, message",
    [  # case 1: SimpleITK would use the first slice's PixelSpacing for all
        (_pixel_spacing, 4, GeometryError, r"slices have different pixel spacings: 0.57 x 0.57 mm in 9 slices, 0.8 x "
                                           r"0.8 mm in .*image_\d+ \(1 slice\(s\)\)"),
        # case 15: a slice of another size (ITK's message was a dump of its regions)
        (_quarter, 4, GeometryError, r"slices have different sizes: 512 x 512 pixels \(rows x columns\) in 9 slices, "
                                     r"256 x 256 in .*image_\d+"),
        # case 5: one MR slice in a CT series, and an all-MR series
        (_mr, 4, ModalityError, r"1 of 10 slices are Modality MR, not CT \(e.g. .*image_\d+\); livseg segments the "
                                r"liver in CT only; take them out of the series"),
        (_mr, None, ModalityError, r"the series is Modality MR, not CT"),
        # found in the hostile pass: without PixelSpacing SimpleITK takes 1 mm
        (_no_spacing, None, GeometryError, r"the slices have no PixelSpacing \(0028,0030\), so the pixel size is "
                                           r"unknown; livseg will not guess it"),
    ],
    ids=["pixel spacing", "slice size", "one MR slice", "MR series", "no pixel spacing"],
)
def test_dicom_series_that_are_not_one_ct_stack(ircadb_slices, edit, index, error, message) -> None:  # noqa: ANN001
    with pytest.raises(error, match=message):
        load_volume(ircadb_slices("series", edit, index))


def test_mr_sop_class_alone_is_refused(ircadb_slices) -> None:  # noqa: ANN001
    def sop(ds) -> None:  # noqa: ANN001
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"

    with pytest.raises(ModalityError, match=r"1 of 10 slices are SOP class 1.2.840.10008.5.1.4.1.1.4 \(MR Image "
                                            r"Storage\), not CT"):
        load_volume(ircadb_slices("series", sop, 7))


def test_damaged_dicom_file_is_named(ircadb_slices) -> None:  # noqa: ANN001
    # case 15: GDCM leaves a truncated slice out of the series; the gap it leaves is not the cause
    folder = ircadb_slices("series")
    damaged = sorted(folder.iterdir())[3]
    damaged.write_bytes(damaged.read_bytes()[:300_000])
    with pytest.raises(CorruptFileError, match=rf"{damaged.name}: damaged DICOM file \(ValueError: The number of "
                                               r"bytes of pixel data is less than expected"):
        load_volume(folder)
    assert load_volume(ircadb_slices("whole")).shape == (512, 512, 10)  # the untouched copy reads


def test_a_label_series_may_have_any_modality(tmp_path: Path) -> None:
    import pydicom
    from helpers import write_dicom_series

    folder = write_dicom_series(tmp_path / "mask", [(0, 0, 2.0 * k) for k in range(8)])
    for file in folder.iterdir():  # a mask stored as "other" images, as IRCADb's are
        ds = pydicom.dcmread(file)
        ds.Modality = "OT"
        ds.save_as(file)
    assert np.unique(load_labels(folder, allowed=None)).tolist() == [10 * k for k in range(8)]
    with pytest.raises(ModalityError, match=r"the series is Modality OT, not CT"):
        load_volume(folder)
