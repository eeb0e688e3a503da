"""Fixtures of the PACS tests: a real Orthanc with DICOMweb (skipped only where Orthanc is not
installed), the IRCADb series, copies of it under new UIDs, and the built-in model loaded once."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from orthanc_server import Orthanc, find_binary, find_plugin


@pytest.fixture(scope="session")
def orthanc_programs() -> tuple[str, str]:
    binary = find_binary()
    if binary is None:
        pytest.skip("Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb; .ci/run does it "
                    "as root): the PACS tests run against a real archive")
    plugin = find_plugin()
    if plugin is None:
        pytest.fail("Orthanc is installed but not its DICOMweb plugin: apt-get install orthanc-dicomweb "
                    "(or set LIVSEG_ORTHANC_DICOMWEB to the plugin's .so)")
    return binary, plugin


def start_orthanc(root: Path, programs: tuple[str, str]) -> Orthanc:
    server = Orthanc(root, *programs)
    server.start()
    return server


@pytest.fixture(scope="module")
def archive(orthanc_programs: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc for a test module (tests in it must not depend on what others stored)."""
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"), orthanc_programs)
    yield server
    server.stop()


@pytest.fixture
def fresh_archive(orthanc_programs: tuple[str, str], tmp_path: Path) -> Iterator[Orthanc]:
    """An empty Orthanc of the test's own."""
    server = start_orthanc(tmp_path / "orthanc", orthanc_programs)
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
