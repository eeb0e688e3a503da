"""Tests of livseg.data: discovery, validation, splits, the preprocessed cache, the CLI command."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import livseg.data as data
from livseg.cli import main
from livseg.config import PreprocessConfig, to_dict
from livseg.data import (
    CachedDataset,
    Case,
    discover_cases,
    is_cache,
    load_manifest,
    load_split,
    make_split,
    preprocess_dataset,
    save_split,
    validate_cases,
)
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


def test_split_bad_input():
    with pytest.raises(ConfigError, match=r"val_fraction: expected 0 < f < 1, got 1.5"):
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


# --------------------------------------------------------------------------------------------- cache


def test_preprocess_dataset_writes_arrays_manifest_and_split(tiny_dataset, tmp_path):
    root = tiny_dataset(n_cases=3)
    manifest = preprocess_dataset(root, tmp_path / "cache", config=SMALL, progress=False)
    cache = tmp_path / "cache"
    assert manifest == load_manifest(cache) and is_cache(cache) and not is_cache(root)
    assert manifest["format"] == "livseg-cache" and manifest["version"] == 1
    assert manifest["preprocess"] == to_dict(SMALL)
    assert list(manifest["cases"]) == ["lits-0", "lits-1", "lits-2"]
    entry = manifest["cases"]["lits-1"]
    source = nib.load(root / "volume-1.nii")
    assert entry["image"] == str((root / "volume-1.nii").resolve())
    assert entry["label"] == str((root / "segmentation-1.nii").resolve())
    assert entry["shape"] == [12, 10, 8]  # original geometry kept
    np.testing.assert_allclose(entry["affine"], source.affine)
    np.testing.assert_allclose(entry["spacing"], [0.8, 0.8, 2.5])
    labels = np.asarray(nib.load(root / "segmentation-1.nii").dataobj)
    assert entry["liver_ml"] == pytest.approx(np.count_nonzero(labels) * 0.8 * 0.8 * 2.5 / 1000)
    image = np.load(cache / entry["image_file"])
    label = np.load(cache / entry["label_file"])
    assert image.shape == label.shape == (16, 16, 8)
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}  # tumour merged into liver
    split = load_split(cache / "splits.json")
    assert sorted(split["train"] + split["val"]) == ["lits-0", "lits-1", "lits-2"]
    assert len(split["val"]) == 1
    assert not list(cache.glob(".*"))  # no temporaries


def test_preprocess_dataset_resumes_without_redoing_cases(tiny_dataset, tmp_path, monkeypatch):
    root, cache = tiny_dataset(n_cases=3), tmp_path / "cache"
    preprocess_dataset(root, cache, config=SMALL, progress=False)
    # an interruption after case 1: its manifest entry is gone, case 2's label array too
    manifest = json.loads((cache / "manifest.json").read_text())
    del manifest["cases"]["lits-1"]
    (cache / "manifest.json").write_text(json.dumps(manifest))
    (cache / "lits-2_label.npy").unlink()
    mtime = (cache / "lits-0_image.npy").stat().st_mtime_ns
    split_before = (cache / "splits.json").read_text()
    loaded = []
    real_load = data.load_volume
    monkeypatch.setattr(data, "load_volume", lambda path: loaded.append(Path(path).name) or real_load(path))
    manifest = preprocess_dataset(root, cache, config=SMALL, progress=False)
    assert sorted(loaded) == ["volume-1.nii", "volume-2.nii.gz"]
    assert (cache / "lits-0_image.npy").stat().st_mtime_ns == mtime
    assert set(manifest["cases"]) == {"lits-0", "lits-1", "lits-2"}
    assert (cache / "splits.json").read_text() == split_before  # same cases: split kept
    loaded.clear()
    preprocess_dataset(root, cache, config=SMALL, progress=False)
    assert loaded == []


def test_preprocess_dataset_refuses_other_config_and_foreign_folder(tiny_dataset, tmp_path):
    root, cache = tiny_dataset(n_cases=2), tmp_path / "cache"
    preprocess_dataset(root, cache, config=SMALL, progress=False)
    expected = r"different preprocessing config \(target_shape: cache \[16, 16, 8\] vs requested \[32, 32, 16\]\)"
    with pytest.raises(DatasetError, match=expected):
        preprocess_dataset(root, cache, config=PreprocessConfig(target_shape=(32, 32, 16)), progress=False)
    with pytest.raises(DatasetError, match="is not an empty folder or a livseg cache"):
        preprocess_dataset(root, root, config=SMALL, progress=False)
    with pytest.raises(ConfigError, match="val_fraction"):
        preprocess_dataset(root, tmp_path / "other", config=SMALL, val_fraction=0.0, progress=False)


def test_preprocess_dataset_bad_cases_write_nothing(tiny_dataset, tmp_path):
    root = tiny_dataset(n_cases=2, compress=True)
    (root / "segmentation-1.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"1 of 2 cases are unusable:\n  lits-1: no label for image"):
        preprocess_dataset(root, tmp_path / "cache", config=SMALL, progress=False)
    assert not (tmp_path / "cache").exists()


def test_preprocess_dataset_failure_keeps_finished_cases(tiny_dataset, tmp_path, write_nifti_file):
    root, cache = tiny_dataset(n_cases=2, compress=True), tmp_path / "cache"
    ct = nib.load(root / "volume-1.nii.gz")
    # NaN voxels pass validation (headers only) and fail when the CT is read in full
    write_nifti_file(root / "volume-1.nii.gz", np.full(ct.shape, np.nan, np.float32), ct.affine)
    expected = r"1 of 2 cases failed; the others are cached in .*\n  lits-1: .*NaN or infinite"
    with pytest.raises(DatasetError, match=expected):
        preprocess_dataset(root, cache, config=SMALL, progress=False)
    assert list(load_manifest(cache)["cases"]) == ["lits-0"]
    assert not (cache / "splits.json").exists()


def test_preprocess_dataset_accepts_case_list(tiny_dataset, tmp_path):
    cases = discover_cases(tiny_dataset(n_cases=3, layout="msd"))[:2]
    manifest = preprocess_dataset(cases, tmp_path / "cache", config=SMALL, progress=False)
    assert list(manifest["cases"]) == ["msd-0", "msd-1"]


def test_preprocess_real_ct_from_csv(shared_data, tmp_path):
    folder = shared_data / "real" / "lits-small-64"
    csv = tmp_path / "real.csv"
    csv.write_text(f"image,label,case_id\n{folder / 'resized_liver.nii'},{folder / 'resized_mask.nii'},small64\n")
    manifest = preprocess_dataset(csv, tmp_path / "cache", config=SMALL, progress=False)
    entry = manifest["cases"]["small64"]
    assert entry["shape"] == [64, 64, 33]
    assert entry["liver_ml"] > 0
    sample = CachedDataset(tmp_path / "cache")[0]
    assert 0.01 < float(sample["label"].mean()) < 0.5  # a real liver fills part of the abdomen


# ------------------------------------------------------------------------------------------ datasets


@pytest.mark.parametrize("in_memory", [True, False])
def test_cached_dataset_items(tiny_dataset, tmp_path, in_memory):
    cache = tmp_path / "cache"
    preprocess_dataset(tiny_dataset(n_cases=3), cache, config=SMALL, progress=False)
    dataset = CachedDataset(cache, in_memory=in_memory)
    assert len(dataset) == 3 and dataset.case_ids == ["lits-0", "lits-1", "lits-2"]
    item = dataset[1]
    assert item["case_id"] == "lits-1"
    assert item["image"].shape == item["label"].shape == (1, 16, 16, 8)
    assert item["image"].dtype == item["label"].dtype == torch.float32
    assert set(item["label"].unique().tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(item["image"][0].numpy(), np.load(cache / "lits-1_image.npy"))
    item["image"].zero_()  # the cached array must not change
    assert float(dataset[1]["image"].max()) > 0


def test_cached_dataset_subset_and_transform(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    preprocess_dataset(tiny_dataset(n_cases=3), cache, config=SMALL, progress=False)
    flip = lambda image, label: (image[::-1], label[::-1])  # noqa: E731
    dataset = CachedDataset(cache, load_split(cache / "splits.json")["val"], transform=flip, in_memory=False)
    assert len(dataset) == 1
    item = dataset[0]
    np.testing.assert_array_equal(item["label"][0].numpy(), np.load(cache / f"{item['case_id']}_label.npy")[::-1])


def test_cached_dataset_bad_input(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    preprocess_dataset(tiny_dataset(n_cases=2), cache, config=SMALL, progress=False)
    with pytest.raises(DatasetError, match=r"cases not in the cache: \['lits-9'\]"):
        CachedDataset(cache, ["lits-0", "lits-9"])
    (cache / "lits-1_label.npy").unlink()
    with pytest.raises(DatasetError, match=r"1 cached arrays are missing: .*lits-1_label.npy"):
        CachedDataset(cache)
    with pytest.raises(DatasetError, match=r"not a livseg cache \(no manifest.json\)"):
        CachedDataset(tmp_path)
    with pytest.raises(InputFileNotFoundError, match="cache folder not found"):
        load_manifest(tmp_path / "nowhere")
    (cache / "manifest.json").write_text('{"format": "something-else", "cases": {}}')
    with pytest.raises(DatasetError, match="not a livseg cache manifest"):
        load_manifest(cache)


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_preprocess(tiny_dataset, tmp_path, capsys):
    root, out = tiny_dataset(n_cases=3), tmp_path / "cache"
    argv = ["preprocess", str(root), "-o", str(out), "--set", "preprocess.target_shape=16,16,8", "--no-progress"]
    assert main(argv) == 0
    assert "cached 3 cases" in capsys.readouterr().out
    assert load_manifest(out)["preprocess"]["target_shape"] == [16, 16, 8]


def test_cli_preprocess_missing_folder(tmp_path, capsys):
    assert main(["preprocess", str(tmp_path / "nowhere"), "-o", str(tmp_path / "cache"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("livseg preprocess: error: dataset not found:") and "nowhere" in err


def test_cli_preprocess_bad_cases_one_line(tiny_dataset, tmp_path, capsys):
    root = tiny_dataset(n_cases=2, compress=True)
    (root / "segmentation-0.nii.gz").unlink()
    (root / "segmentation-1.nii.gz").unlink()
    assert main(["preprocess", str(root), "-o", str(tmp_path / "cache"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 of 2 cases are unusable: lits-0: no label" in err
