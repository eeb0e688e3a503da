"""Inference: batch-norm folding, segment(), statistics, and `livseg predict` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import TINY, write_case

from livseg.cli import main
from livseg.config import ModelConfig
from livseg.data.io.volume import Volume, load_volume
from livseg.device import resolve_device
from livseg.errors import ConfigError, DatasetError, OutputExistsError
from livseg.inference.predict import expand_inputs
from livseg.inference.segment import fold_batchnorm, load_model, mask_stats, segment
from livseg.nn.model import UNet3D


def nontrivial_bn_model() -> UNet3D:
    torch.manual_seed(0)
    model = UNet3D(ModelConfig(channels=(4, 8, 16), dropout=0.2))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            with torch.no_grad():
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    model.eval()
    with torch.no_grad():  # rescale the head so that logits have mean 0 and std 2 on rand input
        features = model(torch.rand(1, 1, 16, 16, 8)) - model.head.bias
        scale = 2.0 / features.std()
        model.head.weight.mul_(scale)
        model.head.bias.copy_(-scale * features.mean())
    return model


# ------------------------------------------------------------------------------ model and folding


def test_folded_batchnorm_gives_the_same_probabilities() -> None:
    model = nontrivial_bn_model()
    x = torch.rand(1, 1, 16, 16, 8)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())  # original untouched
    with torch.no_grad():
        expected = torch.sigmoid(model(x))
        got = torch.sigmoid(folded.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d)))
    assert torch.allclose(got, expected, atol=1e-4)
    assert expected.std() > 0.05  # the comparison is not between two near-constant maps


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


# ------------------------------------------------------------------------------ statistics


def test_mask_stats_by_hand() -> None:
    affine = np.array([[-2.0, 0, 0, 10], [0, 1.0, 0, -5], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    array = np.zeros((6, 5, 4), dtype=np.float32)
    mask = np.zeros((6, 5, 4), dtype=np.uint8)
    mask[1:3, 2, 1:4] = 1  # 2 x 1 x 3 voxels
    array[mask == 1] = [10, 20, 30, 40, 50, 60]
    stats = mask_stats(mask, Volume(array=array, affine=affine))
    assert stats["voxel_count"] == 6
    assert stats["liver_volume_ml"] == pytest.approx(6 * 2 * 1 * 3 / 1000)
    assert stats["mean_hu"] == pytest.approx(35) and stats["median_hu"] == pytest.approx(35)
    # x: voxels 1..2 -> faces 0.5..2.5 -> world 10 - 2 * [0.5, 2.5] = [5, 9]
    # y: voxel 2 -> faces 1.5..2.5 -> [-3.5, -2.5]; z: voxels 1..3 -> faces 0.5..3.5 -> [1.5, 10.5]
    assert stats["bbox_mm"]["min"] == pytest.approx([5, -3.5, 1.5])
    assert stats["bbox_mm"]["max"] == pytest.approx([9, -2.5, 10.5])
    empty = mask_stats(np.zeros_like(mask), Volume(array=array, affine=affine))
    assert empty["liver_volume_ml"] == 0 and empty["mean_hu"] is None and empty["bbox_mm"] is None


def test_segment_synthetic(checkpoint: Path, tmp_path: Path) -> None:
    write_case(tmp_path, 0, shape=(30, 22, 13))
    volume = load_volume(tmp_path / "volume-0.nii.gz")
    loaded = load_model(checkpoint, "cpu")
    result = segment(volume, loaded)
    assert result.mask.shape == volume.shape and result.mask.dtype == np.uint8
    assert result.probabilities.shape == TINY.preprocess.target_shape
    assert set(result.timings) == {"preprocess", "network", "back_mapping", "postprocess", "quality"}
    assert result.stats["liver_volume_ml"] == pytest.approx(result.mask.sum() * volume.voxel_volume_ml)
    same = segment(volume, checkpoint, device="cpu")  # a path works too
    np.testing.assert_array_equal(same.mask, result.mask)
    with pytest.raises(ConfigError, match="threshold"):
        segment(volume, loaded, threshold=1.5)


def test_expand_inputs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for n in range(2):
        write_case(tmp_path / "folder", n)
    (tmp_path / "scan-a").mkdir()
    with caplog.at_level("INFO", logger="livseg"):
        cases = expand_inputs([tmp_path / "folder", tmp_path / "scan-a"])
    # a LiTS folder: the CTs only, never its label maps; any other folder is a DICOM series
    assert [name for name, _ in cases] == ["volume-0", "volume-1", "scan-a"]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "2 label files (segmentation-0.nii.gz, segmentation-1.nii.gz)" in skipped[0]
    with pytest.raises(DatasetError, match="same case name|both give case name"):
        expand_inputs([tmp_path / "folder" / "volume-0.nii.gz", tmp_path / "folder"])
    # a file named explicitly is predicted whatever its name
    assert expand_inputs([tmp_path / "folder" / "segmentation-0.nii.gz"])[0][0] == "segmentation-0"


def test_every_nifti_predict_writes_is_recognised_as_an_output() -> None:
    from livseg.inference.predict import OUTPUT_NIFTI_SUFFIXES, case_outputs

    paths = case_outputs("out", "case", preview=True, output_type="both", probabilities=("liver", "tumour"))
    niftis = [p.name for p in paths.values() if p.name.endswith((".nii", ".nii.gz"))]
    assert len(niftis) == 3 and all(name.endswith(OUTPUT_NIFTI_SUFFIXES) for name in niftis)


def test_predict_into_its_own_input_folder_twice(checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="livseg")
    folder = tmp_path / "lits"
    for n in range(2):
        write_case(folder, n)
    args = ["predict", str(folder), "--checkpoint", str(checkpoint), "-o", str(folder), "--save-probabilities"]
    assert main(args) == 0
    first = sorted(p.name for p in folder.iterdir())
    assert main([*args, "--overwrite"]) == 0  # no volume-0_liver_liver.nii.gz, no segmentation-0_liver.nii.gz
    assert sorted(p.name for p in folder.iterdir()) == first
    assert "volume-0_liver.nii.gz" in first and not any(name.startswith("segmentation-0_") for name in first)
    line = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()][-1]
    assert "2 image(s) to predict; skipped 4 livseg outputs (volume-0_liver.nii.gz" in line
    assert "and 2 label files (segmentation-0.nii.gz, segmentation-1.nii.gz)" in line


# ------------------------------------------------------------------------------ predict, real CT


@pytest.mark.slow
def test_predict_real_ct(checkpoint: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dicom = shared_data / "real" / "ircadb-01-patient1" / "PATIENT_DICOM"
    nifti = shared_data / "real" / "totalseg-example" / "example_ct.nii.gz"
    out = tmp_path / "out"
    rc = main(["predict", str(dicom), str(nifti), "--checkpoint", str(checkpoint), "-o", str(out),
               "--preview", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    # PATIENT_DICOM is a generic folder name: the case is named after the patient's folder
    for case, source in (("ircadb-01-patient1", dicom), ("example_ct", nifti)):
        volume = load_volume(source)
        written = nib.load(str(out / f"{case}_liver.nii.gz"))
        mask = np.asarray(written.dataobj)
        assert mask.shape == volume.shape and mask.dtype == np.uint8
        np.testing.assert_allclose(written.affine, volume.affine, atol=1e-4)
        stats = json.loads((out / f"{case}_stats.json").read_text())
        assert stats["liver_volume_ml"] == pytest.approx(np.count_nonzero(mask) * volume.voxel_volume_ml)
        assert stats["input_shape"] == list(volume.shape)
        assert stats["checkpoint"] == str(checkpoint.resolve())
        assert stats["case_name_from"] == ("parent folder" if source == dicom else "file name")
        assert set(stats["timings_s"]) == {"load", "preprocess", "network", "back_mapping", "postprocess", "quality", "write"}
        image = matplotlib.image.imread(out / f"{case}_preview.png")
        assert image.ndim == 3 and image.shape[0] > 100
    assert (out / "report.html").read_text().count("_preview.png") >= 2
    assert not list(out.glob(".*"))  # no temporary files left


def test_existing_outputs_are_kept(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_case(tmp_path / "in", 0)
    image, out = tmp_path / "in" / "volume-0.nii.gz", tmp_path / "out"
    args = ["predict", str(image), "--checkpoint", str(checkpoint), "-o", str(out)]
    assert main(args) == 0
    (out / "volume-0_stats.json").unlink()
    before = (out / "volume-0_liver.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 2  # the mask exists: refuse the whole case, write no stats either
    assert "exist" in capsys.readouterr().err
    assert not (out / "volume-0_stats.json").exists()
    assert (out / "volume-0_liver.nii.gz").stat().st_mtime_ns == before
    assert main([*args, "--overwrite"]) == 0 and (out / "volume-0_stats.json").exists()


# ------------------------------------------------------------------------------ bad input, one line


@pytest.mark.parametrize("bad", ["image_2d", "no_dicom", "missing"])  # bad checkpoints: test_cli.py
def test_bad_input_one_line_exit_2(
    bad: str, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_case(tmp_path / "in", 0)
    image, ckpt = tmp_path / "in" / "volume-0.nii.gz", checkpoint
    if bad == "image_2d":
        image = tmp_path / "slice.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((20, 20), dtype=np.int16), np.eye(4)), str(image))
    elif bad == "no_dicom":
        image = tmp_path / "empty_series"
        image.mkdir()
        (image / "notes.txt").write_text("no DICOM here\n")
    elif bad == "missing":
        image = tmp_path / "nope.nii.gz"
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["predict", str(image), "--checkpoint", str(ckpt), "-o", str(out), "--preview"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("livseg predict: error:")
    assert not out.exists() or not any(out.iterdir())


def test_outputs_are_refused_before_the_model_loads(checkpoint: Path, tmp_path: Path) -> None:
    write_case(tmp_path / "in", 0)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "volume-0_stats.json").write_text("{}")
    from livseg.inference.predict import predict

    with pytest.raises(OutputExistsError):
        predict([tmp_path / "in" / "volume-0.nii.gz"], checkpoint=tmp_path / "absent.pt", out_dir=tmp_path / "out")


def test_predict_removes_temporaries_of_a_killed_run(checkpoint: Path, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from livseg.data.io.files import temp_name

    write_case(tmp_path / "in", 0)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())[:40]
    left = out / temp_name("volume-0_liver.nii.gz", pid=dead.pid, host=host, token="k1ll3d00")
    left.write_bytes(b"half a mask")
    assert main(["predict", str(tmp_path / "in" / "volume-0.nii.gz"), "--checkpoint", str(checkpoint), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["volume-0_liver.nii.gz", "volume-0_stats.json"]


# ------------------------------------------------------------------------------ DICOM series and names


def two_series(folder: Path) -> tuple[str, str]:
    from helpers import write_dicom_series

    big, small = "1.2.826.0.1.3680043.2.1125.71", "1.2.826.0.1.3680043.2.1125.72"
    write_dicom_series(folder / "a", [(0, 0, 2.0 * k) for k in range(10)], uid=big, description="venous phase")
    write_dicom_series(folder / "b", [(0, 0, 2.5 * k) for k in range(8)], uid=small, description="arterial phase",
                       shape=(12, 12))
    return big, small


def test_predict_series_id_chooses_and_the_series_are_listed(checkpoint: Path, tmp_path: Path, caplog, capsys) -> None:  # noqa: ANN001
    caplog.set_level("INFO", logger="livseg")
    big, small = two_series(tmp_path / "patient-9")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "patient-9"), "--checkpoint", str(checkpoint), "-o", str(out)]) == 0
    assert json.loads((out / "patient-9_stats.json").read_text())["input_shape"] == [16, 16, 10]  # the largest
    listing = f"{big} (10 slices, 'venous phase'), {small} (8 slices, 'arterial phase')"
    assert f"holds 2 DICOM series: {listing}; reading {big}, the largest. Choose with --series-id" in caplog.text
    assert main(["predict", str(tmp_path / "patient-9"), "--checkpoint", str(checkpoint), "-o", str(out), "--overwrite",
                 "--series-id", small]) == 0
    stats = json.loads((out / "patient-9_stats.json").read_text())
    assert stats["input_shape"] == [12, 12, 8] and stats["series_id"] == small
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "patient-9"), "--checkpoint", str(checkpoint), "-o", str(out), "--overwrite",
                 "--series-id", "1.2.3"]) == 2
    assert f"no DICOM series '1.2.3'; it holds {listing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "layout, name, source",
    [
        ("patient-007/DICOM", "patient-007", "parent folder"),
        ("patient-007/CT/series", "patient-007", "parent folder"),
        ("DICOM", "P123", "PatientID"),
        ("scan-2020", "scan-2020", "folder name"),
    ],
)
def test_generic_dicom_folder_names(layout: str, name: str, source: str, tmp_path: Path) -> None:
    from helpers import write_dicom_series

    from livseg.data.io.volume import case_name_and_source

    root = tmp_path / "root"  # "root" itself counts: it is not generic
    if layout == "DICOM":
        root = tmp_path / "data" / "0001"  # generic parents all the way: the header names the case
    folder = write_dicom_series(root / layout, [(0, 0, 2.0 * k) for k in range(3)], patient_id="P123",
                                description="CT abdomen")
    assert case_name_and_source(folder) == (name, source)
    assert expand_inputs([folder])[0][0] == name


def test_generic_names_fall_back_to_series_description(tmp_path: Path) -> None:
    from helpers import write_dicom_series

    from livseg.data.io.volume import case_name_and_source

    folder = write_dicom_series(tmp_path / "data" / "input" / "dicom", [(0, 0, 2.0 * k) for k in range(3)],
                                description="CT Body 3.0 / venous")
    assert case_name_and_source(folder) == ("CT_Body_3.0_venous", "SeriesDescription")


def test_images_under_8_voxels_per_axis_are_refused(checkpoint: Path) -> None:
    from livseg.errors import DimensionError

    volume = Volume(array=np.zeros((32, 32, 7), np.float32), affine=np.diag([0.8, 0.8, 5.0, 1.0]), source="thin.nii")
    with pytest.raises(DimensionError, match=r"thin.nii: image has shape \(32, 32, 7\); at least 8 voxels per axis"):
        segment(volume, load_model(checkpoint, "cpu"))
