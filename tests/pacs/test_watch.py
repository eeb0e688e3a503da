"""livseg.pacs.watch against a real Orthanc: two series processed once each, a restart that sends
nothing, the archive stopped mid-series and brought back, SIGTERM, and a try cut off after the
archive stored its SEG."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from orthanc_server import Orthanc, client_for, copy_series

from livseg.pacs.client import PacsClient
from livseg.pacs.state import WatchState
from livseg.pacs.watch import WatchOptions, watch

FAST = WatchOptions(settle_s=0, interval_s=0.2, backoff_s=0.5, study_date=None)


def upload_series(archive: Orthanc, files: list[Path], folder: Path, **kwargs: object) -> tuple[str, str]:
    study, series, copies = copy_series(files, folder, **kwargs)
    archive.upload(copies)
    return study, series


def segs_in(archive: Orthanc, study: str) -> list[dict]:
    return [s for s in archive.series_of_study(study) if s["MainDicomTags"]["Modality"] == "SEG"]


def test_two_series_are_processed_once_and_a_restart_sends_nothing(
        fresh_archive: Orthanc, ircadb_files: list[Path], segmenter, tmp_path: Path) -> None:
    a = upload_series(fresh_archive, ircadb_files[30:94], tmp_path / "a", description="Abdomen venous", number=4)
    b = upload_series(fresh_archive, ircadb_files[40:104], tmp_path / "b", description="abdomen arterial", number=2)
    scout = upload_series(fresh_archive, ircadb_files[60:62], tmp_path / "c", description="Abdomen scout",
                          image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    chest = upload_series(fresh_archive, ircadb_files[:10], tmp_path / "d", description="Chest")
    options = WatchOptions(settle_s=0, study_date=None, description="abdomen", out_dir=tmp_path / "kept")
    with WatchState(tmp_path / "state.sqlite") as state:
        summary = watch(client_for(fresh_archive), segmenter, state, options, once=True)
        assert sorted(summary.done) == sorted([a[1], b[1]]) and summary.failed == []
        assert sorted(summary.skipped) == sorted([scout[1], chest[1]])
        records = {r.series.series_uid: r for r in state.records()}
    for study, series in (a, b):
        record = records[series]
        assert record.status == "done" and record.attempts == 0 and record.reason == ""
        assert set(record.timings) == {"retrieve", "segment", "write", "store"}
        assert record.stats["pacs"]["seg_uid"] == record.seg_uid and record.stats["liver_volume_ml"] > 100
        (seg,) = segs_in(fresh_archive, study)
        # a 64-slice slab of the liver: whether the quality estimate flags it is the shipped model's call
        review = " [REVIEW]" if record.stats["quality"]["review"] else ""
        assert record.review is bool(review)
        assert seg["MainDicomTags"]["SeriesDescription"] == f"livseg segmentation{review}"
        assert (tmp_path / "kept" / f"{series}_seg.dcm").is_file()
    assert records[scout[1]].reason == "a localizer (scout)"
    assert records[chest[1]].reason == "series description 'Chest' does not match 'abdomen'"

    with WatchState(tmp_path / "state.sqlite") as state:  # a restart: everything is known, nothing is sent
        again = watch(client_for(fresh_archive), segmenter, state, options, once=True)
        assert (again.polls, again.done, again.failed, again.skipped) == (1, [], [], [])
        assert {r.series.series_uid: r.seg_uid for r in state.records()} == {u: r.seg_uid for u, r in records.items()}
    assert [len(segs_in(fresh_archive, study)) for study, _ in (a, b)] == [1, 1]


def test_the_archive_stopped_mid_series_is_a_recorded_failure_then_the_series_succeeds(
        fresh_archive: Orthanc, ircadb_files: list[Path], segmenter, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    study, series = upload_series(fresh_archive, ircadb_files[30:94], tmp_path / "a", description="venous")
    state_path = tmp_path / "state.sqlite"
    store = PacsClient.store

    def store_after_the_archive_stops(self: PacsClient, path: Path) -> str:
        if not hasattr(fresh_archive, "stopped_once"):
            fresh_archive.stopped_once = True
            fresh_archive.stop()  # the archive goes down between segmentation and store
        return store(self, path)

    monkeypatch.setattr(PacsClient, "store", store_after_the_archive_stops)
    stop, seen = threading.Event(), {}

    def operator() -> None:
        """Brings the archive back once the failure is recorded; ends the loop once the series is done."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with sqlite3.connect(state_path) as reader:
                row = reader.execute("SELECT status, reason, attempts FROM series").fetchone()
            if row and row[0] == "failed" and "failed" not in seen:
                seen["failed"] = row
                time.sleep(1.5)  # polls fail meanwhile
                fresh_archive.start()
            if row and row[0] == "done":
                break
            time.sleep(0.1)
        stop.set()

    caplog.set_level(logging.INFO, logger="livseg")
    helper = threading.Thread(target=operator)
    with WatchState(state_path) as state:
        helper.start()
        summary = watch(client_for(fresh_archive, retries=0, timeout_s=10), segmenter, state, FAST, stop=stop)
        helper.join()
        record = state.get(series)
    status, reason, attempts = seen["failed"]
    assert attempts == 1 and reason.startswith("cannot reach the archive at http://127.0.0.1:")
    assert "while storing" in reason and "connection refused" in reason
    assert summary.failed == [series] and summary.done == [series] and summary.failed_polls >= 1
    assert (record.status, record.attempts, record.reason) == ("done", 1, "")
    assert len(segs_in(fresh_archive, study)) == 1
    logged = caplog.text
    assert "retrying in 0.5 s" in logged and "poll failed: cannot reach the archive" in logged


def test_sigterm_finishes_the_current_series_and_leaves_the_next_for_later(
        fresh_archive: Orthanc, ircadb_files: list[Path], segmenter, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    uploaded = dict(upload_series(fresh_archive, ircadb_files[30:94], tmp_path / f"s{k}", number=k)[::-1]
                    for k in (1, 2))  # series -> study
    first, second = sorted(uploaded)  # the order the loop takes them in (both first seen in one poll)
    retrieve = PacsClient.retrieve_series

    def retrieve_then_sigterm(self: PacsClient, study_uid: str, series_uid: str, folder: Path) -> list[Path]:
        if series_uid == first:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first series is being processed
        return retrieve(self, study_uid, series_uid, folder)

    monkeypatch.setattr(PacsClient, "retrieve_series", retrieve_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    with WatchState(tmp_path / "state.sqlite") as state:
        summary = watch(client_for(fresh_archive), segmenter, state, FAST)  # no --once: only the signal ends it
        assert summary.done == [first] and state.get(second).status == "new"
    assert signal.getsignal(signal.SIGTERM) is before  # the loop's handler is gone again
    assert [len(segs_in(fresh_archive, uploaded[s])) for s in (first, second)] == [1, 0]
    with WatchState(tmp_path / "state.sqlite") as state:
        assert watch(client_for(fresh_archive), segmenter, state, FAST, once=True).done == [second]
    assert [len(segs_in(fresh_archive, uploaded[s])) for s in (first, second)] == [1, 1]


def test_a_try_cut_off_after_the_archive_stored_its_seg_is_not_sent_again(
        fresh_archive: Orthanc, ircadb_files: list[Path], segmenter, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    study, series = upload_series(fresh_archive, ircadb_files[30:94], tmp_path / "a")
    store = PacsClient.store

    def store_then_interrupt(self: PacsClient, path: Path) -> str:
        store(self, path)
        raise KeyboardInterrupt  # Ctrl-C twice, just after the archive took the SEG

    monkeypatch.setattr(PacsClient, "store", store_then_interrupt)
    with WatchState(tmp_path / "state.sqlite") as state, pytest.raises(KeyboardInterrupt):
        watch(client_for(fresh_archive), segmenter, state, FAST, once=True)
    monkeypatch.setattr(PacsClient, "store", store)
    with WatchState(tmp_path / "state.sqlite") as state:
        record = state.get(series)
        assert record.status == "new" and record.seg_uid is not None
        state.mark_running(series)  # as a killed process would leave it: the next start takes it up again
    with WatchState(tmp_path / "state.sqlite") as state:
        summary = watch(client_for(fresh_archive), segmenter, state, FAST, once=True)
        done = state.get(series)
    assert summary.done == [series] and done.seg_uid == record.seg_uid
    assert done.reason == "SEG found in the archive: stored by an earlier, interrupted try"
    assert len(segs_in(fresh_archive, study)) == 1


def test_a_mask_the_quality_estimate_flags_is_marked_in_the_state_the_seg_and_the_log(
        fresh_archive: Orthanc, ircadb_files: list[Path], segmenter, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """End to end through the real quality block (signals of this CT, livseg's review rule): only the
    threshold is raised to 1.0, so that this well-segmented series is flagged like a bad one."""
    from dataclasses import replace

    from livseg.inference import quality_model

    strict = replace(quality_model.load_quality_model(), review_below=1.0)
    monkeypatch.setattr(quality_model, "_shipped", lambda: strict)
    study, series = upload_series(fresh_archive, ircadb_files[30:94], tmp_path / "a", description="venous")
    caplog.set_level(logging.INFO, logger="livseg")
    with WatchState(tmp_path / "state.sqlite") as state:
        assert watch(client_for(fresh_archive), segmenter, state, FAST, once=True).done == [series]
        record = state.get(series)
    quality = record.stats["quality"]
    assert record.review is True and quality["review"] is True
    assert quality["reasons"][0] == f"predicted Dice {quality['predicted_dice']:.4f} is below 1"
    assert quality["signals"]["variation_disagreement"] is not None  # the second pass ran
    (seg,) = segs_in(fresh_archive, study)
    assert seg["MainDicomTags"]["SeriesDescription"] == "livseg segmentation [REVIEW]"
    assert "flagged for review" in caplog.text
