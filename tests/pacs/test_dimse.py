"""livseg.pacs.dimse: Orthanc sends a CT series to the node by C-STORE (as an archive without
DICOMweb would), the node segments it and sends the SEG back by C-STORE."""

from __future__ import annotations

import io
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pydicom
import pytest
import requests
from orthanc_server import Orthanc, copy_series, free_port

from livseg.errors import ConfigError, PacsUnavailableError
from livseg.pacs.dimse import DicomNode, Peer, c_store
from livseg.pacs.state import WatchState
from livseg.pacs.watch import WatchOptions

pytest.importorskip("pynetdicom", reason="the DIMSE node needs pynetdicom (the pacs extra)")


@pytest.mark.parametrize("text, peer", [("ORTHANC@localhost:4242", Peer("ORTHANC", "localhost", 4242)),
                                        ("PACS 1@10.0.0.7:104", Peer("PACS 1", "10.0.0.7", 104))])
def test_peers_are_written_aetitle_at_host_port(text: str, peer: Peer) -> None:
    assert Peer.parse(text) == peer and str(peer) == text


@pytest.mark.parametrize("text", ["localhost:4242", "ORTHANC@localhost", "ORTHANC@localhost:0", "A_TITLE_LONGER_THAN_16@h:1"])
def test_bad_peers_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="expected AETITLE@host:port"):
        Peer.parse(text)


def test_sending_to_a_peer_that_is_down_is_one_line(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.66.4", generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    with pytest.raises(PacsUnavailableError, match="cannot send seg.dcm to ORTHANC@127.0.0.1:.*no DICOM association"):
        c_store(tmp_path / "seg.dcm", Peer("ORTHANC", "127.0.0.1", free_port()), timeout_s=5)


def _wait_for_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")


def test_a_series_pushed_by_c_store_comes_back_as_a_seg(orthanc_programs: tuple[str, str], ircadb_files: list[Path],
                                                        segmenter, tmp_path: Path) -> None:
    node_port = free_port()
    server = Orthanc(tmp_path / "orthanc", *orthanc_programs,
                     extra={"DicomModalities": {"livseg": ["LIVSEG", "127.0.0.1", node_port]}})
    server.start()
    try:
        study, series, files = copy_series(ircadb_files[30:94], tmp_path / "ct", description="venous", number=3)
        server.upload(files)
        state_path, stop, pushed = tmp_path / "state.sqlite", threading.Event(), {}

        def archive_side() -> None:
            """Orthanc pushes the series to the node; the loop ends once the node recorded it done."""
            _wait_for_port(node_port)
            pushed["answer"] = requests.post(f"{server.base}/modalities/livseg/store", auth=server.auth, timeout=120,
                                             json={"Resources": [server.orthanc_id(series)], "Synchronous": True})
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                with sqlite3.connect(state_path) as db:
                    row = db.execute("SELECT status FROM series").fetchone()
                if row and row[0] in ("done", "failed", "skipped"):
                    break
                time.sleep(0.2)
            stop.set()

        with WatchState(state_path) as state:
            node = DicomNode(segmenter, state, spool=tmp_path / "spool", port=node_port, address="127.0.0.1",
                             destination=Peer("ORTHANC", "127.0.0.1", server.dicom_port),
                             options=WatchOptions(settle_s=1.0))
            helper = threading.Thread(target=archive_side)
            helper.start()
            node.serve(stop, poll_s=0.2)
            helper.join()
            record = state.get(series)
        assert pushed["answer"].ok
        assert (record.status, record.reason, record.series.instances) == ("done", "", 64)
        assert set(record.timings) == {"segment", "write", "store"}
        assert not (tmp_path / "spool" / study / series).exists()  # the spool is emptied once done

        (seg_series,) = [s for s in server.series_of_study(study) if s["MainDicomTags"]["Modality"] == "SEG"]
        (instance,) = seg_series["Instances"]
        raw = requests.get(f"{server.base}/instances/{instance}/file", auth=server.auth, timeout=30)
        seg = pydicom.dcmread(io.BytesIO(raw.content))
        assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SOPInstanceUID == record.seg_uid
        assert [ref.SeriesInstanceUID for ref in seg.ReferencedSeriesSequence] == [series]
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Liver"] and int(seg.NumberOfFrames) > 10
    finally:
        server.stop()


def test_images_spooled_before_a_restart_are_taken_up_again(ircadb_files: list[Path], tmp_path: Path) -> None:
    from pydicom.uid import generate_uid

    study = generate_uid()
    _, series, _ = copy_series(ircadb_files[:12], tmp_path / "incoming", study_uid=study, number=7)
    (tmp_path / "spool" / study).mkdir(parents=True)
    (tmp_path / "incoming").rename(tmp_path / "spool" / study / series)  # spool/<study>/<series>/ as received
    (tmp_path / "spool" / study / "livseg-seg-abc").mkdir()  # a killed run's temporary folder: not a series
    stop = threading.Event()
    stop.set()  # note the spool, start and stop the server, process nothing
    with WatchState(tmp_path / "state.sqlite") as state:
        DicomNode(None, state, spool=tmp_path / "spool", destination=Peer("ORTHANC", "127.0.0.1", 4242),
                  port=free_port(), address="127.0.0.1").serve(stop)
        (record,) = state.records()
    assert (record.series.series_uid, record.series.study_uid, record.series.instances, record.status) == (
        series, study, 12, "new")
