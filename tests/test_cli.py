"""The installed command as a user runs it: a fresh process, real stderr (ITK and torch write to
the C-level stream, which capsys cannot see), exit status 2 and exactly one line for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "livseg", *args], capture_output=True, text=True, timeout=120)


def bad_inputs(root: Path) -> dict[str, tuple[Path, str]]:
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no DICOM here")
    nib.save(nib.Nifti1Image(np.zeros((10, 10), np.int16), np.eye(4)), str(root / "flat.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 6, 2), np.int16), np.eye(4)), str(root / "series.nii.gz"))
    array = np.zeros((8, 8, 8), np.float32)
    array[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(root / "nan.nii.gz"))
    (root / "cut.nii.gz").write_bytes((root / "nan.nii.gz").read_bytes()[:40])
    return {
        "empty DICOM folder": (root / "empty", "folder holds no DICOM series"),
        "2D image": (root / "flat.nii.gz", r"\(a 2D image\); expected a 3D volume"),
        "4D image": (root / "series.nii.gz", r"\(a 4D image\); expected a 3D volume"),
        "NaN voxels": (root / "nan.nii.gz", "1 voxels are NaN or infinite"),
        "truncated file": (root / "cut.nii.gz", "cannot read NIfTI"),
        "missing file": (root / "nothing.nii.gz", "input not found"),
    }


@pytest.mark.slow
def test_predict_bad_inputs_one_line_exit_2_no_output(checkpoint: Path, tmp_path: Path) -> None:
    import re

    for what, (path, message) in bad_inputs(tmp_path).items():
        out = tmp_path / f"out-{what.replace(' ', '-')}"
        result = run_cli("predict", str(path), "--checkpoint", str(checkpoint), "-o", str(out), "--no-progress")
        assert result.returncode == 2, what
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (what, result.stderr)
        assert lines[0].startswith("livseg predict: error: ") and re.search(message, lines[0]), (what, lines[0])
        assert not out.exists() or not any(out.iterdir()), what


@pytest.mark.slow
def test_bad_checkpoints_exit_2_with_one_line(tmp_path: Path, checkpoint: Path) -> None:
    # the only exit-2 test of a bad checkpoint; load_checkpoint's errors: tests/nn/test_checkpoint.py
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    (tmp_path / "cut.pt").write_bytes(checkpoint.read_bytes()[:1000])
    ct = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8), np.int16), np.eye(4)), str(ct))
    for name, message in [("foreign.pt", "not a livseg checkpoint"), ("cut.pt", "cannot read checkpoint")]:
        result = run_cli("predict", str(ct), "--checkpoint", str(tmp_path / name), "-o", str(tmp_path / "o"))
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ output locations


def output_commands(root: Path, checkpoint: Path, out: Path) -> dict[str, list[str]]:
    """Every command with an output folder, pointed at ``out``; inputs are small but valid."""
    from helpers import write_case

    for n in range(2):
        write_case(root / "data", n)
    return {
        "predict": ["predict", str(root / "data" / "volume-0.nii.gz"), "--checkpoint", str(checkpoint), "-o", str(out)],
        "train": ["train", str(root / "data"), "-o", str(out), "--epochs", "1", "--set", "preprocess.target_shape=16,16,8",
                  "--set", "model.channels=4,8", "--no-progress"],
        "evaluate": ["evaluate", "--checkpoint", str(checkpoint), str(root / "data"), "--split", "all", "-o", str(out)],
        "phantom": ["phantom", "-o", str(out), "--n", "1", "--shape", "32", "32", "16"],
        "preprocess": ["preprocess", str(root / "data"), "-o", str(out), "--no-progress"],
        "demo": ["demo", "-o", str(out), "--minutes", "0.5", "--no-progress"],
    }


def test_output_that_is_a_file_exits_2_before_any_work(checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from livseg.cli import main

    out = tmp_path / "taken.txt"
    out.write_text("a file, not a folder\n")
    for command, argv in output_commands(tmp_path, checkpoint, out).items():
        capsys.readouterr()
        assert main(argv) == 2, command
        err = capsys.readouterr().err.strip()
        assert err == f"livseg {command}: error: {out} is a file, not a folder; give -o a new or existing folder", err
        assert out.read_text() == "a file, not a folder\n"
    nested = tmp_path / "taken.txt" / "sub"
    assert main(["phantom", "-o", str(nested), "--n", "1"]) == 2
    assert f"{out} is a file" in capsys.readouterr().err


@pytest.mark.slow
def test_unwritable_output_folder_exits_2_before_any_work(checkpoint: Path, tmp_path: Path) -> None:
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed: cannot drop root's permission override to test this")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)  # root ignores this unless the capability that overrides it is dropped
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    for command, argv in output_commands(tmp_path, checkpoint, locked / "out").items():
        result = subprocess.run([*drop, sys.executable, "-m", "livseg", *argv], capture_output=True, text=True,
                                timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (command, result.stderr)
        assert lines[0] == f"livseg {command}: error: cannot create {locked / 'out'}: {locked} is not writable " \
                           "(permission denied); choose a folder you can write to", lines[0]
        assert not (locked / "out").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "{data}", "-o", "{out}", "--set", "train.lr=NaN"], "train.lr: expected a finite number, got nan"),
        (["train", "{data}", "-o", "{out}", "--threads", "100000"], "train.num_threads: expected 0 (all cores) to 1024"),
        (["train", "{data}", "-o", "{out}", "--max-minutes", "nan"], "max_seconds: expected a positive number"),
        (["preprocess", "{data}", "-o", "{out}", "--set", "preprocess.hu_min=NaN"], "preprocess.hu_min: expected a finite"),
        (["preprocess", "{data}", "-o", "{out}", "--val-fraction", "nan"], "val_fraction: expected 0 <= f < 1, got nan"),
        (["predict", "{data}", "--checkpoint", "{checkpoint}", "-o", "{out}", "--threshold", "nan"],
         "threshold must lie strictly between 0 and 1, got nan"),
        (["evaluate", "--checkpoint", "{checkpoint}", "{data}", "-o", "{out}", "--threshold", "inf"],
         "threshold must lie strictly between 0 and 1, got inf"),
        (["demo", "-o", "{out}", "--minutes", "nan"], "minutes=nan: expected a positive number of minutes"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_non_finite_settings_exit_2_and_write_nothing(argv, message, checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from helpers import write_case

    from livseg.cli import main

    for n in range(2):
        write_case(tmp_path / "data", n)
    out = tmp_path / "out"
    values = {"data": str(tmp_path / "data"), "out": str(out), "checkpoint": str(checkpoint)}
    capsys.readouterr()
    assert main([arg.format(**values) for arg in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_a_closed_pipe_stops_quietly_without_a_traceback() -> None:
    # `livseg models | head -1`: the reader is gone before livseg writes (closed before it starts)
    child = subprocess.Popen([sys.executable, "-m", "livseg", "models"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    stderr = child.stderr.read()
    assert child.wait(timeout=120) == 141, stderr
    assert stderr == ""
