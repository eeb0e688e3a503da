"""The watch loop: poll the archive for new CT series, segment each exactly once, store its SEG.

One cycle: list the CT series that match the filters (QIDO-RS) and note the new ones in the
state file (:class:`livseg.pacs.state.WatchState`); then process, oldest first, every series
that is due: new ones whose image count has stopped changing for ``settle_s`` (the upload is
complete) and failed ones whose retry time has come. Per series: the headers decide whether it
is one to segment (:func:`livseg.pacs.select.check_series`: axial CT, a complete stack), then
:func:`livseg.pacs.node.process_series` retrieves, segments and stores; one log line says what
happened.

Failures: an archive that cannot be reached when polling is logged and polled again after a
back-off (``--once``: the cycle ends with the error). A series whose processing fails because of
the archive is retried up to ``max_attempts`` times with back-off doubling from ``backoff_s``; one
that fails because of its own content (unreadable, irregular geometry) is recorded with the
reason and not retried. Nothing is ever sent twice: a series is marked done as soon as its SEG
is confirmed, and the SEG's UID is recorded just before it is sent, so a try that was cut off
mid-store is settled on the next start by asking the archive for that UID.

Stopping: SIGTERM or Ctrl-C finish the current series and end the loop; a second one stops at
once (the interrupted series goes back to ``new``, nothing partial is stored).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from livseg.errors import ConfigError, LivsegError, PacsError, one_line
from livseg.pacs.client import PacsClient
from livseg.pacs.node import Segmenter, process_series
from livseg.pacs.select import check_series
from livseg.pacs.state import SeriesRecord, WatchState

log = logging.getLogger(__name__)

__all__ = ["StopOnSignal", "WatchOptions", "WatchSummary", "record_failure", "study_date_range", "watch"]

_DATE = r"\d{8}"


def study_date_range(text: str | None, today: dt.date | None = None) -> str | None:
    """A study-date filter as a DICOM date range for QIDO-RS.

    Args:
        text: ``all`` (no filter), ``Nd`` (the last N days, today included: ``1d`` is today),
            a date ``YYYYMMDD``, or a range ``YYYYMMDD-``, ``-YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``.
        today: the date ``Nd`` counts back from (default: today).

    Raises:
        ConfigError: anything else.
    """
    if text is None or text.strip().lower() in ("", "all"):
        return None
    text = text.strip().lower()
    days = re.fullmatch(r"(\d+)d", text)
    if days and int(days[1]) >= 1:
        start = (today or dt.date.today()) - dt.timedelta(days=int(days[1]) - 1)
        return start.strftime("%Y%m%d") + "-"
    if re.fullmatch(rf"{_DATE}|{_DATE}-|-{_DATE}|{_DATE}-{_DATE}", text):
        for part in filter(None, text.split("-")):
            try:
                dt.datetime.strptime(part, "%Y%m%d")
            except ValueError:
                raise ConfigError(f"study date {text!r}: {part} is not a date") from None
        return text
    raise ConfigError(f"study date {text!r}: expected all, Nd (last N days), YYYYMMDD, YYYYMMDD-, -YYYYMMDD "
                      "or YYYYMMDD-YYYYMMDD")


@dataclass(frozen=True)
class WatchOptions:
    """What to watch and how.

    Attributes:
        modality: the Modality to poll for.
        study_date: a DICOM date range (:func:`study_date_range`), or None for every date.
        description: a regular expression the Series Description must contain (case-insensitive);
            other series are recorded as skipped.
        interval_s: seconds between polls.
        settle_s: a new series is processed once its image count has not changed for this long.
        max_attempts: tries of a series that fails because of the archive.
        backoff_s: wait before the first retry; doubled after each failure, up to ``max_backoff_s``.
        max_backoff_s: the longest wait between tries (and between failed polls).
        out_dir: also keep each series' mask, SEG and statistics here (replaced on a retry).
        work_dir: where series are retrieved to (temporary folders, removed after each series).
    """

    modality: str = "CT"
    study_date: str | None = None
    description: str | None = None
    interval_s: float = 60.0
    settle_s: float = 60.0
    max_attempts: int = 3
    backoff_s: float = 60.0
    max_backoff_s: float = 3600.0
    out_dir: Path | None = None
    work_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("interval_s", "settle_s", "backoff_s", "max_backoff_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"watch option {name} must be a number of seconds >= 0, got {getattr(self, name)}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.description is not None:
            try:
                re.compile(self.description)
            except re.error as exc:
                raise ConfigError(f"series description pattern {self.description!r}: {exc}") from None

    def wait_after(self, failures: int) -> float:
        """Seconds to wait after the n-th failure in a row (n >= 1)."""
        return min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)


@dataclass
class WatchSummary:
    """What one run of :func:`watch` did (the state file keeps the whole history)."""

    polls: int = 0
    failed_polls: int = 0
    last_poll_error: str | None = None  # None once a poll succeeded after it
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class StopOnSignal:
    """The first SIGTERM / SIGINT sets ``event`` (the loop stops after the current series); the
    second stops it at once (KeyboardInterrupt). Handlers are installed only in the main thread,
    where Python delivers signals, and restored afterwards."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.signals = 0

    def handle(self, signum: int, frame: object) -> None:
        self.signals += 1
        if self.signals > 1:
            raise KeyboardInterrupt
        self.event.set()
        log.info("%s: finishing the current series, then stopping (send it again to stop at once)",
                 signal.Signals(signum).name)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def watch(client: PacsClient, segmenter: Segmenter, state: WatchState, options: WatchOptions = WatchOptions(), *,
          once: bool = False, stop: threading.Event | None = None) -> WatchSummary:
    """Poll and process until stopped (or one cycle with ``once``).

    Args:
        client: the archive.
        segmenter: the loaded model.
        state: the open state file.
        options: filters, timing and retries.
        once: one poll and every series then due, then return (for cron).
        stop: set it (or send SIGTERM / SIGINT) to end the loop after the current series.

    Returns:
        What this run did.

    Raises:
        KeyboardInterrupt: a second signal stopped the current series midway (it is left ``new``).
    """
    stop = stop or threading.Event()
    summary = WatchSummary()
    poll_failures = 0
    for record in state.records("running"):  # the lock says no other loop runs: a previous run was killed during it
        state.mark_new(record.series.series_uid, "interrupted: the previous run stopped during it; processed again")
        log.info("%s was interrupted by the previous run; it will be processed again", record.series.label())
    with StopOnSignal(stop).installed():
        while not stop.is_set():
            try:
                new = poll(client, state, options)
                poll_failures, summary.last_poll_error = 0, None
                summary.polls += 1
                if new:
                    log.info("%s: %d new series", client.url, new)
            except PacsError as exc:
                poll_failures += 1
                summary.failed_polls += 1
                summary.last_poll_error = one_line(exc)
                wait = options.wait_after(poll_failures)
                log.warning("poll failed: %s%s", one_line(exc), "" if once else f"; polling again in {wait:g} s")
                if once:
                    break
                stop.wait(wait)
                continue
            process_due(client, segmenter, state, options, stop=stop, summary=summary)
            if once:
                break
            stop.wait(options.interval_s)
    return summary


def poll(client: PacsClient, state: WatchState, options: WatchOptions) -> int:
    """List the matching series and note them in the state; returns how many were new."""
    found = client.find_series(modality=options.modality, study_date=options.study_date)
    now = time.time()
    new = sum(state.record_seen(info, now) for info in found)
    state.set_meta("last_poll", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return new


def process_due(client: PacsClient, segmenter: Segmenter, state: WatchState, options: WatchOptions, *,
                stop: threading.Event, summary: WatchSummary) -> None:
    """Process every series due now, oldest first, until ``stop`` is set."""
    for record in state.due(time.time(), settle_s=options.settle_s, max_attempts=options.max_attempts):
        if stop.is_set():
            return
        outcome = _process_one(client, segmenter, state, options, record)
        getattr(summary, outcome).append(record.series.series_uid)


def _process_one(client: PacsClient, segmenter: Segmenter, state: WatchState, options: WatchOptions,
                 record: SeriesRecord) -> str:
    """One series, start to end; returns ``done``, ``failed`` or ``skipped``. Never raises for a
    failure of the series or the archive (it is recorded); KeyboardInterrupt passes through."""
    series, uid = record.series, record.series.series_uid
    state.mark_running(uid)
    try:
        if record.seg_uid and client.has_instance(series.study_uid, record.seg_uid):
            state.mark_done(uid, seg_uid=record.seg_uid, timings={}, stats={},
                            reason="SEG found in the archive: stored by an earlier, interrupted try")
            log.info("done %s: its SEG %s was stored by an earlier try", series.label(), record.seg_uid)
            return "done"
        if options.description and not re.search(options.description, series.description, re.IGNORECASE):
            reason = f"series description {series.description!r} does not match {options.description!r}"
            state.mark_skipped(uid, reason)
            log.info("skipped %s: %s", series.label(), reason)
            return "skipped"
        check = check_series(series, client.series_metadata(series.study_uid, uid))
        if not check.usable:
            state.mark_skipped(uid, check.reason)
            log.info("skipped %s: %s", series.label(), check.reason)
            return "skipped"
        processed = process_series(client, series, segmenter, out_dir=options.out_dir, overwrite=True,
                                   work_dir=options.work_dir, before_store=lambda seg: state.set_seg_uid(uid, seg))
    except KeyboardInterrupt:
        state.mark_new(uid, "interrupted; will be processed again")
        log.warning("interrupted %s: left for the next run", series.label())
        raise
    except PacsError as exc:
        return record_failure(state, options, record, one_line(exc), retry=True)
    except LivsegError as exc:
        return record_failure(state, options, record, one_line(exc), retry=False)
    except Exception as exc:  # noqa: BLE001 (a bug must not end an unattended loop; recorded, logged with its trace)
        log.debug("unexpected error on %s", series.label(), exc_info=True)
        return record_failure(state, options, record, f"internal error: {type(exc).__name__}: {one_line(exc)}", retry=True)
    state.mark_done(uid, seg_uid=processed.seg_uid, timings=processed.timings, stats=processed.stats)
    times = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in processed.timings.items())
    review = processed.stats.get("quality", {}).get("review") if isinstance(processed.stats.get("quality"), dict) else None
    log.info("done %s: liver %.0f mL%s; SEG %s stored (%s)", series.label(), processed.stats.get("liver_volume_ml", 0.0),
             "; flagged for review" if review else "", processed.seg_uid, times)
    return "done"


def record_failure(state: WatchState, options: WatchOptions, record: SeriesRecord, reason: str, *, retry: bool) -> str:
    """Record a failed try and log it: retried after a back-off while attempts remain (``retry``),
    else left alone for good. Returns ``"failed"``."""
    attempts = record.attempts + 1
    if retry and attempts < options.max_attempts:
        wait = options.wait_after(attempts)
        state.mark_failed(record.series.series_uid, reason, next_try=time.time() + wait)
        log.warning("failed %s (try %d of %d): %s; retrying in %g s", record.series.label(), attempts,
                    options.max_attempts, reason, wait)
    else:
        state.mark_failed(record.series.series_uid, reason, next_try=None)
        why = f"after {attempts} tries" if retry else "not retried: the series itself is the problem"
        log.warning("failed %s: %s (%s)", record.series.label(), reason, why)
    return "failed"
