"""Small builders shared by several test modules, imported as ``helpers`` (pyproject's pytest
``pythonpath`` puts tests/ on sys.path; the test folders are not packages)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from livseg.config import ModelConfig, PreprocessConfig, RunConfig, TrainConfig

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
