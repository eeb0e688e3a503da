"""Issue 24 from the command line: every numbered case gives one line on stderr and exit 2 (case 4's
warnings: one line and exit 0), writes nothing and replaces nothing. The I/O layer's exceptions
themselves are tested in tests/data/test_io_checks.py.

Most commands run in this process (``main``), which is quick but shows only the error line: the
log lines of the library go to pytest's log capture. Where a second line could come from a log
record, a progress bar or another library writing to the C-level stream, the command runs as
its own process (:func:`run_cli`) and stderr is compared whole.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import AFFINE, body_ct, nifti_with_header, refused, run_cli, write_case, write_dicom_series

from livseg.cli import build_parser, main


# ----------------------------------------------------------------------------- silent wrong answers (1-7)


def test_case_01_dicom_slices_of_different_pixel_spacing(shared_data: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import pydicom
    import SimpleITK as sitk

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(shared_data / "real/ircadb-01-patient1/PATIENT_DICOM"))
    folder = tmp_path / "edited"
    folder.mkdir()
    for k, file in enumerate(files[60:70]):
        ds = pydicom.dcmread(file)
        if k == 5:
            ds.PixelSpacing = [1.2, 1.2]
        ds.save_as(folder / Path(file).name)
    refused(capsys, ["predict", str(folder), "-o", str(tmp_path / "out")],
            r"^livseg predict: error: .*edited: slices have different pixel spacings: 0.57 x 0.57 mm in 9 slices, "
            r"1.2 x 1.2 mm in .*", tmp_path / "out")


def test_case_02_nifti_without_orientation(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path = nifti_with_header(tmp_path / "ct.nii", body_ct(), AFFINE, qform_code=0, sform_code=0)
    refused(capsys, ["predict", str(path), "-o", str(tmp_path / "out")],
            r"ct.nii: the header holds no orientation \(qform_code and sform_code are 0\), so left and right cannot be "
            r"told apart .* write the file again with its orientation", tmp_path / "out")


def test_case_03_sheared_affine(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path = nifti_with_header(tmp_path / "ct.nii", body_ct(), AFFINE, srow_x={1: 1.5})
    refused(capsys, ["predict", str(path), "-o", str(tmp_path / "out")],
            r"ct.nii: sheared voxel grid: array axes 0 and 1 meet at 28.1 degrees, not 90", tmp_path / "out")


@pytest.mark.slow
@pytest.mark.parametrize(
    "what, inside, warning",
    [
        # HU + 1024 stored without its intercept: air at about +24
        ("no intercept", None, r"intensities do not look like CT in HU \(the darkest 1 % of voxels is at 24 or above, "
                               r"where air in a CT is about -1000\)"),
        ("only air", -1000.0, r"no liver found \(the mask is empty\)$"),
    ],
)
def test_case_04_doubtful_results_warn_in_one_line_and_exit_0(what: str, inside, warning: str, tmp_path: Path) -> None:  # noqa: ANN001
    ct = body_ct((48, 40, 24), inside=60.0) + 1024 if inside is None else np.full((48, 40, 24), -1000, np.int16)
    affine = np.diag([-3.0, -3.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(ct.astype(np.int16), affine), str(tmp_path / "ct.nii.gz"))
    result = run_cli("predict", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "out"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 0 and len(lines) == 1, result.stderr
    assert re.search(warning, lines[0]), lines[0]
    stats = json.loads((tmp_path / "out" / "ct_stats.json").read_text())
    assert stats["warnings"] and stats["warnings"][0] in lines[0]


def test_case_05_mr_series(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import pydicom

    folder = write_dicom_series(tmp_path / "mr", [(0, 0, 2.0 * k) for k in range(8)])
    for file in folder.iterdir():
        ds = pydicom.dcmread(file)
        ds.Modality = "MR"
        ds.save_as(file)
    refused(capsys, ["predict", str(folder), "-o", str(tmp_path / "out")],
            r"mr: the series is Modality MR, not CT \(e.g. .*slice000.dcm\); livseg segments the liver in CT only",
            tmp_path / "out")


def _nnunet(root: Path, labels: dict) -> Path:  # noqa: ANN001
    """A two-case nnU-Net raw dataset (masks hold 0, 1, 2) with the given dataset.json labels."""
    from conftest import synthetic_case

    for n in range(2):
        ct, seg = synthetic_case(seed=n)
        (root / "imagesTr").mkdir(parents=True, exist_ok=True)
        (root / "labelsTr").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(ct, AFFINE), str(root / "imagesTr" / f"case_{n:03d}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(seg, AFFINE), str(root / "labelsTr" / f"case_{n:03d}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": labels,
                                                   "numTraining": 2, "file_ending": ".nii.gz"}))
    return root


@pytest.mark.parametrize(
    "labels, message",
    [
        ({"background": 0, "liver": 5}, r"no label map of the 2 case\(s\) holds a liver label \[5\] \(named by .*"
                                         r"dataset.json\); they hold \[0, 1, 2\], so every training target would be empty"),
        ({"background": 0, "liver": True}, r"dataset.json: label 'liver' has value True; expected an integer from 0 to "
                                           r"255"),
        ({"background": 0, "liver": 300}, r"dataset.json: label 'liver' has value 300; expected an integer from 0 to "
                                          r"255"),
    ],
    ids=["liver = 5", "liver = true", "liver = 300"],
)
def test_case_06_training_labels_that_match_nothing(labels, message, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    data = _nnunet(tmp_path / "Dataset001_Liver", labels)
    refused(capsys, ["preprocess", str(data), "-o", str(tmp_path / "cache"), "--set", "preprocess.target_shape=16,16,8",
                     "--no-progress"], message, tmp_path / "cache")
    refused(capsys, ["train", str(data), "-o", str(tmp_path / "run"), "--set", "preprocess.target_shape=16,16,8",
                     "--set", "model.channels=4,8", "--epochs", "1", "--no-progress"], message, tmp_path / "run")
    # --liver-labels 300 is refused by the flag's check: tests/data/test_cache.py


def test_case_06_a_cache_without_liver_cannot_be_trained(tiny_dataset, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from livseg.config import PreprocessConfig
    from livseg.data.cache import preprocess_dataset

    cache = tmp_path / "cache"
    preprocess_dataset(tiny_dataset(n_cases=2), cache, config=PreprocessConfig(target_shape=(16, 16, 8)), progress=False)
    manifest = json.loads((cache / "manifest.json").read_text())
    for entry in manifest["cases"].values():
        entry["liver_ml"] = 0.0  # as a cache made with other liver labels than its masks hold
    (cache / "manifest.json").write_text(json.dumps(manifest))
    refused(capsys, ["train", str(cache), "-o", str(tmp_path / "run"), "--set", "preprocess.target_shape=16,16,8",
                     "--set", "model.channels=4,8", "--epochs", "1", "--no-progress"],
            r"cache: no case of the cache holds a liver label \[1, 2\]", tmp_path / "run")


@pytest.mark.slow
def test_case_07_a_stage2_checkpoint_alone_is_refused(cascade_run: dict[str, Path], tmp_path: Path, capsys) -> None:  # noqa: ANN001
    hint = r"a stage-2 \(region\) checkpoint: .* join it with a liver checkpoint first: livseg cascade --liver LIVER.pt"
    refused(capsys, ["predict", str(cascade_run["data"] / "volume-0.nii.gz"), "--checkpoint", str(cascade_run["tumour"]),
                     "-o", str(tmp_path / "out")], hint, tmp_path / "out")
    refused(capsys, ["evaluate", str(cascade_run["data"]), "--checkpoint", str(cascade_run["tumour"]), "--split", "all",
                     "-o", str(tmp_path / "eval")], hint, tmp_path / "eval")


# ----------------------------------------------------------------------------- tracebacks and late failures (8-12)


def test_case_08_non_finite_affine(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path = nifti_with_header(tmp_path / "ct.nii", body_ct(), AFFINE, srow_z={3: np.nan})
    refused(capsys, ["predict", str(path), "-o", str(tmp_path / "out")],
            r"ct.nii: the voxel-to-world affine holds NaN or infinite values", tmp_path / "out")


def test_case_09_sizes_are_bounded_before_allocation(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    metres = np.array(AFFINE)
    metres[:3, :3] *= 1000  # a scan in metres, its header saying millimetres
    metres = nifti_with_header(tmp_path / "metres.nii", body_ct(), metres)
    refused(capsys, ["predict", str(metres), "-o", str(tmp_path / "out")],
            r"800 mm along array axis 0 is outside the 0.05-50 mm of any CT", tmp_path / "out")
    # 40^3 voxels of 50 mm: plausible voxels, but 2 m of scan on the built-in model's 3 mm grid is 667^3 voxels
    nib.save(nib.Nifti1Image(body_ct((40, 40, 40)), np.diag([50.0, 50.0, 50.0, 1.0])), str(tmp_path / "huge.nii.gz"))
    refused(capsys, ["predict", str(tmp_path / "huge.nii.gz"), "-o", str(tmp_path / "out")],
            r"huge.nii.gz: its \d+ x \d+ x 2000 mm resampled to the model's 3 x 3 x 3 mm grid would be "
            r"\(\d+, \d+, 667\), [\d,]+ voxels, more than the 134,217,728 \(512\^3\) livseg allows", tmp_path / "out")
    refused(capsys, ["phantom", "-o", str(tmp_path / "ph"), "--shape", "100000", "100000", "100000"],
            r"shape=\(100000, 100000, 100000\): expected three integers from 8 to 2048", tmp_path / "ph")
    refused(capsys, ["phantom", "-o", str(tmp_path / "ph"), "--shape", "2048", "2048", "2048"],
            r"8,589,934,592 voxels; at most 134,217,728", tmp_path / "ph")


@pytest.mark.parametrize("where", ["/proc/livseg-test-out", "/sys/livseg-test-out"])
def test_case_10_outputs_under_proc_and_sys_fail_before_any_work(where: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    for n in range(2):
        write_case(tmp_path / "data", n)
    commands = {
        "predict": ["predict", str(tmp_path / "data" / "volume-0.nii.gz"), "-o", where],
        "evaluate": ["evaluate", str(tmp_path / "data"), "--split", "all", "-o", where],
        "train": ["train", str(tmp_path / "data"), "-o", where, "--epochs", "1"],
        "preprocess": ["preprocess", str(tmp_path / "data"), "-o", where],
        "phantom": ["phantom", "-o", where, "--n", "1"],
        "demo": ["demo", "-o", where],
    }
    for command, argv in commands.items():
        refused(capsys, argv, rf"^livseg {command}: error: cannot write to {where}: .*; choose a folder on a writable "
                              "disk$", Path(where))


def test_case_10_a_full_disk_leaves_nothing_behind(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    import errno

    import livseg.data.io.nifti as nifti

    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nifti.nib, "save", full)
    refused(capsys, ["phantom", "-o", str(tmp_path / "new" / "ph"), "--n", "1", "--shape", "32", "32", "16"],
            r"^livseg phantom: error: cannot write .*volume-0.nii.gz: no space left on device$", tmp_path / "new")
    (tmp_path / "kept").mkdir()
    refused(capsys, ["phantom", "-o", str(tmp_path / "kept"), "--n", "1", "--shape", "32", "32", "16"],
            r"no space left on device$")
    assert list((tmp_path / "kept").iterdir()) == []  # an existing folder stays, and holds no temporary file


def test_case_11_cascade_output_folder_or_input(checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (tmp_path / "folder").mkdir()
    refused(capsys, ["cascade", "--liver", str(checkpoint), "--tumour", str(checkpoint), "-o", str(tmp_path / "folder"),
                     "--overwrite"], r"folder is a folder; give -o the cascade file to write, e.g. .*folder/cascade.pt")
    liver = tmp_path / "liver.pt"
    shutil.copy(checkpoint, liver)
    before = liver.read_bytes()
    refused(capsys, ["cascade", "--liver", str(liver), "--tumour", str(checkpoint), "-o", str(liver), "--overwrite"],
            r"-o .*liver.pt is one of the two checkpoints it joins; write the cascade to a new file")
    assert liver.read_bytes() == before


def test_case_12_in_channels_is_refused_before_the_run_folder(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    for n in range(2):
        write_case(tmp_path / "data", n)
    refused(capsys, ["train", str(tmp_path / "data"), "-o", str(tmp_path / "run"), "--set", "model.in_channels=2"],
            r"model.in_channels: livseg feeds the network one CT channel, got 2; expected 1", tmp_path / "run")


# ----------------------------------------------------------------------------- wrong or noisy messages (13-15)


def _multi_organ_case(folder: Path, n: int) -> None:
    """write_case's CT with a TotalSegmentator-like map: liver 5, a neighbour 3, nothing at 1 or 2."""
    write_case(folder, n)
    seg = nib.load(str(folder / f"segmentation-{n}.nii.gz"))
    labels = np.where(np.asarray(seg.dataobj) > 0, 5, 0).astype(np.uint8)
    labels[0, 0, 0] = 3
    nib.save(nib.Nifti1Image(labels, seg.affine), str(folder / f"segmentation-{n}.nii.gz"))


def test_case_13_evaluate_liver_labels(checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    for n in range(2):
        _multi_organ_case(tmp_path / "data", n)
    refused(capsys, ["evaluate", str(tmp_path / "data"), "--checkpoint", str(checkpoint), "--split", "all", "-o",
                     str(tmp_path / "a")], r"labels \[3, 5\] are outside the allowed set \[0, 1, 2\]; .*--liver-labels 5")
    common = ["--checkpoint", str(checkpoint), "--split", "all", "--no-figures", "--no-progress"]
    assert main(["evaluate", str(tmp_path / "data"), "--liver-labels", "5", "-o", str(tmp_path / "a"), *common]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["liver_labels"] == [5]
    assert summary["original_grid"]["metrics"]["volume_ref_ml"]["mean"] > 1.0  # the reference liver is the 5s
    # a cache made with --liver-labels is evaluated with its own liver labels, without the flag
    assert main(["preprocess", str(tmp_path / "data"), "-o", str(tmp_path / "cache"), "--liver-labels", "5",
                 "--set", "preprocess.target_shape=16,16,8", "--no-progress"]) == 0
    assert main(["evaluate", str(tmp_path / "cache"), "-o", str(tmp_path / "b"), *common]) == 0
    cached = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert cached["liver_labels"] == [5] and cached["original_grid"] == summary["original_grid"]


def test_case_14_output_in_a_dicom_input_folder(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    folder = write_dicom_series(tmp_path / "series", [(0, 0, 2.0 * k) for k in range(8)])
    files = sorted(folder.iterdir())
    for out in (folder, folder / "out"):
        refused(capsys, ["predict", str(folder), "-o", str(out)],
                rf"-o {out} (is|lies inside) the DICOM input folder {folder}: outputs written among its slices")
    assert sorted(folder.iterdir()) == files


@pytest.mark.slow
def test_case_15_one_line_and_the_real_cause(shared_data: Path, tmp_path: Path) -> None:
    import pydicom
    import SimpleITK as sitk

    # a slice of another size: ITK's region dump and warnings stay off stderr
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(shared_data / "real/ircadb-01-patient1/PATIENT_DICOM"))
    folder = tmp_path / "sizes"
    folder.mkdir()
    for k, file in enumerate(files[:10]):
        ds = pydicom.dcmread(file)
        if k == 3:
            ds.PixelData, ds.Rows, ds.Columns = ds.pixel_array[:256, :256].copy().tobytes(), 256, 256
        ds.save_as(folder / Path(file).name)
    result = run_cli("predict", str(folder), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "slices have different sizes: 512 x 512 pixels (rows x columns) in 9 slices" in result.stderr
    # a bad case in a dataset: no "0 of N cases already cached" line and no progress bar before the error
    for n in range(2):
        write_case(tmp_path / "data", n)
    (tmp_path / "data" / "volume-1.nii.gz").write_bytes((tmp_path / "data" / "volume-1.nii.gz").read_bytes()[:300])
    result = run_cli("preprocess", str(tmp_path / "data"), "-o", str(tmp_path / "cache"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("livseg preprocess: error: 1 of 2 cases are unusable: lits-1: ")
    # a successful DICOM SEG (the built-in model on ten IRCADb slices): no highdicom INFO lines on stderr
    series = tmp_path / "ircadb-slab"
    series.mkdir()
    for file in files[60:70]:
        shutil.copy(file, series)
    result = run_cli("predict", str(series), "-o", str(tmp_path / "seg"), "--output-type", "dicom-seg")
    assert result.returncode == 0 and (tmp_path / "seg" / "ircadb-slab_seg.dcm").is_file(), result.stderr
    assert result.stderr == ""


def test_case_15_symlink_loop_is_not_called_missing(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (tmp_path / "a.nii.gz").symlink_to(tmp_path / "b.nii.gz")
    (tmp_path / "b.nii.gz").symlink_to(tmp_path / "a.nii.gz")
    refused(capsys, ["predict", str(tmp_path / "a.nii.gz"), "-o", str(tmp_path / "out")],
            r"input '.*a.nii.gz' cannot be opened: a symbolic-link loop$", tmp_path / "out")


# ----------------------------------------------------------------------------- the small ones (16)


@pytest.mark.slow
def test_case_16_cascade_accepts_the_builtin_liver_model(cascade_run: dict[str, Path], tmp_path: Path) -> None:
    assert main(["cascade", "--liver", "builtin:liver-v1", "--tumour", str(cascade_run["tumour"]), "-o",
                 str(tmp_path / "cascade.pt")]) == 0
    from livseg.nn.checkpoint import load_checkpoint

    joined = load_checkpoint(tmp_path / "cascade.pt")
    assert joined.cascade is not None and joined.config.preprocess.spacing == (3.0, 3.0, 3.0)  # liver-v1's grid


def test_case_16_series_id_with_a_nifti_input_warns(checkpoint: Path, tmp_path: Path, caplog) -> None:  # noqa: ANN001
    write_case(tmp_path / "data", 0)
    assert main(["predict", str(tmp_path / "data" / "volume-0.nii.gz"), "--checkpoint", str(checkpoint), "-o",
                 str(tmp_path / "out"), "--series-id", "1.2.3"]) == 0
    assert "series_id 1.2.3 applies to DICOM folders only; ignored for 1 file input(s)" in caplog.text


def test_case_16_duplicate_case_ids_are_explained(tmp_path: Path) -> None:
    from livseg.data.datasets import discover_cases
    from livseg.errors import DatasetError

    write_case(tmp_path / "a", 0)
    write_case(tmp_path / "b", 0)
    (tmp_path / "ids.csv").write_text("image,label,case_id\na/volume-0.nii.gz,a/segmentation-0.nii.gz,x\n"
                                      "b/volume-0.nii.gz,b/segmentation-0.nii.gz,x\n")
    with pytest.raises(DatasetError, match=r"line 3: case id 'x' is used twice; case ids must be unique$"):
        discover_cases(tmp_path / "ids.csv")
    (tmp_path / "names.csv").write_text("image,label\na/volume-0.nii.gz,a/segmentation-0.nii.gz\n"
                                        "b/volume-0.nii.gz,b/segmentation-0.nii.gz\n")
    with pytest.raises(DatasetError, match=r"case id 'volume-0' is used twice; two images have this file name: add a "
                                           r"case_id column"):
        discover_cases(tmp_path / "names.csv")


def test_case_16_ctrl_c_before_the_first_case_leaves_no_folder(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    import livseg.inference.predict as predict

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "load_model", interrupted)
    write_case(tmp_path / "data", 0)
    assert main(["predict", str(tmp_path / "data" / "volume-0.nii.gz"), "-o", str(tmp_path / "new" / "out")]) == 130
    assert capsys.readouterr().err == "livseg predict: interrupted\n"
    assert not (tmp_path / "new").exists()


def test_case_16_devices_and_help_texts(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import torch

    write_case(tmp_path / "data", 0)
    if not torch.cuda.is_available():
        for command in (["predict", str(tmp_path / "data" / "volume-0.nii.gz")], ["evaluate", str(tmp_path / "data")]):
            refused(capsys, [*command, "-o", str(tmp_path / "out"), "--device", "cuda:1"],
                    r"device 'cuda:1' requested but CUDA is not available here", tmp_path / "out")
    refused(capsys, ["predict", str(tmp_path / "data" / "volume-0.nii.gz"), "-o", str(tmp_path / "out"), "--device",
                     "cuda:x"], r"unknown device 'cuda:x'; expected auto, cpu, cuda or cuda:N", tmp_path / "out")
    parser = build_parser()
    helps = {name: sub.format_help() for name, sub in parser._subparsers._group_actions[0].choices.items()}
    for command in ("train", "preprocess"):
        text = " ".join(helps[command].split())
        assert "nnU-Net raw" in text and "tumour-cpu" in text, command
    assert "cuda:N" in " ".join(helps["predict"].split()) and "--liver-labels" in helps["evaluate"]


def test_case_16_skip_existing_goes_on_where_a_batch_stopped(checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    for n in range(3):
        write_case(tmp_path / "data", n)
    inputs = [str(tmp_path / "data" / f"volume-{n}.nii.gz") for n in range(3)]
    out = tmp_path / "out"
    assert main(["predict", *inputs[:2], "--checkpoint", str(checkpoint), "-o", str(out)]) == 0  # stopped after two
    mask = (out / "volume-0_liver.nii.gz").stat().st_mtime_ns
    refused(capsys, ["predict", *inputs, "--checkpoint", str(checkpoint), "-o", str(out)],
            r"2 output file\(s\) exist|output file\(s\) exist")
    capsys.readouterr()
    assert main(["predict", *inputs, "--checkpoint", str(checkpoint), "-o", str(out), "--skip-existing"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"volume-0: skipped, its outputs exist in {out} (--skip-existing)"
    assert printed[1].startswith("volume-1: skipped") and printed[2].startswith("volume-2: liver ")
    assert (out / "volume-2_liver.nii.gz").is_file() and (out / "volume-0_liver.nii.gz").stat().st_mtime_ns == mask
    assert "volume-2" in (out / "report.html").read_text()
    (out / "volume-1_stats.json").unlink()  # a case with some outputs only is not guessed at
    refused(capsys, ["predict", *inputs, "--checkpoint", str(checkpoint), "-o", str(out), "--skip-existing"],
            r"case 'volume-1' has some of its outputs \(volume-1_liver.nii.gz, ...\) but not volume-1_stats.json; pass "
            r"--overwrite")

