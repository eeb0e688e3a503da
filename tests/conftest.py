"""Shared fixtures: the real-data folder, tiny synthetic datasets in the LiTS / MSD layouts, one
trained TINY run that every test needing a checkpoint shares, and for tests/pacs/ a real Orthanc
(one per module, or a fresh one per test), IRCADb's slices in order and the built-in model.

The PACS fixtures live here, not in tests/pacs/conftest.py: test folders are not packages, so a
second conftest.py would take the module name ``conftest`` that tests import helpers from."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import nibabel as nib
import numpy as np
import pytest
from helpers import SHARED_DATA, TINY, TINY_REGION, write_case, write_tumour_case


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real CT folder (../shared/data, or $LIVSEG_SHARED_DATA); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: real CT tests need the shared data folder")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A three-epoch TINY run on three small synthetic cases (two train, one validates), trained once
    per session: ``data`` (LiTS layout), ``run`` (the run folder), ``checkpoint`` (its best.pt) and
    ``cache``. Tests must not write into it."""
    from livseg.training.train import train

    root = tmp_path_factory.mktemp("trained")
    for n in range(3):
        write_case(root / "data", n)
    result = train(root / "data", root / "run", TINY, device="cpu", progress=False)
    return {"data": root / "data", "run": root / "run", "checkpoint": result.paths["best"], "cache": result.paths["cache"]}


@pytest.fixture(scope="session")
def cascade_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both stages trained briefly on five cases with a tumour each (:func:`helpers.write_tumour_case`)
    and joined into one cascade checkpoint, once per session: ``data``, ``liver`` and ``tumour``
    (the stages' best.pt), ``stage2_run`` (its run folder) and ``cascade``. Tests must not write into it."""
    from livseg.nn.checkpoint import save_cascade
    from livseg.training.train import train

    root = tmp_path_factory.mktemp("cascade")
    for n in range(5):
        write_tumour_case(root / "data", n)
    liver = train(root / "data", root / "stage1", TINY, device="cpu", progress=False).paths["best"]
    tumour = train(root / "data", root / "stage2", TINY_REGION, device="cpu", progress=False).paths["best"]
    cascade = save_cascade(root / "cascade.pt", liver, tumour)
    return {"data": root / "data", "liver": liver, "tumour": tumour, "stage2_run": root / "stage2", "cascade": cascade}


@pytest.fixture(scope="session")
def tumour_cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five LiTS-layout cases of :func:`helpers.write_tumour_case` (an ellipsoid liver with a tumour on a
    1.5 x 1.5 x 3 mm grid), written once per session, for patch training. Tests must not write into it."""
    folder = tmp_path_factory.mktemp("tumour-cases")
    for n in range(5):
        write_tumour_case(folder, n)
    return folder


@pytest.fixture(scope="session")
def checkpoint(trained_run: dict[str, Path]) -> Path:
    """best.pt of :func:`trained_run`."""
    return trained_run["checkpoint"]


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` as NIfTI (dtype kept; .nii or .nii.gz by name), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0]) if affine is None else affine  # LiTS-like: x, y flipped
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def synthetic_case(
    shape: Sequence[int] = (12, 10, 8), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A tiny CT (int16 HU: air, soft-tissue body, brighter liver block) and its 0/1/2 labels."""
    rng = np.random.default_rng(seed)
    x, y, z = (int(s) for s in shape)
    ct = np.full((x, y, z), -1000, dtype=np.int16)
    ct[1:-1, 1:-1, :] = 40  # body
    labels = np.zeros((x, y, z), dtype=np.uint8)
    # liver: a block in the first half of x, slightly different per seed
    x0 = 2 + int(rng.integers(0, 2))
    labels[x0 : x0 + max(2, x // 2 - 1), 2 : max(4, y - 3), 1 : max(3, z - 2)] = 1
    labels[x0 + 1, 3, 2] = 2  # one tumour voxel inside the liver
    ct[labels == 1] = 60
    ct[labels == 2] = 20
    ct = (ct + rng.normal(0, 5, ct.shape)).astype(np.int16)
    return ct, labels


@pytest.fixture
def write_nifti_file() -> Callable[..., Path]:
    """The :func:`write_nifti` helper, for tests that build their own broken files."""
    return write_nifti


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing tiny synthetic datasets; returns the dataset folder.

    ``tiny_dataset(n_cases=3, layout="lits", shape=(12, 10, 8), batches=1, compress=None,
    spacing=(0.8, 0.8, 2.5), name="data")``:

    - ``layout="lits"``: ``volume-N`` / ``segmentation-N`` (N from 0), split into ``batches``
      folders "Training Batch 1", "Training Batch 2", ... when ``batches > 1``. ``compress``:
      True .nii.gz, False .nii, None alternates (.nii.gz for even N) as a real download mixes.
    - ``layout="msd"``: ``imagesTr/liver_N.nii.gz`` + ``labelsTr/liver_N.nii.gz`` plus a macOS
      ``._liver_0.nii.gz`` junk file that discovery must skip.

    Labels hold 0/1/2 (one tumour voxel per case); CT is int16 HU.
    """

    def make(
        n_cases: int = 3,
        *,
        layout: str = "lits",
        shape: Sequence[int] = (12, 10, 8),
        batches: int = 1,
        compress: bool | None = None,
        spacing: Sequence[float] = (0.8, 0.8, 2.5),
        name: str = "data",
    ) -> Path:
        root = tmp_path / name
        affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
        affine[:3, 3] = (100.0, 120.0, -300.0)
        for n in range(n_cases):
            ct, labels = synthetic_case(shape, seed=n)
            if layout == "lits":
                folder = root / f"Training Batch {n * batches // n_cases + 1}" if batches > 1 else root
                ext = ".nii.gz" if (compress if compress is not None else n % 2 == 0) else ".nii"
                write_nifti(folder / f"volume-{n}{ext}", ct, affine)
                write_nifti(folder / f"segmentation-{n}{ext}", labels, affine)
            elif layout == "msd":
                write_nifti(root / "imagesTr" / f"liver_{n}.nii.gz", ct, affine)
                write_nifti(root / "labelsTr" / f"liver_{n}.nii.gz", labels, affine)
            else:
                raise ValueError(f"layout must be 'lits' or 'msd', got {layout!r}")
        if layout == "msd":
            (root / "imagesTr" / "._liver_0.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
        return root

    return make


# ------------------------------------------------------------------ PACS (tests/pacs/): a real Orthanc


@pytest.fixture(scope="session")
def orthanc_programs() -> tuple[str, str]:
    """Orthanc and its DICOMweb plugin (tests/pacs/); skips only where Orthanc is not installed."""
    from orthanc_server import find_binary, find_plugin

    binary = find_binary()
    if binary is None:
        pytest.skip("Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb; .ci/run does it "
                    "as root): the PACS tests run against a real archive")
    plugin = find_plugin()
    if plugin is None:
        pytest.fail("Orthanc is installed but not its DICOMweb plugin: apt-get install orthanc-dicomweb "
                    "(or set LIVSEG_ORTHANC_DICOMWEB to the plugin's .so)")
    return binary, plugin


def _start_orthanc(root: Path, programs: tuple[str, str]):  # noqa: ANN202 (orthanc_server.Orthanc)
    from orthanc_server import Orthanc

    server = Orthanc(root, *programs)
    server.start()
    return server


@pytest.fixture(scope="module")
def archive(orthanc_programs: tuple[str, str], tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 (yields orthanc_server.Orthanc)
    """One Orthanc for a test module (tests in it must not depend on what others stored)."""
    server = _start_orthanc(tmp_path_factory.mktemp("orthanc"), orthanc_programs)
    yield server
    server.stop()


@pytest.fixture
def fresh_archive(orthanc_programs: tuple[str, str], tmp_path: Path):  # noqa: ANN201 (yields orthanc_server.Orthanc)
    """An empty Orthanc of the test's own."""
    server = _start_orthanc(tmp_path / "orthanc", orthanc_programs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ircadb_files(shared_data: Path) -> list[Path]:
    """3D-IRCADb-01 patient 1: 129 axial CT slices (no Frame of Reference UID, empty PatientID),
    in slice order (by position: the file names sort as image_0, image_1, image_10, ...)."""
    import pydicom

    folder = shared_data / "real/ircadb-01-patient1/PATIENT_DICOM"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: the PACS tests upload this real CT series")
    return sorted(folder.iterdir(), key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))


@pytest.fixture(scope="session")
def segmenter():  # noqa: ANN201 (livseg.pacs.Segmenter; imported here so collection stays light)
    """The built-in model, loaded once for every PACS test."""
    from livseg.pacs.node import Segmenter

    return Segmenter(device="cpu")
