"""livseg.data.io: real DICOM/NIfTI reading, orientation, round trips and every bad-input case."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from livseg.data.io.nifti import save_nifti
from livseg.data.io.volume import Volume, load_labels, load_volume, save_mask
from livseg.errors import (
    CorruptFileError,
    GeometryError,
    DimensionError,
    EmptyDicomFolderError,
    GridMismatchError,
    InputFileNotFoundError,
    LabelValueError,
    NonFiniteError,
    OutputExistsError,
)


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


# ------------------------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def ircadb_ct(shared_data: Path) -> Volume:
    return load_volume(shared_data / "real/ircadb-01-patient1/PATIENT_DICOM")


def test_ircadb_dicom_geometry_and_hu(ircadb_ct: Volume) -> None:
    assert ircadb_ct.shape == (512, 512, 129)
    assert ircadb_ct.spacing == pytest.approx((0.57, 0.57, 1.6), abs=1e-4)
    assert ircadb_ct.array.dtype == np.float32
    assert ircadb_ct.array.min() >= -1024 and ircadb_ct.array.max() <= 1023
    # rescale slope/intercept applied: air outside the body is about -1000 HU, not 0
    assert ircadb_ct.array[0, 0, 64] < -900


def test_ircadb_liver_mask_volume(ircadb_ct: Volume, shared_data: Path) -> None:
    mask = load_labels(shared_data / "real/ircadb-01-patient1/MASKS_DICOM/liver", like=ircadb_ct, select=255)
    assert mask.shape == ircadb_ct.shape
    assert set(np.unique(mask)) == {0, 1}
    assert mask.sum() * ircadb_ct.voxel_volume_ml == pytest.approx(1489, rel=0.01)


def test_dicom_and_its_nifti_conversion_agree(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "real/totalseg-example/example_ct_dicom"
    dicom = load_volume(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    converted = tmp_path / "converted.nii.gz"
    sitk.WriteImage(reader.Execute(), str(converted))  # SimpleITK writes the RAS NIfTI affine
    nifti = load_volume(converted)
    assert dicom.shape == nifti.shape == (512, 512, 20)
    np.testing.assert_array_equal(dicom.array, nifti.array)
    np.testing.assert_allclose(dicom.affine, nifti.affine, atol=1e-4)
    assert dicom.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))


def test_totalseg_nifti_and_liver_label(shared_data: Path) -> None:
    ct = load_volume(shared_data / "real/totalseg-example/example_ct.nii.gz")
    assert ct.shape == (122, 101, 112) and ct.spacing == pytest.approx((3.0, 3.0, 3.0))
    small = load_volume(shared_data / "real/totalseg-example/example_ct_sm.nii.gz")
    liver = load_labels(shared_data / "real/totalseg-example/example_seg.nii.gz", like=small, select=5)
    assert liver.shape == (122, 101, 30) and liver.dtype == np.uint8
    assert 500 < liver.sum() * small.voxel_volume_ml < 3000
    with pytest.raises(LabelValueError, match=r"labels \[.*\] are outside the allowed set \[0, 1, 2\]"):
        load_labels(shared_data / "real/totalseg-example/example_seg.nii.gz", like=small)


def test_labels_resampled_onto_dicom_grid_by_world_coordinates(shared_data: Path) -> None:
    base = shared_data / "real/totalseg-example"
    ct = load_volume(base / "example_ct_dicom")
    seg_path = base / "example_seg_dicom.nii.gz"
    with pytest.raises(GridMismatchError, match="does not match the CT grid"):
        load_labels(seg_path, like=ct, select=5)
    on_ct = load_labels(seg_path, like=ct, select=5, resample=True)
    native = load_labels(seg_path, select=5)
    # The label file is the same grid with the y axis flipped: same volume, mirrored array.
    assert on_ct.sum() == native.sum() > 0
    np.testing.assert_array_equal(on_ct, native[:, ::-1, :])


def test_multi_series_folder_picks_largest_or_named(shared_data: Path, tmp_path: Path) -> None:
    for name, source in [("a", "real/totalseg-example/example_ct_dicom"), ("b", "real/ircadb-01-patient1/MASKS_DICOM/liver")]:
        (tmp_path / name).mkdir()
        for f in (shared_data / source).iterdir():
            os.symlink(f, tmp_path / name / f.name)
    assert load_volume(tmp_path).shape == (512, 512, 129)
    uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(tmp_path / "a"))[0]
    assert load_volume(tmp_path, series_id=uid).shape == (512, 512, 20)
    with pytest.raises(EmptyDicomFolderError, match="no DICOM series 'nope'"):
        load_volume(tmp_path, series_id="nope")


# ------------------------------------------------------------------------------------ round trips

ROUND_TRIP_AFFINES = {
    "identity": np.eye(4),
    "flipped": np.array([[-0.7, 0, 0, 120.0], [0, 0.7, 0, -80.0], [0, 0, -2.5, 40.0], [0, 0, 0, 1]]),
    "permuted": np.array([[0, 0, 3.0, -10.0], [0.8, 0, 0, 5.0], [0, -0.8, 0, 60.0], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP_AFFINES))
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    affine = ROUND_TRIP_AFFINES[name]
    rng = np.random.default_rng(1)
    ct = Volume(array=rng.normal(0, 100, (9, 8, 7)).astype(np.float32), affine=affine, source="synthetic")
    mask = (rng.random(ct.shape) > 0.5).astype(np.uint8)
    path = save_mask(mask, like=ct, path=tmp_path / "mask.nii.gz")
    image = nib.load(str(path))
    assert image.get_data_dtype() == np.uint8
    np.testing.assert_allclose(image.header.get_zooms(), ct.spacing, rtol=1e-6)
    back = load_labels(path, like=ct)
    np.testing.assert_array_equal(back, mask)
    save_nifti(ct.array, affine, tmp_path / "ct.nii")
    again = load_volume(tmp_path / "ct.nii")
    np.testing.assert_array_equal(again.array, ct.array)
    np.testing.assert_allclose(again.affine, affine, atol=1e-5)
    assert again.spacing == pytest.approx(ct.spacing)


def test_sitk_formats_match_nifti(tmp_path: Path) -> None:
    affine = ROUND_TRIP_AFFINES["flipped"]
    array = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    save_nifti(array, affine, tmp_path / "ct.nii.gz")
    image = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    for suffix in (".mha", ".nrrd"):
        sitk.WriteImage(image, str(tmp_path / f"ct{suffix}"))
        other = load_volume(tmp_path / f"ct{suffix}")
        np.testing.assert_array_equal(other.array, array)
        np.testing.assert_allclose(other.affine, affine, atol=1e-5)


def test_save_mask_refuses_overwrite_and_leaves_no_temp_files(tmp_path: Path) -> None:
    ct = Volume(array=np.zeros((4, 4, 4), np.float32), affine=np.eye(4))
    path = save_mask(np.ones((4, 4, 4), np.uint8), like=ct, path=tmp_path / "m.nii.gz")
    with pytest.raises(OutputExistsError, match="exists; pass overwrite=True"):
        save_mask(np.zeros((4, 4, 4), np.uint8), like=ct, path=path)
    save_mask(np.zeros((4, 4, 4), np.uint8), like=ct, path=path, overwrite=True)
    assert load_labels(path).sum() == 0
    with pytest.raises(GridMismatchError, match=r"mask shape \(4, 4, 3\) does not match the volume shape \(4, 4, 4\)"):
        save_mask(np.zeros((4, 4, 3), np.uint8), like=ct, path=tmp_path / "other.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nii.gz"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the 0600 of a temporary file


# ------------------------------------------------------------------------------------ bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError, match="file not found: .*nothing.nii.gz"):
        load_volume(tmp_path / "nothing.nii.gz")


@pytest.mark.parametrize(
    "shape, message",
    [
        ((16, 16), r"shape \(16, 16\) \(a 2D image\); expected a 3D volume"),
        ((16, 16, 1), r"shape \(16, 16, 1\) \(a 2D image\); expected a 3D volume"),
        ((8, 8, 8, 3), r"shape \(8, 8, 8, 3\) \(a 4D image\); expected a 3D volume"),
    ],
)
def test_not_a_3d_volume(shape: tuple[int, ...], message: str, tmp_path: Path) -> None:
    path = _nifti(tmp_path / "img.nii.gz", np.zeros(shape, np.int16))
    with pytest.raises(DimensionError, match=message):
        load_volume(path)


def test_single_frame_4d_is_a_volume(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "img.nii.gz", np.zeros((6, 5, 4, 1), np.int16))
    assert load_volume(path).shape == (6, 5, 4)


def test_truncated_nifti(tmp_path: Path) -> None:
    good = _nifti(tmp_path / "good.nii.gz", np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32))
    data = good.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.nii.gz: cannot read NIfTI"):
        load_volume(tmp_path / "cut.nii.gz")
    (tmp_path / "text.nii").write_text("not an image")
    with pytest.raises(CorruptFileError, match="text.nii: cannot read NIfTI"):
        load_volume(tmp_path / "text.nii")
    (tmp_path / "junk.mha").write_bytes(gzip.compress(b"junk"))
    with pytest.raises(CorruptFileError, match="junk.mha: cannot read image"):
        load_volume(tmp_path / "junk.mha")


def test_empty_dicom_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no DICOM here")
    with pytest.raises(EmptyDicomFolderError, match="folder holds no DICOM series"):
        load_volume(tmp_path)


def test_non_finite_voxels(tmp_path: Path) -> None:
    array = np.zeros((4, 4, 4), np.float32)
    array[1, 2, 3] = np.nan
    array[0, 0, 0] = np.inf
    with pytest.raises(NonFiniteError, match="2 voxels are NaN or infinite"):
        load_volume(_nifti(tmp_path / "nan.nii.gz", array))


def test_label_checks(tmp_path: Path) -> None:
    ct = load_volume(_nifti(tmp_path / "ct.nii.gz", np.zeros((4, 4, 4), np.int16)))
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, 0, 0] = 3
    with pytest.raises(LabelValueError, match=r"labels \[3\] are outside the allowed set \[0, 1, 2\]"):
        load_labels(_nifti(tmp_path / "bad.nii.gz", labels), like=ct)
    with pytest.raises(GridMismatchError, match=r"label grid \(4, 4, 3\).*does not match the CT grid \(4, 4, 4\)"):
        load_labels(_nifti(tmp_path / "small.nii.gz", np.zeros((4, 4, 3), np.uint8)), like=ct)
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    with pytest.raises(GridMismatchError, match="expected the same shape and affine"):
        load_labels(_nifti(tmp_path / "shifted.nii.gz", np.zeros((4, 4, 4), np.uint8), shifted), like=ct)
    fractional = np.full((4, 4, 4), 0.5, np.float32)
    with pytest.raises(LabelValueError, match="non-integer values"):
        load_labels(_nifti(tmp_path / "frac.nii.gz", fractional), like=ct)


# ------------------------------------------------------------------------ temporary files, output folders


def test_one_atomic_layer_per_file(tmp_path: Path) -> None:
    from livseg.data.io.files import atomic_output

    ct = Volume(array=np.zeros((4, 4, 4), np.float32), affine=np.eye(4))
    with atomic_output(tmp_path / "case_liver.nii.gz") as tmp:
        save_mask(np.ones((4, 4, 4), np.uint8), like=ct, path=tmp, overwrite=True)  # as predict does
        assert [p.name for p in tmp_path.iterdir()] == [tmp.name]  # no temporary inside the temporary
        with atomic_output(tmp, overwrite=True) as inner:
            assert inner == tmp
    assert [p.name for p in tmp_path.iterdir()] == ["case_liver.nii.gz"]
    assert load_labels(tmp_path / "case_liver.nii.gz").sum() == 64


def _dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporary_files_are_removed_by_a_later_run(tmp_path: Path) -> None:
    import socket

    from livseg.data.io.files import prepare_output_dir, temp_name

    host = socket.gethostname()
    stale = tmp_path / temp_name("last.pt", pid=_dead_pid(), host=host, token="abcd1234")
    alive = tmp_path / temp_name("best.pt", pid=os.getpid(), host=host, token="efgh5678")  # being written now
    elsewhere = tmp_path / temp_name("a_liver.nii.gz", pid=_dead_pid(), host="another-machine", token="ijkl9012")
    old = tmp_path / temp_name("b_liver.nii.gz", pid=_dead_pid(), host="another-machine", token="mnop3456")
    foreign = tmp_path / ".notes.tmp"  # not ours
    for path in (stale, alive, elsewhere, old, foreign):
        path.write_bytes(b"x" * 10)
    os.utime(old, (0, 0))  # a day and more: stale wherever it came from
    assert prepare_output_dir(tmp_path) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (alive, elsewhere, foreign))


def test_temporary_left_by_a_killed_writer_is_removed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    script = ("import time, sys\nfrom livseg.data.io.files import atomic_output\n"
              "with atomic_output(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half')\n    print('ready', flush=True)\n"
              "    time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "last.pt")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = list(tmp_path.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".last.pt.") and not (tmp_path / "last.pt").exists()
    from livseg.data.io.files import prepare_output_dir

    start = time.monotonic()
    prepare_output_dir(tmp_path)
    assert list(tmp_path.iterdir()) == [] and time.monotonic() - start < 5


def test_a_run_folder_that_another_rank_removed_meanwhile_has_no_stale_files(tmp_path: Path) -> None:
    # two DDP ranks prepare the same new run folder at once: one rank's probe creates and removes
    # it while the other looks inside (test_distributed.py once failed with FileNotFoundError here)
    from livseg.data.io.files import remove_stale_temp_files

    assert remove_stale_temp_files(tmp_path / "run") == []


# ------------------------------------------------------------------------------------ DICOM geometry


def test_ircadb_with_a_missing_slice_names_the_gap(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "real/ircadb-01-patient1/PATIENT_DICOM"
    names = sorted(p.name for p in source.iterdir())
    order = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(source))  # slice order, by position
    removed = Path(order[64]).name
    (tmp_path / "PATIENT_DICOM").mkdir()
    for name in names:
        if name != removed:
            os.symlink(source / name, tmp_path / "PATIENT_DICOM" / name)
    with pytest.raises(GeometryError, match=r"PATIENT_DICOM: slice gap of 3\.20 mm between slices at 100\.80 "
                                                 r"and 104\.00 mm along the slice normal, where the series steps "
                                                 r"1\.60 mm \(1 uneven step\): a missing slice"):
        load_volume(tmp_path / "PATIENT_DICOM")


@pytest.mark.parametrize(
    "positions, orientation, message",
    [
        ([(0, 0, z) for z in (0, 2, 4, 6, 7.5, 10, 12, 14)], (1, 0, 0, 0, 1, 0),
         r"slice gap of 1\.50 mm between slices at 6\.00 and 7\.50 mm .* series steps 2\.00 mm \(2 uneven steps\)"),
        ([(0, 0, z) for z in (0, 2, 4, 4, 6, 8, 10, 12)], (1, 0, 0, 0, 1, 0),
         r"two slices at 4\.00 mm along the slice normal: a duplicate slice or two series mixed"),
        # 15 degrees of gantry tilt: each slice moves 2 mm along z and 0.54 mm along y
        ([(0, 0.5359 * k, 2.0 * k) for k in range(8)], (1, 0, 0, 0, 1, 0),
         r"gantry tilt: the slices are stacked at 15\.0 degrees to their normal .* 3\.75 mm off at the last slice"),
        ([(0, 0, 2.0 * k) for k in range(8)], (1, 0, 0, 0, 1, 0) * 7 + (1, 0, 0, 0, 0.9848, 0.1736),
         r"slices have 2 different orientations \(ImageOrientationPatient\)"),
    ],
    ids=["uneven", "duplicate", "tilt", "mixed orientation"],
)
def test_dicom_geometry_problems_are_refused(positions, orientation, message, tmp_path: Path) -> None:  # noqa: ANN001
    from helpers import write_dicom_series

    folder = write_dicom_series(tmp_path / "series", positions, orientation=orientation)
    with pytest.raises(GeometryError, match=message):
        load_volume(folder)


def test_even_dicom_series_reads_and_itk_warning_state_is_restored(tmp_path: Path) -> None:
    from helpers import write_dicom_series

    folder = write_dicom_series(tmp_path / "series", [(0, 0, 2.0 * k) for k in range(8)])
    for state in (True, False):
        sitk.ProcessObject.SetGlobalWarningDisplay(state)
        volume = load_volume(folder)
        assert sitk.ProcessObject.GetGlobalWarningDisplay() is state
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(EmptyDicomFolderError):
            load_volume(tmp_path / "empty")
        assert sitk.ProcessObject.GetGlobalWarningDisplay() is state
    sitk.ProcessObject.SetGlobalWarningDisplay(True)
    assert volume.shape == (16, 16, 8) and volume.spacing == pytest.approx((0.8, 0.8, 2.0))
    np.testing.assert_array_equal(volume.array[0, 0, :], [10 * k for k in range(8)])


def test_cli_missing_slice_exits_2_with_one_line(checkpoint: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from helpers import write_dicom_series

    folder = write_dicom_series(tmp_path / "series", [(0, 0, z) for z in (0, 2, 4, 8, 10, 12, 14, 16)])
    result = subprocess.run([sys.executable, "-m", "livseg", "predict", str(folder), "--checkpoint", str(checkpoint),
                             "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"livseg predict: error: {folder}: slice gap of 4.00 mm between slices at 4.00 and 8.00 mm along the slice "
        "normal, where the series steps 2.00 mm (1 uneven step): a missing slice or a mixed series; livseg needs "
        "evenly spaced slices"]


def test_itk_error_text_is_kept_whole(tmp_path: Path) -> None:
    header = tmp_path / "ct.nhdr"  # a detached NRRD header without endianness: ITK's reason comes last
    header.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 8 8 8\nencoding: raw\ndata file: ct.raw\n")
    with pytest.raises(CorruptFileError) as info:
        load_volume(header)
    message = str(info.value)
    assert len(message) > 250 and message.endswith("type (short) and encoding (raw) require endian info)"), message


_META = "ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementType = MET_SHORT\nElementDataFile = {}\n"


def test_metaimage_missing_data_file_is_named(tmp_path: Path) -> None:
    header = tmp_path / "ct.mhd"
    header.write_text(_META.format("missing.raw"))
    with pytest.raises(InputFileNotFoundError, match=r"ct.mhd: its data file missing.raw \(ElementDataFile\) does "
                                                     r"not exist next to it$"):
        load_volume(header)


def test_metaimage_truncated_data_is_measured(tmp_path: Path) -> None:
    (tmp_path / "short.raw").write_bytes(bytes(100))  # 8^3 shorts need 1024 bytes
    (tmp_path / "ct.mhd").write_text(_META.format("short.raw"))
    with pytest.raises(CorruptFileError, match=r"ct.mhd: truncated: 8 x 8 x 8 MET_SHORT voxels need 1,024 bytes, 100 "
                                               r"are in its data file short.raw$"):
        load_volume(tmp_path / "ct.mhd")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8, 8), np.int16)), str(tmp_path / "whole.mha"))
    whole = (tmp_path / "whole.mha").read_bytes()
    assert load_volume(tmp_path / "whole.mha").array.shape == (8, 8, 8)  # the check passes a complete file
    (tmp_path / "cut.mha").write_bytes(whole[:-500])
    with pytest.raises(CorruptFileError, match=r"cut.mha: truncated: 8 x 8 x 8 MET_SHORT voxels need 1,024 bytes, 524 "
                                               r"are after its header$"):
        load_volume(tmp_path / "cut.mha")


def test_cli_prints_one_line_for_a_truncated_metaimage(tmp_path: Path) -> None:
    import subprocess
    import sys

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8, 8), np.int16)), str(tmp_path / "whole.mha"))
    (tmp_path / "cut.mha").write_bytes((tmp_path / "whole.mha").read_bytes()[:-500])
    result = subprocess.run([sys.executable, "-m", "livseg", "predict", str(tmp_path / "cut.mha"), "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2  # without the header check MetaIO adds two lines of its own to stderr
    assert result.stderr.splitlines() == [f"livseg predict: error: {tmp_path / 'cut.mha'}: truncated: 8 x 8 x 8 "
                                          "MET_SHORT voxels need 1,024 bytes, 524 are after its header"]
    assert not (tmp_path / "out").exists()


def test_complex_ct_is_refused(tmp_path: Path) -> None:
    from livseg.errors import VoxelTypeError

    array = (np.ones((8, 8, 8)) + 1j).astype(np.complex64)
    with pytest.raises(VoxelTypeError, match=r"complex.nii.gz: voxels are complex64; expected real HU values"):
        load_volume(_nifti(tmp_path / "complex.nii.gz", array))
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "complex.mha"))  # MetaImage stores 2 channels
    with pytest.raises(DimensionError, match=r"complex.mha: image has 2 components per voxel; expected one"):
        load_volume(tmp_path / "complex.mha")


def test_zero_voxel_spacing_is_refused(tmp_path: Path) -> None:
    from livseg.errors import GeometryError

    image = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), None)
    image.header.set_zooms((0.8, 0.0, 2.5))  # no sform: the grid comes from pixdim, which nibabel "fixes" to 1 mm
    nib.save(image, str(tmp_path / "zero.nii.gz"))
    with pytest.raises(GeometryError, match=r"zero.nii.gz: voxel spacing is 0 along array axis 1 \(header pixdim\)"):
        load_volume(tmp_path / "zero.nii.gz")
    flat = np.diag([0.8, 0.8, 2.5, 1.0])
    flat[:3, 2] = 0.0  # an affine column of zeros: no geometry at all
    header = nib.Nifti1Header()
    image = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), None, header)
    image.set_sform(flat, code=1)
    nib.save(image, str(tmp_path / "flat.nii.gz"))
    with pytest.raises(GeometryError, match=r"flat.nii.gz: voxel spacing is 0 along array axis 2"):
        load_volume(tmp_path / "flat.nii.gz")


def test_five_d_image_is_named_as_such(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "vector.nii.gz", np.zeros((6, 6, 6, 1, 3), np.float32))  # one frame of 3-vectors
    with pytest.raises(DimensionError, match=r"shape \(6, 6, 6, 1, 3\) \(a 5D image\); expected a 3D volume"):
        load_volume(path)
