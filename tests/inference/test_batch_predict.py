"""Batch `livseg predict`: a failing case in the overlapped pipeline, and cases shared among torchrun
ranks (two CPU processes over gloo) with one combined report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_case

from livseg.cli import main


def three_cases(folder: Path, bad: int | None = None) -> list[Path]:
    """volume-0..2 (the labels beside them are not inputs); ``bad`` is truncated half-way."""
    for n in range(3):
        write_case(folder, n, shape=(30, 22, 13))
    images = [folder / f"volume-{n}.nii.gz" for n in range(3)]
    if bad is not None:
        data = images[bad].read_bytes()
        images[bad].write_bytes(data[: len(data) // 2])
    return images


@pytest.mark.parametrize("overlap", ["--overlap", "--no-overlap"])
def test_a_bad_case_stops_the_batch_with_no_partial_outputs(overlap: str, checkpoint: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    images = three_cases(tmp_path / "in", bad=1)
    out = tmp_path / "out"
    rc = main(["predict", *map(str, images), "--checkpoint", str(checkpoint), "-o", str(out), "--save-probabilities",
               overlap])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "volume-1.nii.gz" in err, err
    # the case before it is complete, the bad one and the one after it have nothing, no temporary files
    assert sorted(p.name for p in out.iterdir()) == [
        "volume-0_liver.nii.gz", "volume-0_liver_probability.nii.gz", "volume-0_stats.json"]


@pytest.mark.slow
def test_torchrun_shares_cases_among_two_cpu_ranks(checkpoint: Path, tmp_path: Path) -> None:
    images = three_cases(tmp_path / "in")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "livseg", "predict", *map(str, images), "--checkpoint", str(checkpoint), "-o", str(out),
               "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    names = ["volume-0", "volume-1", "volume-2"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}_liver.nii.gz" for n in names] + [f"{n}_stats.json" for n in names] + ["report.html"])
    # rank 0 reports all, once (flagged cases first, each with its one WARNING line: this tiny model's masks are poor)
    lines = done.stdout.splitlines()
    assert sorted(line.split(":")[0] for line in lines if not line.startswith("WARNING ")) == names
    assert all(line.split(":")[0].removeprefix("WARNING ") in names for line in lines if line.startswith("WARNING "))
    report = (out / "report.html").read_text()
    assert all(name in report for name in names)
    # each case segmented once, as a single process segments it
    single = tmp_path / "single"
    assert main(["predict", str(images[1]), "--checkpoint", str(checkpoint), "-o", str(single), "--device", "cpu"]) == 0
    np.testing.assert_array_equal(np.asarray(nib.load(str(out / "volume-1_liver.nii.gz")).dataobj),
                                  np.asarray(nib.load(str(single / "volume-1_liver.nii.gz")).dataobj))

    # a bad case on rank 1 (cases are dealt 0, 2 -> rank 0 and 1 -> rank 1): every rank stops with the error
    bad_out = tmp_path / "bad"
    images = three_cases(tmp_path / "bad_in", bad=1)
    command[command.index(str(out))] = str(bad_out)
    command[command.index("predict") + 1 : command.index("predict") + 4] = map(str, images)
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode != 0
    assert done.stderr.count("livseg predict: error:") == 2 and "volume-1.nii.gz" in done.stderr
    assert "Traceback" not in done.stderr.split("livseg predict: error:")[0]
    # rank 0's own cases are complete; nothing of the bad case, no report, no temporary files
    assert sorted(p.name for p in bad_out.iterdir()) == [
        "volume-0_liver.nii.gz", "volume-0_stats.json", "volume-2_liver.nii.gz", "volume-2_stats.json"]


@pytest.mark.parametrize("device, env, expected", [
    ("cuda", {"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, ("cuda:1", 0, True)),  # one GPU per rank, overlapped
    ("cpu", {"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, ("cpu", 1, True)),  # the 2 cores shared out: 1 thread each
    ("cpu", {}, ("cpu", 2, False)),  # one process, 2 threads: a reader would stall them, one case at a time
])
def test_each_rank_takes_its_gpu_or_its_share_of_the_cores(
    device: str, env: dict, expected: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No GPU and no process group here: CUDA is faked, WORLD_SIZE=1 keeps the group out of it, and
    # the machine has 2 cores; what is tested is what each rank asks for.
    import torch

    import livseg.inference.predict as predict_module

    for name, value in {"WORLD_SIZE": "1", **env}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(predict_module, "cpu_count", lambda: 2)
    asked: dict = {}

    def fake_load_model(checkpoint: Path, target: torch.device, num_threads: int = 0) -> tuple:
        asked.update(device=str(target), threads=num_threads)
        return object(), None

    def fake_run_cases(cases: list, runner: object, *, progress: bool, overlap: bool) -> list:
        asked.update(overlap=overlap)
        return []

    monkeypatch.setattr(predict_module, "load_model", fake_load_model)
    monkeypatch.setattr(predict_module, "_run_cases", fake_run_cases)
    write_case(tmp_path / "in", 0)
    predict_module.predict([tmp_path / "in" / "volume-0.nii.gz"], checkpoint=tmp_path / "m.pt", out_dir=tmp_path / "o",
                           device=device, progress=False)
    assert (asked["device"], asked["threads"], asked["overlap"]) == expected
