"""The watch loop's memory: one SQLite file with a row per series it has seen.

Status of a series: ``new`` (seen, not yet segmented, or waiting for its upload to settle),
``running`` (being processed now, or interrupted: the next start looks at it again), ``done``
(the SEG is in the archive: its UID), ``failed`` (the one-line reason; retried at ``next_try``
until the attempts run out, then left alone) and ``skipped`` (why: not CT, not axial, a
localizer...). Each row also keeps the attempt count, the timings (JSON) and the prediction's
statistics (JSON; with issue 26's quality estimate, its ``review`` flag is copied to a column).

Every change is committed at once, so a killed process loses nothing it finished. A lock file
beside the state keeps a second watch loop off the same state, which would send SEGs twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from livseg.errors import CorruptFileError, InputFileNotFoundError, OutputPathError, PacsError, one_line
from livseg.pacs.client import SeriesInfo

__all__ = ["STATUSES", "SeriesRecord", "WatchState"]

STATUSES = ("new", "running", "done", "failed", "skipped")
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    number INTEGER,
    instances INTEGER,
    study_date TEXT NOT NULL DEFAULT '',
    patient_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL,
    first_seen REAL NOT NULL,
    changed_at REAL NOT NULL,
    updated REAL NOT NULL,
    seg_uid TEXT,
    review INTEGER,
    timings TEXT NOT NULL DEFAULT '{}',
    stats TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class SeriesRecord:
    """One row of the state file.

    Attributes:
        series: the series as last listed by the archive.
        status: one of :data:`STATUSES`.
        reason: why it failed or was skipped (one line); empty when done.
        attempts: failed tries so far.
        next_try: when a failed series may be tried again (epoch seconds), or None.
        first_seen, changed_at, updated: epoch seconds: first listed, instance count last changed,
            row last written.
        seg_uid: the SEG's SOP Instance UID, recorded just before it is sent.
        review: the quality estimate's review flag, when the statistics hold one.
        timings: seconds per stage (retrieve, segment, write, store).
        stats: the prediction's statistics, as ``livseg predict`` writes them.
    """

    series: SeriesInfo
    status: str
    reason: str = ""
    attempts: int = 0
    next_try: float | None = None
    first_seen: float = 0.0
    changed_at: float = 0.0
    updated: float = 0.0
    seg_uid: str | None = None
    review: bool | None = None
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


class WatchState:
    """The state file, opened (and locked) for one watch loop; use as a context manager.

    Args:
        path: the SQLite file (created when missing).
        read_only: only read it (``livseg pacs status``), without the lock, beside a running loop.

    Raises:
        OutputPathError: the file cannot be created there.
        InputFileNotFoundError: ``read_only`` and no such file.
        CorruptFileError: the file is not a livseg state file.
        PacsError: another watch loop holds it.
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = Path(path)
        if read_only:
            self._open_read_only()
            return
        if self.path.exists() and not self.path.is_file():
            raise OutputPathError(f"{self.path} is not a file; give the state a file name, e.g. livseg-watch.sqlite")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"cannot create {self.path.parent}: {one_line(exc)}") from None
        self._lock = self._take_lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: every change lands at once
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise CorruptFileError(f"{self.path}: state file version {version}; this livseg reads version {SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise CorruptFileError(f"{self.path}: not a livseg state file ({one_line(exc)})") from None
        except BaseException:
            self._release_lock()
            raise

    def _open_read_only(self) -> None:
        self._lock = None
        if not self.path.is_file():
            raise InputFileNotFoundError(f"state file not found: {str(self.path)!r}")
        try:
            self._db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise CorruptFileError(f"{self.path}: not a livseg state file ({one_line(exc)})") from None
        if version != SCHEMA_VERSION:
            self._db.close()
            raise CorruptFileError(f"{self.path}: not a livseg state file of version {SCHEMA_VERSION} (version {version})")

    def _take_lock(self) -> Any:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one loop per state file is then the user's care
            return None
        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = open(lock_path, "a+")  # noqa: SIM115 (held open for the loop's lifetime)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise PacsError(f"{self.path} is in use by another livseg watch loop (lock {lock_path}); "
                            "run one loop per state file") from None
        return handle

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def close(self) -> None:
        """Close the database and release the lock."""
        self._db.close()
        self._release_lock()

    def __enter__(self) -> WatchState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------- reading

    def get(self, series_uid: str) -> SeriesRecord | None:
        """The row of one series, or None."""
        rows = list(self._select("WHERE series_uid = ?", (series_uid,)))
        return rows[0] if rows else None

    def records(self, status: str | None = None) -> list[SeriesRecord]:
        """Every row (of one status), oldest first."""
        if status is None:
            return list(self._select("", ()))
        return list(self._select("WHERE status = ?", (status,)))

    def counts(self) -> dict[str, int]:
        """Rows per status (every status present, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(dict(self._db.execute("SELECT status, COUNT(*) FROM series GROUP BY status").fetchall()))
        return counts

    def due(self, now: float, *, settle_s: float, max_attempts: int) -> list[SeriesRecord]:
        """Series to process now, oldest first: new ones whose image count has not changed for
        ``settle_s`` (their upload is complete), and failed ones whose retry time has come."""
        return list(self._select(
            "WHERE (status = 'new' AND changed_at <= ?) OR (status = 'failed' AND attempts < ? AND next_try <= ?)",
            (now - settle_s, max_attempts, now)))

    def get_meta(self, key: str) -> str | None:
        """A value of the meta table (``last_poll``)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _select(self, where: str, args: tuple) -> Iterator[SeriesRecord]:
        cursor = self._db.execute(
            "SELECT study_uid, series_uid, modality, description, number, instances, study_date, patient_id, status, "
            f"reason, attempts, next_try, first_seen, changed_at, updated, seg_uid, review, timings, stats FROM series {where} "
            "ORDER BY first_seen, series_uid", args)
        for row in cursor.fetchall():
            info = SeriesInfo(*row[:8])
            yield SeriesRecord(info, status=row[8], reason=row[9], attempts=row[10], next_try=row[11],
                               first_seen=row[12], changed_at=row[13], updated=row[14], seg_uid=row[15],
                               review=None if row[16] is None else bool(row[16]),
                               timings=json.loads(row[17]), stats=json.loads(row[18]))

    # -------------------------------------------------------------------------------- writing

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the meta table."""
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (key, value))

    def record_seen(self, info: SeriesInfo, now: float | None = None) -> bool:
        """Note a series the archive listed. A new series is added as ``new``; for a known one
        still ``new``, a changed image count restarts its settling time.

        Returns:
            True when the series was not in the state before.
        """
        now = time.time() if now is None else now
        old = self.get(info.series_uid)
        if old is None:
            self._db.execute(
                "INSERT INTO series (study_uid, series_uid, modality, description, number, instances, study_date, "
                "patient_id, status, first_seen, changed_at, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?, ?)",
                (info.study_uid, info.series_uid, info.modality, info.description, info.number, info.instances,
                 info.study_date, info.patient_id, now, now, now))
            return True
        if old.status == "new" and old.series.instances != info.instances:
            self._db.execute("UPDATE series SET instances = ?, changed_at = ?, updated = ? WHERE series_uid = ?",
                             (info.instances, now, now, info.series_uid))
        return False

    def mark_running(self, series_uid: str) -> None:
        """The series is being processed now."""
        self._update(series_uid, status="running")

    def set_seg_uid(self, series_uid: str, seg_uid: str) -> None:
        """Record the SEG's UID before it is sent, so that a restart can look for it instead of sending another."""
        self._update(series_uid, seg_uid=seg_uid)

    def mark_done(self, series_uid: str, *, seg_uid: str, timings: dict[str, float], stats: dict[str, Any],
                  reason: str = "") -> None:
        """The SEG is in the archive."""
        quality = stats.get("quality") if isinstance(stats.get("quality"), dict) else {}
        review = quality.get("review")
        self._update(series_uid, status="done", reason=reason, seg_uid=seg_uid, next_try=None,
                     review=None if review is None else int(bool(review)),
                     timings=json.dumps(timings), stats=json.dumps(stats, default=str))

    def mark_failed(self, series_uid: str, reason: str, *, next_try: float | None, count: bool = True) -> None:
        """A try failed (``count``: it uses up one attempt); ``next_try`` None: never again."""
        record = self.get(series_uid)
        attempts = (record.attempts if record else 0) + int(count)
        self._update(series_uid, status="failed", reason=reason, attempts=attempts, next_try=next_try)

    def mark_skipped(self, series_uid: str, reason: str) -> None:
        """The series is not one to segment (and never will be)."""
        self._update(series_uid, status="skipped", reason=reason, next_try=None)

    def mark_new(self, series_uid: str, reason: str = "") -> None:
        """Back to ``new`` (an interrupted try that should not count)."""
        self._update(series_uid, status="new", reason=reason, changed_at=0.0)

    def _update(self, series_uid: str, **values: Any) -> None:
        values["updated"] = time.time()
        columns = ", ".join(f"{key} = ?" for key in values)
        with contextlib.closing(self._db.cursor()) as cursor:
            cursor.execute(f"UPDATE series SET {columns} WHERE series_uid = ?", (*values.values(), series_uid))
            if cursor.rowcount != 1:
                raise KeyError(f"series {series_uid} is not in the state file {self.path}")
