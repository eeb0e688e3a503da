"""`livseg pacs` as a user runs it, in a subprocess, against a real Orthanc: send, list, watch
--once, status, SIGTERM, and the one-line failures with their exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from orthanc_server import PASSWORD, USER, Orthanc, copy_series

pytestmark = pytest.mark.slow


def livseg(*args: str, password: str = PASSWORD, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIVSEG_PACS_USER": USER, "LIVSEG_PACS_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "livseg", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def series(archive: Orthanc, ircadb_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    study, uid, files = copy_series(ircadb_files[30:94], tmp_path_factory.mktemp("series"), description="Abdomen",
                                    number=5)
    archive.upload(files)
    return {"study": study, "series": uid}


def test_send_list_and_the_seg_beside_the_ct(archive: Orthanc, series: dict[str, str], tmp_path: Path) -> None:
    listed = livseg("pacs", "list", archive.dicomweb, "--study-date", "all")
    assert listed.returncode == 0 and series["series"] in listed.stdout and "64 images  'Abdomen'" in listed.stdout
    sent = livseg("pacs", "send", archive.dicomweb, "--study", series["study"], "-o", str(tmp_path / "out"))
    assert sent.returncode == 0, sent.stderr
    assert f'series 5 "Abdomen" (64 images, {series["series"]}): liver' in sent.stdout
    assert f"stored in study {series['study']}" in sent.stdout and "retrieve" in sent.stdout
    assert "segmenting series 5" in sent.stderr and "64 axial slices" in sent.stderr
    assert "copy attributes" not in sent.stderr  # highdicom's narration is kept out
    assert (tmp_path / "out" / f"{series['series']}_liver.nii.gz").is_file()
    in_study = livseg("pacs", "list", archive.dicomweb, "--study", series["study"])
    assert "SEG  study" in in_study.stdout and "'livseg segmentation'" in in_study.stdout
    again = livseg("pacs", "send", archive.dicomweb, "--series", series["series"], "-o", str(tmp_path / "out"))
    assert again.returncode == 2 and "Traceback" not in again.stderr  # refused before retrieving anything
    assert again.stderr.splitlines()[-1].startswith("livseg pacs: error: 3 output file(s) exist")


def test_failures_are_one_line_with_their_exit_status(archive: Orthanc, tmp_path: Path) -> None:
    down = livseg("pacs", "send", "http://127.0.0.1:1/dicom-web", "--study", "1.2.3")
    assert down.returncode == 3 and down.stderr.startswith("livseg pacs send: error: cannot reach the archive")
    assert "Traceback" not in down.stderr and down.stderr.count("\n") == 1
    refused = livseg("pacs", "list", archive.dicomweb, password="not-the-password")
    assert refused.returncode == 2 and "refused the credentials (HTTP 401)" in refused.stderr
    assert "not-the-password" not in refused.stderr + refused.stdout
    in_url = livseg("pacs", "list", f"http://{USER}:{PASSWORD}@127.0.0.1:{archive.http_port}/dicom-web")
    assert in_url.returncode == 2 and "holds credentials" in in_url.stderr and PASSWORD not in in_url.stderr
    neither = livseg("pacs", "send", archive.dicomweb)
    assert neither.returncode == 2 and "give --study UID or --series UID" in neither.stderr
    cron = livseg("pacs", "watch", "http://127.0.0.1:1/dicom-web", "--state", str(tmp_path / "s.sqlite"), "--once")
    assert cron.returncode == 3 and "poll failed: cannot reach the archive" in cron.stderr
    assert cron.stderr.splitlines()[-1].startswith("livseg pacs watch: error: cannot reach the archive")


def test_watch_once_status_and_sigterm(archive: Orthanc, series: dict[str, str], tmp_path: Path) -> None:
    state = tmp_path / "watch.sqlite"
    watch = ["pacs", "watch", archive.dicomweb, "--state", str(state), "--study-date", "all", "--settle", "0",
             "--description", "abdomen"]
    first = livseg(*watch, "--once")
    assert first.returncode == 0, first.stderr
    assert f'done series 5 "Abdomen" (64 images, {series["series"]}): liver' in first.stderr
    status = livseg("pacs", "status", "--state", str(state))
    assert status.returncode == 0 and f"done     series 5 \"Abdomen\" (64 images, {series['series']}): SEG " in status.stdout
    assert livseg(*watch, "--once").stderr.count("done series") == 0  # a second run sends nothing

    env = {**os.environ, "LIVSEG_PACS_USER": USER, "LIVSEG_PACS_PASSWORD": PASSWORD}
    child = subprocess.Popen([sys.executable, "-m", "livseg", *watch, "--interval", "0.5"], env=env,
                             stderr=subprocess.PIPE, text=True)
    seen = []
    for line in child.stderr:  # the loop is about to start
        seen.append(line)
        if "watching http://" in line:
            break
    time.sleep(1.5)  # a few polls, each finding nothing new
    child.send_signal(signal.SIGTERM)
    _, rest = child.communicate(timeout=60)
    stderr = "".join(seen) + rest
    assert child.returncode == 0, stderr
    assert "SIGTERM: finishing the current series, then stopping" in stderr and "Traceback" not in stderr
    assert "this run: 0 done, 0 failed, 0 skipped; the state holds 1 done" in stderr


def test_listen_starts_stops_on_sigterm_and_refuses_a_bad_peer(tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom", reason="the DIMSE node needs pynetdicom (the pacs extra)")
    from orthanc_server import free_port

    bad = livseg("pacs", "listen", "--send-to", "ORTHANC@localhost", "--spool", str(tmp_path / "spool"),
                 "--state", str(tmp_path / "s.sqlite"))
    assert bad.returncode == 2 and bad.stderr.strip().endswith("expected AETITLE@host:port, e.g. ORTHANC@localhost:4242")
    child = subprocess.Popen([sys.executable, "-m", "livseg", "pacs", "listen", "--send-to", "ORTHANC@127.0.0.1:4242",
                              "--port", str(free_port()), "--address", "127.0.0.1", "--spool", str(tmp_path / "spool"),
                              "--state", str(tmp_path / "s.sqlite")], stderr=subprocess.PIPE, text=True)
    seen = []
    for line in child.stderr:
        seen.append(line)
        if "listening on port" in line:
            break
    child.send_signal(signal.SIGTERM)
    _, rest = child.communicate(timeout=60)
    stderr = "".join(seen) + rest
    assert child.returncode == 0 and "SIGTERM: finishing the current series, then stopping" in stderr, stderr
