"""livseg.pacs.state: the watch loop's SQLite file (settling, retries, the lock, bad files)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from livseg.errors import CorruptFileError, InputFileNotFoundError, PacsError
from livseg.pacs.client import SeriesInfo
from livseg.pacs.state import WatchState


def info(n: int, instances: int = 10) -> SeriesInfo:
    return SeriesInfo("1.2", f"1.2.{n}", modality="CT", description=f"s{n}", number=n, instances=instances)


def test_a_new_series_is_due_once_its_upload_has_settled(tmp_path: Path) -> None:
    with WatchState(tmp_path / "state.sqlite") as state:
        assert state.record_seen(info(1, 10), now=100.0) is True
        assert state.record_seen(info(1, 10), now=130.0) is False  # same count: still settling since 100
        assert [r.series.series_uid for r in state.due(159.0, settle_s=60, max_attempts=3)] == []
        assert [r.series.series_uid for r in state.due(160.0, settle_s=60, max_attempts=3)] == ["1.2.1"]
        state.record_seen(info(1, 25), now=170.0)  # more images arrived: wait again
        assert state.due(200.0, settle_s=60, max_attempts=3) == []
        assert len(state.due(230.0, settle_s=60, max_attempts=3)) == 1
        assert state.get("1.2.1").series.instances == 25


def test_failed_series_come_back_until_their_attempts_run_out(tmp_path: Path) -> None:
    with WatchState(tmp_path / "state.sqlite") as state:
        state.record_seen(info(1), now=0.0)
        state.mark_running("1.2.1")
        state.mark_failed("1.2.1", "cannot reach the archive", next_try=500.0)
        assert state.due(499.0, settle_s=0, max_attempts=3) == []
        assert state.due(500.0, settle_s=0, max_attempts=3)[0].attempts == 1
        state.mark_failed("1.2.1", "again", next_try=600.0)
        assert state.due(10_000.0, settle_s=0, max_attempts=2) == []  # two attempts used
        state.mark_failed("1.2.1", "bad series", next_try=None)  # not retried at all
        assert state.due(10_000.0, settle_s=0, max_attempts=10) == []
        record = state.get("1.2.1")
        assert (record.status, record.reason, record.attempts) == ("failed", "bad series", 3)


def test_done_series_keep_seg_uid_timings_stats_and_the_review_flag(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with WatchState(path) as state:
        for n in (1, 2, 3):
            state.record_seen(info(n), now=float(n))
        state.mark_done("1.2.1", seg_uid="9.9.1", timings={"store": 0.5}, stats={"liver_volume_ml": 1500.0})
        state.mark_done("1.2.2", seg_uid="9.9.2", timings={}, stats={"quality": {"review": True}})
        state.mark_skipped("1.2.3", "a localizer (scout)")
    with WatchState(path) as state:  # a restart reads it back
        one, two, three = state.records()
        assert (one.status, one.seg_uid, one.timings, one.stats, one.review) == (
            "done", "9.9.1", {"store": 0.5}, {"liver_volume_ml": 1500.0}, None)
        assert two.review is True and (three.status, three.reason) == ("skipped", "a localizer (scout)")
        assert state.counts() == {"new": 0, "running": 0, "done": 2, "failed": 0, "skipped": 1}
        assert state.due(1e9, settle_s=0, max_attempts=3) == []


def test_one_loop_per_state_file_and_readers_beside_it(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFoundError, match="state file not found"):
        WatchState(tmp_path / "state.sqlite", read_only=True)
    with WatchState(tmp_path / "state.sqlite") as state:
        state.record_seen(info(1), now=1.0)
        with pytest.raises(PacsError, match="in use by another livseg watch loop"):
            WatchState(tmp_path / "state.sqlite")
        with WatchState(tmp_path / "state.sqlite", read_only=True) as reader:  # `livseg pacs status` meanwhile
            assert [r.status for r in reader.records()] == ["new"]
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.mark_skipped("1.2.1", "no")
    WatchState(tmp_path / "state.sqlite").close()  # free again


def test_a_file_that_is_not_a_state_file_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a database, just some text that is long enough " * 20)
    with pytest.raises(CorruptFileError, match="not a livseg state file"):
        WatchState(garbage)
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 7")
    with pytest.raises(CorruptFileError, match="version 7"):
        WatchState(newer)
    with pytest.raises(CorruptFileError):  # again the same line, not "in use": the refusal released its lock
        WatchState(garbage)
