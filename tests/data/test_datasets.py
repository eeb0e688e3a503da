"""Tests of livseg.data.datasets: discovery, validation and splits (the cache is in test_cache.py)."""

from __future__ import annotations


import nibabel as nib
import numpy as np
import pytest

from livseg.config import PreprocessConfig
from livseg.data.datasets import Case, discover_cases, load_split, make_split, save_split, validate_cases
from livseg.errors import ConfigError, DatasetError, InputFileNotFoundError

SMALL = PreprocessConfig(target_shape=(16, 16, 8))


# ----------------------------------------------------------------------------------------- discovery


def test_discover_lits_over_batch_folders_with_mixed_suffixes(tiny_dataset):
    root = tiny_dataset(n_cases=12, batches=2)
    assert (root / "Training Batch 1").is_dir() and (root / "Training Batch 2").is_dir()
    cases = discover_cases(root)
    assert [c.case_id for c in cases] == [f"lits-{n}" for n in range(12)]  # natural order: 2 before 10
    assert {c.image.name for c in cases[:2]} == {"volume-0.nii.gz", "volume-1.nii"}
    assert all(c.label is not None and c.label.name.startswith("segmentation-") for c in cases)
    assert all(c.image.parent == c.label.parent for c in cases)


def test_discover_msd_skips_macos_resource_files(tiny_dataset):
    root = tiny_dataset(n_cases=2, layout="msd")
    cases = discover_cases(root)
    assert cases == [
        Case("msd-0", root / "imagesTr" / "liver_0.nii.gz", root / "labelsTr" / "liver_0.nii.gz"),
        Case("msd-1", root / "imagesTr" / "liver_1.nii.gz", root / "labelsTr" / "liver_1.nii.gz"),
    ]
    assert discover_cases(root.parent) == cases  # Task03_Liver folder one level down


def test_discover_csv_relative_paths_and_case_ids(tiny_dataset, tmp_path):
    root = tiny_dataset(n_cases=2, compress=True)
    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "image,label,case_id\n"
        "data/volume-1.nii.gz,data/segmentation-1.nii.gz,\n"
        f"{root / 'volume-0.nii.gz'},{root / 'segmentation-0.nii.gz'},patient-a\n"
    )
    cases = discover_cases(csv)
    assert [c.case_id for c in cases] == ["patient-a", "volume-1"]
    assert cases[1].image == root / "volume-1.nii.gz" and cases[1].label == root / "segmentation-1.nii.gz"


def test_discover_reports_unpaired_labels(tiny_dataset):
    root = tiny_dataset(n_cases=2, compress=False)
    (root / "volume-1.nii").unlink()
    (root / "volume-0.nii").rename(root / "volume-7.nii")  # an image without label is kept for validation
    with pytest.raises(DatasetError, match=r"lits-0: label .*segmentation-0.nii has no image") as info:
        discover_cases(root)
    assert "lits-1: label" in str(info.value)


def test_discover_missing_path_and_unknown_layout(tmp_path):
    with pytest.raises(InputFileNotFoundError, match="dataset not found: .*nowhere"):
        discover_cases(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"no dataset found; expected LiTS .* MSD .* CSV"):
        discover_cases(tmp_path)
    with pytest.raises(DatasetError, match=r"expected a dataset folder or a \.csv file"):
        discover_cases(tmp_path / "notes.txt")


def test_discover_csv_bad_header(tmp_path):
    (tmp_path / "pairs.csv").write_text("ct,mask\na.nii,b.nii\n")
    with pytest.raises(DatasetError, match=r"CSV header is \['ct', 'mask'\]; expected columns image,label"):
        discover_cases(tmp_path / "pairs.csv")


def test_discover_real_lits_masks_without_ct_are_reported(shared_data):
    with pytest.raises(DatasetError, match=r"lits-\d+: label .*segmentation-\d+\.nii\.gz has no image"):
        discover_cases(shared_data / "lits-liver-masks")


# ---------------------------------------------------------------------------------------- validation


def test_validate_accepts_good_cases(tiny_dataset):
    validate_cases(discover_cases(tiny_dataset(n_cases=2)))


def test_validate_reports_every_bad_case_at_once(tiny_dataset, write_nifti_file):
    root = tiny_dataset(n_cases=7, compress=True)
    affine = nib.load(root / "volume-0.nii.gz").affine
    ct, labels = np.zeros((12, 10, 8), np.int16), np.zeros((12, 10, 8), np.uint8)
    write_nifti_file(root / "segmentation-1.nii.gz", np.zeros((12, 10, 9), np.uint8), affine)  # shape
    shifted = affine.copy()
    shifted[0, 3] += 5.0
    write_nifti_file(root / "segmentation-2.nii.gz", labels, shifted)  # affine
    write_nifti_file(root / "segmentation-3.nii.gz", labels + 3, affine)  # label value
    write_nifti_file(root / "volume-4.nii.gz", ct[:, :, 0], affine)  # 2D
    raw = (root / "volume-5.nii.gz").read_bytes()
    (root / "volume-5.nii.gz").write_bytes(raw[: len(raw) // 2])  # truncated download
    (root / "segmentation-6.nii.gz").unlink()  # missing label
    with pytest.raises(DatasetError) as info:
        validate_cases(discover_cases(root))
    lines = str(info.value).splitlines()
    assert lines[0] == "6 of 7 cases are unusable:"
    report = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert sorted(report) == [f"lits-{n}" for n in range(1, 7)]
    assert "label shape (12, 10, 9) does not match image shape (12, 10, 8)" in report["lits-1"]
    assert "label affine differs from the image affine by up to 5 mm" in report["lits-2"]
    assert "labels [3] are outside the allowed set [0, 1, 2]" in report["lits-3"]
    assert "has shape (12, 10); expected a 3D volume" in report["lits-4"]
    assert "volume-5.nii.gz cannot be read" in report["lits-5"] and "truncated" in report["lits-5"]
    assert "no label for image" in report["lits-6"]


def test_validate_detects_truncated_uncompressed_file(tiny_dataset):
    root = tiny_dataset(n_cases=1, compress=False)
    raw = (root / "volume-0.nii").read_bytes()
    (root / "volume-0.nii").write_bytes(raw[:-100])
    with pytest.raises(DatasetError, match=r"lits-0: .*file is truncated: \d+ bytes of data, header needs \d+"):
        validate_cases(discover_cases(root), check_labels=False)


def test_validate_without_label_check_allows_unlabelled(tiny_dataset):
    root = tiny_dataset(n_cases=1, compress=True)
    (root / "segmentation-0.nii.gz").unlink()
    validate_cases(discover_cases(root), check_labels=False)


# -------------------------------------------------------------------------------------------- splits


def test_split_is_deterministic_and_proportional():
    ids = [f"lits-{n}" for n in range(20)]
    split = make_split(ids, val_fraction=0.2, seed=3)
    assert split == make_split(list(reversed(ids)), val_fraction=0.2, seed=3)  # input order irrelevant
    assert len(split["val"]) == 4 and len(split["train"]) == 16
    assert sorted(split["train"] + split["val"]) == sorted(ids)
    assert make_split(ids, val_fraction=0.2, seed=4)["val"] != split["val"]
    assert split["seed"] == 3 and split["val_fraction"] == 0.2


@pytest.mark.parametrize("n, fraction, n_val", [(2, 0.2, 1), (2, 0.9, 1), (3, 0.01, 1), (10, 0.99, 9), (1, 0.2, 0)])
def test_split_keeps_both_parts_non_empty(n, fraction, n_val):
    split = make_split([f"c{i}" for i in range(n)], val_fraction=fraction)
    assert len(split["val"]) == n_val and len(split["train"]) == n - n_val


def test_split_without_validation_trains_on_every_case():
    split = make_split(["c2", "c10", "c1"], val_fraction=0.0)
    assert split["train"] == ["c1", "c2", "c10"] and split["val"] == []


def test_split_bad_input():
    with pytest.raises(ConfigError, match=r"val_fraction: expected 0 <= f < 1, got 1.5"):
        make_split(["a", "b"], val_fraction=1.5)
    with pytest.raises(DatasetError, match=r"duplicate case ids: \['a'\]"):
        make_split(["a", "a", "b"])


def test_split_round_trip(tmp_path):
    split = make_split(["a", "b", "c", "d", "e"], val_fraction=0.4, seed=1)
    save_split(split, tmp_path / "splits.json")
    assert load_split(tmp_path / "splits.json") == split
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind
    (tmp_path / "bad.json").write_text('{"train": 1}')
    with pytest.raises(DatasetError, match="not a split file; expected JSON with 'train' and 'val' lists"):
        load_split(tmp_path / "bad.json")
    with pytest.raises(InputFileNotFoundError, match="file not found"):
        load_split(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------- test split


def test_test_split_is_held_out_from_training_and_validation():
    ids = [f"lits-{n}" for n in range(20)]
    split = make_split(ids, val_fraction=0.2, seed=3, test_fraction=0.25)
    assert len(split["test"]) == 5 and len(split["val"]) == 4 and len(split["train"]) == 11
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(ids)
    assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    assert split["test_fraction"] == 0.25
    # the validation cases are those of the split without a test part: adding one takes from training
    assert split["val"] == make_split(ids, val_fraction=0.2, seed=3)["val"]
    assert split == make_split(list(reversed(ids)), val_fraction=0.2, seed=3, test_fraction=0.25)


def test_default_split_has_an_empty_test_part_and_the_papers_80_20():
    split = make_split([f"c{i}" for i in range(10)], val_fraction=0.2, seed=0)
    assert split["test"] == [] and split["test_fraction"] == 0.0
    assert len(split["val"]) == 2 and len(split["train"]) == 8


@pytest.mark.parametrize("n, test_fraction, n_test", [(3, 0.01, 1), (10, 0.2, 2), (10, 0.5, 5)])
def test_test_split_gets_at_least_one_case_and_leaves_training_one(n, test_fraction, n_test):
    split = make_split([f"c{i}" for i in range(n)], val_fraction=0.2, test_fraction=test_fraction)
    assert len(split["test"]) == n_test and len(split["train"]) >= 1 and len(split["val"]) >= 1


def test_test_split_bad_input():
    with pytest.raises(ConfigError, match=r"test_fraction: expected 0 <= f < 1, got -0.1"):
        make_split(["a", "b", "c"], test_fraction=-0.1)
    with pytest.raises(ConfigError, match=r"val_fraction \+ test_fraction"):
        make_split(["a", "b", "c"], val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DatasetError, match="3 or more cases"):
        make_split(["a", "b"], test_fraction=0.2)


def test_split_files_without_a_test_part_still_load(tmp_path):
    (tmp_path / "old.json").write_text('{"seed": 0, "val_fraction": 0.5, "train": ["a"], "val": ["b"]}')
    assert load_split(tmp_path / "old.json")["test"] == []


# ---------------------------------------------------------------------------------- nnU-Net raw


def nnunet_dataset(root, write_nifti_file, *, labels=None, channels=("CT",), n=2, name="Dataset003_Liver"):  # noqa: ANN001, ANN201
    """An nnU-Net v2 raw dataset: imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz, dataset.json."""
    import json

    from conftest import synthetic_case

    folder = root / name
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    for k in range(n):
        ct, label_map = synthetic_case(seed=k)
        for c in range(len(channels)):
            write_nifti_file(folder / "imagesTr" / f"liver_{k:03d}_{c:04d}.nii.gz", ct, affine)
        write_nifti_file(folder / "labelsTr" / f"liver_{k:03d}.nii.gz", label_map, affine)
    write_nifti_file(folder / "imagesTs" / "liver_900_0000.nii.gz", synthetic_case(seed=9)[0], affine)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {str(c): name for c, name in enumerate(channels)},
        "labels": labels or {"background": 0, "liver": 1, "tumor": 2},
        "numTraining": n, "file_ending": ".nii.gz",
    }))
    return folder


def test_discover_nnunet_raw(tmp_path, write_nifti_file):
    folder = nnunet_dataset(tmp_path, write_nifti_file)
    cases = discover_cases(folder)
    assert cases == [
        Case("liver_000", folder / "imagesTr" / "liver_000_0000.nii.gz", folder / "labelsTr" / "liver_000.nii.gz"),
        Case("liver_001", folder / "imagesTr" / "liver_001_0000.nii.gz", folder / "labelsTr" / "liver_001.nii.gz"),
    ]
    assert discover_cases(tmp_path) == cases  # the nnUNet_raw folder holding it
    validate_cases(cases)


@pytest.mark.parametrize(
    "labels, expected",
    [
        ({"background": 0, "liver": 1, "tumor": 2}, {"liver": (1,), "tumour": (2,)}),
        ({"background": 0, "spleen": 1, "liver": 2, "liver_lesion": 3}, {"liver": (2,), "tumour": (3,)}),
        ({"background": 0, "liver": [1, 2], "tumour": 2}, {"liver": (1, 2), "tumour": (2,)}),  # region-based
        ({"0": "background", "1": "liver", "2": "cancer"}, {"liver": (1,), "tumour": (2,)}),  # MSD's direction
        ({"background": 0, "kidney": 1}, {}),
    ],
)
def test_dataset_json_labels(labels, expected, tmp_path, write_nifti_file):
    from livseg.data.nnunet import dataset_labels

    assert dataset_labels(nnunet_dataset(tmp_path, write_nifti_file, labels=labels)) == expected


def test_nnunet_labels_pick_liver_and_tumour_for_preprocessing(tmp_path, write_nifti_file):
    from livseg.data.cache import preprocess_dataset

    labels = {"background": 0, "liver": 2, "tumour": 1}  # swapped values: dataset.json decides
    folder = nnunet_dataset(tmp_path, write_nifti_file, labels=labels)
    manifest = preprocess_dataset(folder, tmp_path / "cache", config=SMALL, progress=False)
    assert manifest["preprocess"]["liver_labels"] == [1, 2]
    multi = {"background": 0, "spleen": 1, "liver": 2, "tumour": 3}
    folder = nnunet_dataset(tmp_path / "b", write_nifti_file, labels=multi)
    manifest = preprocess_dataset(folder, tmp_path / "cache-b", config=SMALL, progress=False)
    assert manifest["preprocess"]["liver_labels"] == [2, 3]
    # synthetic_case's label 1 is "spleen" here: only the label-2 tumour voxel counts as liver
    assert manifest["cases"]["liver_000"]["liver_ml"] == pytest.approx(0.8 * 0.8 * 2.5 / 1000)


def test_nnunet_multichannel_is_refused(tmp_path, write_nifti_file):
    folder = nnunet_dataset(tmp_path, write_nifti_file, channels=("CT", "PET"))
    with pytest.raises(DatasetError, match=r"multi-channel nnU-Net dataset \(channels: CT, PET\); livseg reads one CT"):
        discover_cases(folder)


def test_cli_preprocess_nnunet_raw(tmp_path, write_nifti_file, capsys):
    from livseg.cli import main
    from livseg.data.cache import load_manifest

    folder = nnunet_dataset(tmp_path, write_nifti_file, n=3)
    out = tmp_path / "cache"
    assert main(["preprocess", str(folder), "-o", str(out), "--set", "preprocess.target_shape=16,16,8",
                 "--no-progress"]) == 0
    assert sorted(load_manifest(out)["cases"]) == ["liver_000", "liver_001", "liver_002"]


# ----------------------------------------------------------------------- images of a folder (predict)


def test_find_images_in_dataset_layouts(tmp_path, tiny_dataset, write_nifti_file):
    from livseg.data.image_folders import find_images

    lits = tiny_dataset(n_cases=2, compress=True)
    found = find_images(lits, skip_suffixes=("_liver.nii.gz",))
    assert [name for name, _ in found.images] == ["volume-0", "volume-1"]
    assert sorted(p.name for p in found.skipped["label files"]) == ["segmentation-0.nii.gz", "segmentation-1.nii.gz"]
    nnunet = nnunet_dataset(tmp_path, write_nifti_file)
    found = find_images(nnunet)
    assert [(name, path.parent.name) for name, path in found.images] == [
        ("liver_000", "imagesTr"), ("liver_001", "imagesTr"), ("liver_900", "imagesTs")]
    assert len(found.skipped["label files"]) == 2
    assert [name for name, _ in find_images(nnunet / "imagesTs").images] == ["liver_900"]
    (tmp_path / "dicom").mkdir()
    assert find_images(tmp_path / "dicom") is None  # not a NIfTI folder: the caller reads DICOM


def test_find_images_skips_livseg_outputs_and_label_names(tmp_path, write_nifti_file):
    from livseg.data.image_folders import find_images

    ct = np.zeros((8, 8, 8), np.int16)
    for name in ("ct.nii.gz", "ct_liver.nii.gz", "ct_liver_probability.nii.gz", "ct_seg.nii.gz", "mask.nii.gz",
                 "patient_labels.nii"):
        write_nifti_file(tmp_path / "mixed" / name, ct)
    found = find_images(tmp_path / "mixed", skip_suffixes=("_liver.nii.gz", "_probability.nii.gz"))
    assert [name for name, _ in found.images] == ["ct"]
    assert sorted(p.name for p in found.skipped["livseg outputs"]) == ["ct_liver.nii.gz", "ct_liver_probability.nii.gz"]
    assert sorted(p.name for p in found.skipped["label files"]) == ["ct_seg.nii.gz", "mask.nii.gz", "patient_labels.nii"]
    with pytest.raises(DatasetError, match=r"labelsTr: no images to predict; skipped 2 label files"):
        find_images(nnunet_dataset(tmp_path, write_nifti_file) / "labelsTr")
