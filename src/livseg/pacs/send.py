"""One-shot: segment one study (or one series) of an archive and store the SEG beside it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from livseg.errors import ConfigError, PacsError
from livseg.pacs.client import PacsClient, SeriesInfo
from livseg.pacs.node import Processed, Segmenter, process_series
from livseg.pacs.select import SeriesCheck, check_series, choose_series, describe_checks

log = logging.getLogger(__name__)

__all__ = ["SendResult", "find_study_series", "send"]


@dataclass(frozen=True)
class SendResult:
    """What :func:`send` did: the series chosen (and what was found about every series of the
    study) and what was stored."""

    chosen: SeriesCheck
    checks: list[SeriesCheck]
    processed: Processed


def find_study_series(client: PacsClient, *, study_uid: str | None, series_uid: str | None) -> tuple[str, list[SeriesCheck]]:
    """Every series of the study, judged from its headers (only CT series' metadata is fetched).

    Args:
        study_uid: the study; None to find it from ``series_uid``.
        series_uid: a series of it (needed when ``study_uid`` is None).

    Returns:
        ``(study_uid, checks)``.

    Raises:
        ConfigError: neither UID given.
        PacsError: the archive does not know the study or series.
    """
    if study_uid is None:
        if series_uid is None:
            raise ConfigError("give a Study Instance UID or a Series Instance UID")
        found = client.find_series(series_uid=series_uid)
        if not found:
            raise PacsError(f"{client.url} holds no series {series_uid}")
        study_uid = found[0].study_uid
    series = client.find_series(study_uid=study_uid)
    if not series:
        raise PacsError(f"{client.url} holds no study {study_uid} (or it has no series)")
    checks = []
    for info in sorted(series, key=_series_order):
        metadata = client.series_metadata(info.study_uid, info.series_uid) if info.modality.upper() == "CT" else []
        checks.append(check_series(info, metadata))
    return study_uid, checks


def _series_order(info: SeriesInfo) -> tuple:
    return (info.number if info.number is not None else 1 << 30, info.series_uid)


def send(
    client: PacsClient,
    segmenter: Segmenter,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    work_dir: str | os.PathLike[str] | None = None,
) -> SendResult:
    """Segment the CT of a study and store the DICOM SEG into the same study.

    Args:
        client: the archive.
        segmenter: the loaded model.
        study_uid: the study; its series is chosen by :func:`livseg.pacs.select.choose_series`
            (axial CT, thinnest complete series) unless ``series_uid`` names one.
        series_uid: the series to segment (its study is looked up when ``study_uid`` is None).
        out_dir, overwrite, work_dir: as for :func:`livseg.pacs.node.process_series`.

    Returns:
        The choice and what was stored.

    Raises:
        PacsError: unknown study or series, no usable series, or the archive refused the SEG.
        PacsUnavailableError: the archive is down or too slow.
        LivsegError subclasses: the series cannot be read or segmented.
    """
    study_uid, checks = find_study_series(client, study_uid=study_uid, series_uid=series_uid)
    chosen = choose_series(checks, series_uid=series_uid)
    others = [check for check in checks if check is not chosen]
    log.info("study %s: segmenting %s: %s%s", study_uid, chosen.series.label(), chosen.reason,
             f" (also in the study: {describe_checks(others)})" if others else "")
    earlier = [c.series for c in checks if c.series.modality.upper() == "SEG" and c.series.description.startswith("livseg")]
    if earlier:
        log.warning("study %s already holds %d livseg SEG series (%s); storing another", study_uid, len(earlier),
                    ", ".join(info.series_uid for info in earlier))
    processed = process_series(client, chosen.series, segmenter, out_dir=out_dir, overwrite=overwrite,
                               work_dir=work_dir)
    return SendResult(chosen=chosen, checks=checks, processed=processed)
