"""Small builders shared by several test modules, imported as ``helpers`` (pyproject's pytest
``pythonpath`` puts tests/ on sys.path; the test folders are not packages)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from livseg.config import AugmentConfig, ModelConfig, PatchConfig, PreprocessConfig, RegionConfig, RunConfig, TrainConfig

# tests/helpers.py -> parents[0] tests, [1] the repository (/work/main), [2] its parent (/work)
SHARED_DATA = Path(os.environ.get("LIVSEG_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")

# The one run configuration of the tests: a U-Net small enough to train three epochs in about a
# second on one core. Dropout stays at the paper's 0.2 so that exact resumption must restore the
# dropout RNG; val_fraction 0.4 splits seven cases 4/3 and three cases 2/1.
TINY = RunConfig(
    name="tiny",
    preprocess=PreprocessConfig(target_shape=(16, 16, 8)),
    model=ModelConfig(channels=(4, 8)),
    train=TrainConfig(epochs=3, lr=1e-2, val_fraction=0.4, num_threads=1),
)


def write_case(folder: Path, n: int, shape: tuple[int, int, int] = (24, 20, 12)) -> None:
    """A tiny LiTS-style case: body at 40 HU, a liver block at 120 HU labelled 1 (2 = tumour)."""
    rng = np.random.default_rng(n)
    ct = np.full(shape, -1000.0, dtype=np.float32)
    ct[1:-1, 1:-1, :] = 40
    labels = np.zeros(shape, dtype=np.uint8)
    labels[3 + n % 2 : 12, 4:15, 2:10] = 1
    labels[6, 8, 5] = 2
    ct[labels > 0] = 120
    ct += rng.normal(0, 5, shape).astype(np.float32)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(ct.astype(np.int16), affine), str(folder / f"volume-{n}.nii.gz"))
    nib.save(nib.Nifti1Image(labels, affine), str(folder / f"segmentation-{n}.nii.gz"))


# Stage 2 of the tests: TINY's network with two outputs on a 2 mm region, 16 x 16 x 8 patches.
TINY_REGION = RunConfig(
    name="tiny-region",
    preprocess=PreprocessConfig(target_shape=(16, 16, 8), reorient=True),
    model=ModelConfig(out_channels=2, channels=(4, 8)),
    train=TrainConfig(epochs=2, lr=1e-2, val_fraction=0.4, num_threads=1),
    region=RegionConfig(enabled=True, spacing_mm=(2.0, 2.0, 3.0), margin_mm=4.0, jitter_mm=2.0,
                        patch_shape=(16, 16, 8), tumour_fraction=0.5),
)


def write_tumour_case(folder: Path, n: int, shape: tuple[int, int, int] = (40, 36, 20)) -> None:
    """A LiTS-style case with an ellipsoid liver (150 HU) and one spherical tumour (400 HU) in it,
    on a LiTS-like grid (x and y flipped, 1.5 x 1.5 x 3 mm). Labels 0/1/2; CT without noise, so that
    the window [-100, 400] maps background, liver and tumour onto 0, 0.5 and 1."""
    rng = np.random.default_rng(100 + n)
    grid = np.meshgrid(*(np.arange(s, dtype=float) for s in shape), indexing="ij")
    centre = np.array(shape) / 2 + rng.uniform(-2, 2, 3)
    liver = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, (12.0, 10.0, 6.0))) <= 1
    spot = centre + rng.uniform(-3, 3, 3) * (1, 1, 0.3)
    tumour = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, spot, (3.5, 3.5, 1.8))) <= 1
    labels = liver.astype(np.uint8)
    labels[tumour & liver] = 2
    ct = np.choose(labels, [-100, 150, 400]).astype(np.int16)
    affine = np.diag([-1.5, -1.5, 3.0, 1.0])
    affine[:3, 3] = (30.0, 27.0, -30.0)
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(ct, affine), str(folder / f"volume-{n}.nii.gz"))
    nib.save(nib.Nifti1Image(labels, affine), str(folder / f"segmentation-{n}.nii.gz"))


# Patch sampling in the tests: the built-in model's recipe (fixed spacing, patches, warm-up and
# cosine, torch augmentation) at toy size; write_tumour_case's 40 x 36 x 20 cases become 30 x 27 x 20
# at 2 x 2 x 3 mm. Dropout stays on, so that exact resumption must restore torch's RNG too.
TINY_PATCHES = RunConfig(
    name="tiny-patches",
    preprocess=PreprocessConfig(target_shape=(16, 16, 8), reorient=True, spacing=(2.0, 2.0, 3.0)),
    model=ModelConfig(channels=(4, 8)),
    train=TrainConfig(epochs=3, batch_size=2, lr=1e-2, lr_schedule="cosine", sampling="patches", val_fraction=0.4,
                      num_threads=1, augment=AugmentConfig(enabled=True, flip_prob=0.0)),
    patches=PatchConfig(steps_per_round=4, warmup_steps=2),
)


def write_dicom_series(
    folder: Path,
    positions: list[tuple[float, float, float]],
    *,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    uid: str = "1.2.826.0.1.3680043.2.1125.1",
    description: str = "",
    patient_id: str = "",
    shape: tuple[int, int] = (16, 16),
) -> Path:
    """A synthetic CT series, one 0.8 mm-pixel slice per ImagePositionPatient in ``positions``
    (slice k holds 10 * k HU), written with SimpleITK; ``orientations`` (per slice) may differ."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k, position in enumerate(positions):
        image = sitk.GetImageFromArray(np.full(shape[::-1], 10 * k, np.int16))
        image.SetSpacing((0.8, 0.8))
        slice_orientation = orientation[6 * k : 6 * k + 6] if len(orientation) > 6 else orientation
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"{uid}.{k + 1}", "0008|0060": "CT",
            "0020|000d": f"{uid}.0", "0020|000e": uid, "0020|0013": str(k + 1), "0028|0030": "0.8\\0.8",
            "0020|0032": "\\".join(f"{v:.4f}" for v in position),
            "0020|0037": "\\".join(f"{v:g}" for v in slice_orientation),
            "0008|103e": description, "0010|0020": patient_id,
        }
        for key, value in tags.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(image)
    return folder


def voxel_mask(shape: tuple[int, int, int], *voxels: tuple) -> np.ndarray:
    """A boolean array of ``shape`` that is True at each index (voxel or slices) given."""
    mask = np.zeros(shape, dtype=bool)
    for index in voxels:
        mask[index] = True
    return mask


def nifti_with_header(path: Path, array: np.ndarray, affine: np.ndarray, **fields: object) -> Path:
    """An uncompressed NIfTI of ``array`` whose raw header fields are then set as given, byte for
    byte, without nibabel's checks or fixes (``qform_code=0``, ``srow_x={1: 1.5}`` sets one entry,
    ``pixdim={1: -2.0}``, ``xyzt_units=1`` metres): how a header written by another tool looks."""
    assert path.name.endswith(".nii"), "raw header editing needs an uncompressed .nii"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    raw = bytearray(path.read_bytes())
    header = nib.Nifti1Header(binaryblock=bytes(raw[:348]), check=False)
    for key, value in fields.items():
        if isinstance(value, dict):
            for index, entry in value.items():
                header[key][index] = entry
        else:
            header[key] = value
    raw[:348] = header.binaryblock
    path.write_bytes(bytes(raw))
    return path


# ----------------------------------------------------------------------------- the command line, for bad-input tests

AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])  # LiTS-like: x and y flipped


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``livseg args`` as its own process: stderr whole, C-level writes (ITK) and log lines included."""
    return subprocess.run([sys.executable, "-m", "livseg", *args], capture_output=True, text=True, timeout=300)


def refused(capsys, argv: list[str], message: str, *untouched: Path) -> str:  # noqa: ANN001 (pytest's capsys)
    """Run ``livseg argv`` in this process: exit 2 and one line on stderr that matches ``message``;
    each path in ``untouched`` does not exist afterwards. Returns the line. (Log lines go to pytest's
    log capture here: a test of everything on stderr uses :func:`run_cli`.)"""
    import re

    from livseg.cli import main

    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert re.search(message, err), err
    for path in untouched:
        assert not path.exists(), path
    return err


def body_ct(shape: tuple[int, int, int] = (24, 20, 12), inside: float = 40.0) -> np.ndarray:
    """Air around a box of ``inside`` HU (int16)."""
    ct = np.full(shape, -1000, np.int16)
    ct[2:-2, 2:-2, :] = inside
    return ct
