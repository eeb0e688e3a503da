"""A private Orthanc (with its DICOMweb plugin) for the PACS tests and benchmarks/bench_pacs.py.

The configuration is the README's own ("Connect to your PACS"), with the ports, the storage
folder and the plugin path replaced, so a test run also proves that configuration works. Each
instance listens on free localhost ports and stores into a temporary folder; it can be stopped
and started again on the same ports and storage (the archive going down and coming back).
Imported as ``orthanc_server`` (tests/ is on sys.path; the benchmark adds it).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable

import requests

README = Path(__file__).resolve().parents[1] / "README.md"
USER, PASSWORD = "livseg", "change-me"  # the README's example account
PLUGIN_GLOBS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so*", "/usr/lib/orthanc/libOrthancDicomWeb.so*",
                "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so*")


def find_binary() -> str | None:
    """The Orthanc executable (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    return os.environ.get("LIVSEG_ORTHANC") or shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK) else None)


def find_plugin() -> str | None:
    """The DICOMweb plugin library (Debian package orthanc-dicomweb)."""
    if os.environ.get("LIVSEG_ORTHANC_DICOMWEB"):
        return os.environ["LIVSEG_ORTHANC_DICOMWEB"]
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def readme_config() -> dict:
    """The JSON block of the README's "Connect to your PACS" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Connect to your PACS", 1)
    if len(section) != 2:
        raise RuntimeError(f"{README} has no '## Connect to your PACS' section")
    block = re.search(r"```json\n(.*?)```", section[1], re.DOTALL)
    if block is None:
        raise RuntimeError(f"{README}: no JSON block in 'Connect to your PACS'")
    return json.loads(block.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process on free ports, storing under ``root``; ``extra`` configuration on top
    of the README's (``DicomModalities`` for the DIMSE tests)."""

    def __init__(self, root: Path, binary: str, plugin: str, extra: dict | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        config = readme_config()
        config.update(StorageDirectory=str(self.root / "db"), IndexDirectory=str(self.root / "db"),
                      HttpPort=self.http_port, DicomPort=self.dicom_port, Plugins=[plugin], **(extra or {}))
        self.config_path = self.root / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.binary = binary
        self.process: subprocess.Popen | None = None
        self.auth = (USER, PASSWORD)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    def start(self, timeout_s: float = 60.0) -> None:
        log = open(self.root / "orthanc.log", "ab")  # noqa: SIM115 (the process writes to it)
        self.process = subprocess.Popen([self.binary, str(self.config_path)], cwd=self.root, stdout=log,
                                        stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if requests.get(f"{self.base}/system", auth=self.auth, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 8) -> str:
        path = self.root / "orthanc.log"
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    def upload(self, files: Iterable[Path]) -> int:
        """Store DICOM files through Orthanc's own REST API (not the code under test)."""
        count = 0
        for path in files:
            answer = requests.post(f"{self.base}/instances", data=Path(path).read_bytes(), auth=self.auth, timeout=30)
            answer.raise_for_status()
            count += 1
        return count

    def orthanc_id(self, uid: str) -> str:
        """Orthanc's own identifier of a study, series or instance UID."""
        found = requests.post(f"{self.base}/tools/lookup", data=uid, auth=self.auth, timeout=30)
        found.raise_for_status()
        return found.json()[0]["ID"]

    def series_of_study(self, study_uid: str) -> list[dict]:
        """The study's series as Orthanc's REST API sees them (MainDicomTags and instances)."""
        found = requests.post(f"{self.base}/tools/find", auth=self.auth, timeout=30,
                              json={"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True})
        found.raise_for_status()
        return found.json()


def client_for(server: Orthanc, **kwargs: object):  # noqa: ANN201 (livseg.pacs.PacsClient)
    """A livseg PacsClient for the server, with the README's account."""
    from livseg.pacs.client import Credentials, PacsClient

    return PacsClient(server.dicomweb, credentials=Credentials(USER, PASSWORD), **kwargs)


def copy_series(sources: list[Path], folder: Path, *, study_uid: str | None = None, description: str = "",
                number: int = 1, image_type: list[str] | None = None) -> tuple[str, str, list[Path]]:
    """A copy of a DICOM series with new Study (unless given), Series and SOP Instance UIDs.

    Returns:
        ``(study_uid, series_uid, files)``.
    """
    import pydicom
    from pydicom.uid import generate_uid

    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k, source in enumerate(sources):
        ds = pydicom.dcmread(source)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesDescription, ds.SeriesNumber = description, number
        if image_type is not None:
            ds.ImageType = image_type
        path = folder / f"{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return study_uid, series_uid, files
