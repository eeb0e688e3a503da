"""DICOMweb client: find series (QIDO-RS), retrieve them (WADO-RS) and store results (STOW-RS).

A thin layer over ``dicomweb-client`` (which does the multipart encoding, chunking and HTTP
retries on 429/503/504) that adds what an unattended node needs:

- a timeout on every request (connect, and each read of the answer);
- credentials from an environment variable or a file, never from the URL and never in a message
  (:func:`read_credentials`);
- every failure as one line: :class:`~livseg.errors.PacsUnavailableError` for an archive that is
  down, slow or answers 5xx (try again later), :class:`~livseg.errors.PacsError` for refused
  credentials, unknown UIDs, a refused store and answers that are not DICOMweb;
- a store that checks the archive's receipt for the instance it sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

from livseg.errors import ConfigError, InputFileNotFoundError, PacsError, PacsUnavailableError, one_line

log = logging.getLogger(__name__)

__all__ = ["Credentials", "PacsClient", "SeriesInfo", "read_credentials", "tag_value"]

USER_ENV, PASSWORD_ENV, TOKEN_ENV = "LIVSEG_PACS_USER", "LIVSEG_PACS_PASSWORD", "LIVSEG_PACS_TOKEN"
DEFAULT_TIMEOUT_S = 60.0  # per read: a slow archive sends a 129-slice series in a few seconds
CONNECT_TIMEOUT_S = 10.0
PAGE_SIZE = 200  # QIDO results per request; archives cap unpaged answers differently
SERIES_FIELDS = ("Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances", "StudyDate",
                 "PatientID")
# tags (DICOM JSON keys)
STUDY_UID, SERIES_UID, SOP_UID, MODALITY = "0020000D", "0020000E", "00080018", "00080060"
DESCRIPTION, NUMBER, INSTANCES, STUDY_DATE, PATIENT_ID = "0008103E", "00200011", "00201209", "00080020", "00100020"


@dataclass(frozen=True)
class Credentials:
    """How to log in to the archive: HTTP basic (user + password) or a bearer token, or neither.
    The secrets are left out of ``repr`` so that a logged object never shows them."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def read_credentials(
    *,
    username: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    token_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Credentials:
    """Credentials from files or the environment, never from the command line itself.

    The user name comes from ``username`` or ``$LIVSEG_PACS_USER``; the password from the first
    line of ``password_file`` or ``$LIVSEG_PACS_PASSWORD``; a bearer token from ``token_file`` or
    ``$LIVSEG_PACS_TOKEN``.

    Raises:
        InputFileNotFoundError: a named file does not exist.
        ConfigError: a password without a user name, or both a password and a token.
    """
    username = username or environ.get(USER_ENV) or None
    password = _secret(password_file) if password_file else environ.get(PASSWORD_ENV) or None
    token = _secret(token_file) if token_file else environ.get(TOKEN_ENV) or None
    if password and not username:
        raise ConfigError(f"a PACS password was given but no user name; set {USER_ENV} or --user")
    if password and token:
        raise ConfigError(f"both a PACS password and a bearer token were given; keep one ({PASSWORD_ENV} or {TOKEN_ENV})")
    if username and not password and not token:
        raise ConfigError(f"PACS user {username!r} has no password; set {PASSWORD_ENV} or --password-file")
    return Credentials(username=username, password=password, token=token)


def _secret(path: str | os.PathLike[str]) -> str:
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"credentials file not found: {str(path)!r}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(f"{path}: credentials file is empty; expected the secret on its first line")
    return lines[0].strip()


@dataclass(frozen=True)
class SeriesInfo:
    """One series as the archive lists it (QIDO-RS series level)."""

    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    instances: int | None = None  # NumberOfSeriesRelatedInstances, when the archive gives it
    study_date: str = ""
    patient_id: str = ""

    def label(self) -> str:
        """``series 3 "Abdomen 1.0" (129 images, 1.2.3...)``: what a log line names."""
        number = f"series {self.number}" if self.number is not None else "series"
        text = f' "{self.description}"' if self.description else ""
        count = f"{self.instances} images, " if self.instances is not None else ""
        return f"{number}{text} ({count}{self.series_uid})"


def tag_value(item: Mapping[str, Any], tag: str, default: Any = None) -> Any:
    """The first value of a tag in a DICOM JSON object (PN as its alphabetic form)."""
    entry = item.get(tag)
    if not isinstance(entry, Mapping) or not entry.get("Value"):
        return default
    value = entry["Value"][0]
    if isinstance(value, Mapping):  # PN
        return value.get("Alphabetic", default)
    return value


def _series_info(item: Any) -> SeriesInfo:
    if not isinstance(item, Mapping) or not tag_value(item, SERIES_UID) or not tag_value(item, STUDY_UID):
        raise ValueError("a series without Study/Series Instance UID")
    number, instances = tag_value(item, NUMBER), tag_value(item, INSTANCES)
    return SeriesInfo(
        study_uid=str(tag_value(item, STUDY_UID)), series_uid=str(tag_value(item, SERIES_UID)),
        modality=str(tag_value(item, MODALITY, "")), description=str(tag_value(item, DESCRIPTION, "")).strip(),
        number=int(number) if number not in (None, "") else None,
        instances=int(instances) if instances not in (None, "") else None,
        study_date=str(tag_value(item, STUDY_DATE, "")), patient_id=str(tag_value(item, PATIENT_ID, "")),
    )


class PacsClient:
    """One DICOMweb archive.

    Args:
        url: the DICOMweb base URL (Orthanc: ``http://host:8042/dicom-web``), http or https,
            without credentials in it.
        credentials: from :func:`read_credentials`.
        timeout_s: seconds to wait for each read of an answer (connecting waits at most 10 s).
        retries: extra tries of a request that fails to connect, times out or is answered 429,
            503 or 504 (exponential back-off from 0.5 s), done by dicomweb-client.

    Raises:
        ConfigError: a URL that is not http(s), or that holds a user name or password; or
            dicomweb-client is not installed.
    """

    def __init__(self, url: str, *, credentials: Credentials = Credentials(), timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = 2) -> None:
        try:
            import requests
            from dicomweb_client.api import DICOMwebClient
        except ImportError:
            raise ConfigError("talking to a PACS needs dicomweb-client: pip install 'livseg[pacs]'") from None

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"PACS URL {url!r} is not an http(s) URL; expected e.g. http://localhost:8042/dicom-web")
        if parts.username or parts.password:
            raise ConfigError(f"the PACS URL holds credentials; give them in {USER_ENV}/{PASSWORD_ENV} or "
                              "--password-file instead (a URL ends up in logs and process lists)")
        if not timeout_s > 0:
            raise ConfigError(f"PACS timeout must be positive, got {timeout_s}")
        self.url = url.rstrip("/")
        self.timeout_s = float(timeout_s)
        session = requests.Session()
        if credentials.username:
            session.auth = (credentials.username, credentials.password or "")
        if credentials.token:
            session.headers["Authorization"] = f"Bearer {credentials.token}"
        try:
            self._web = DICOMwebClient(self.url, session=session,
                                       timeout=(min(CONNECT_TIMEOUT_S, self.timeout_s), self.timeout_s))
        except ValueError as exc:
            raise ConfigError(f"PACS URL {self.url!r}: {one_line(exc)}") from None
        self.tries = max(1, int(retries) + 1)
        self._web.set_http_retry_params(retry=self.tries > 1, max_attempts=self.tries, wait_exponential_multiplier=500)

    def __repr__(self) -> str:
        return f"PacsClient({self.url!r})"

    # -------------------------------------------------------------------------------- find

    def find_series(self, *, study_uid: str | None = None, series_uid: str | None = None, modality: str | None = None,
                    study_date: str | None = None) -> list[SeriesInfo]:
        """Series matching the filters (QIDO-RS), every page of them.

        Args:
            study_uid: only this study's series.
            series_uid: only this series.
            modality: e.g. ``"CT"``.
            study_date: a DICOM date or range: ``20250101``, ``20250101-``, ``20250101-20250131``.
        """
        filters = {key: value for key, value in (("SeriesInstanceUID", series_uid), ("Modality", modality),
                                                  ("StudyDate", study_date)) if value}
        found: dict[str, SeriesInfo] = {}
        offset = 0
        while True:
            with self._calls("searching for series"):
                page = self._web.search_for_series(study_instance_uid=study_uid, search_filters=filters,
                                                   fields=list(SERIES_FIELDS), limit=PAGE_SIZE, offset=offset)
                if not isinstance(page, list):
                    raise ValueError(f"expected a JSON list of series, got {type(page).__name__}")
                infos = [_series_info(item) for item in page]
            for info in infos:
                found.setdefault(info.series_uid, info)
            if len(infos) < PAGE_SIZE:
                return list(found.values())
            offset += len(infos)

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """Every instance's header of a series as DICOM JSON (WADO-RS metadata; no pixels)."""
        with self._calls(f"reading the metadata of series {series_uid}"):
            items = self._web.retrieve_series_metadata(study_uid, series_uid)
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise ValueError("expected a JSON list of instance headers")
        return items

    def has_instance(self, study_uid: str, sop_uid: str) -> bool:
        """Whether the study holds an instance with this SOP Instance UID (QIDO-RS)."""
        with self._calls(f"looking for instance {sop_uid}"):
            found = self._web.search_for_instances(study_instance_uid=study_uid,
                                                   search_filters={"SOPInstanceUID": sop_uid})
            if not isinstance(found, list):
                raise ValueError("expected a JSON list of instances")
        return any(isinstance(item, Mapping) and tag_value(item, SOP_UID) == sop_uid for item in found)

    # -------------------------------------------------------------------------------- retrieve

    def retrieve_series(self, study_uid: str, series_uid: str, folder: str | os.PathLike[str]) -> list[Path]:
        """Write every instance of a series into ``folder`` as DICOM files (WADO-RS, Explicit VR
        Little Endian, which the archive transcodes to where it stores something else).

        Returns:
            The files written, one per instance.

        Raises:
            PacsError: an empty series, or instances of another series in the answer.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        with self._calls(f"retrieving series {series_uid}"):
            for ds in self._web.iter_series(study_uid, series_uid):
                if str(ds.get("SeriesInstanceUID", "")) != series_uid:
                    raise ValueError(f"an instance of series {ds.get('SeriesInstanceUID', '?')} in the answer")
                path = folder / f"{len(files):05d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                files.append(path)
        if not files:
            raise PacsError(f"{self.url}: series {series_uid} of study {study_uid} holds no instances")
        log.debug("%s: retrieved %d instances of series %s", self.url, len(files), series_uid)
        return files

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str, path: str | os.PathLike[str]) -> Path:
        """Write one instance to ``path`` (WADO-RS)."""
        with self._calls(f"retrieving instance {sop_uid}"):
            ds = self._web.retrieve_instance(study_uid, series_uid, sop_uid)
            ds.save_as(path, enforce_file_format=True)
        return Path(path)

    # -------------------------------------------------------------------------------- store

    def store(self, path: str | os.PathLike[str]) -> str:
        """Store one complete DICOM file into its own study (STOW-RS) and check the receipt.

        Returns:
            The SOP Instance UID the archive confirmed.

        Raises:
            PacsError: the archive listed the instance as failed, or did not confirm it.
        """
        import pydicom

        ds = pydicom.dcmread(path)
        uid, study = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
        with self._calls(f"storing {Path(path).name} into study {study}"):
            receipt = self._web.store_instances([ds], study_instance_uid=study)
        failed = [item for item in receipt.get("FailedSOPSequence") or []
                  if str(item.get("ReferencedSOPInstanceUID", "")) == uid] if receipt is not None else []
        if failed:
            reason = failed[0].get("FailureReason", "?")
            raise PacsError(f"{self.url} refused to store {Path(path).name} (failure reason {reason})")
        stored = {str(item.get("ReferencedSOPInstanceUID", "")) for item in (receipt or {}).get("ReferencedSOPSequence") or []}
        if uid not in stored:
            raise PacsError(f"{self.url} did not confirm storing {Path(path).name} (instance {uid} not in its receipt)")
        return uid

    # -------------------------------------------------------------------------------- errors

    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Turn whatever the request raises into one PacsError line naming the archive."""
        try:
            yield
        except PacsError:
            raise
        except Exception as exc:  # noqa: BLE001 (requests, retrying, JSON, multipart and pydicom each raise their own)
            raise self._translate(exc, what) from None

    def _translate(self, exc: Exception, what: str) -> PacsError:
        import requests
        import retrying

        where = f"{self.url} while {what}"
        tries = f" ({self.tries} tries)" if self.tries > 1 else ""
        if isinstance(exc, requests.exceptions.Timeout):
            return PacsUnavailableError(f"{where}: no answer within {self.timeout_s:g} s{tries}")
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            reason = "connection refused" if "refused" in text.lower() else _short(text)
            return PacsUnavailableError(f"cannot reach the archive at {where}: {reason}{tries}")
        if isinstance(exc, retrying.RetryError):
            return PacsUnavailableError(f"{where}: the archive stayed busy (HTTP 429/503/504) after retries")
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
            code, body = exc.response.status_code, _short(exc.response.text, 160)
            if code in (401, 403):
                return PacsError(f"{where}: the archive refused the credentials (HTTP {code}); set {USER_ENV} and "
                                 f"{PASSWORD_ENV} (or --password-file, or {TOKEN_ENV})")
            if code == 404:
                return PacsError(f"{where}: not found (HTTP 404); check the DICOMweb base URL (Orthanc: "
                                 "http://host:8042/dicom-web) and the UIDs")
            kind = PacsUnavailableError if code >= 500 or code == 429 else PacsError
            return kind(f"{where}: HTTP {code}{f' ({body})' if body else ''}")
        if isinstance(exc, requests.exceptions.RequestException) and not isinstance(exc, ValueError):
            return PacsUnavailableError(f"{where}: {_short(str(exc))}")
        return PacsError(f"{where}: the answer is not DICOMweb ({type(exc).__name__}: {_short(str(exc))})")


def _short(text: str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters; JSON error bodies reduced to their message."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        text = json.loads(text).get("Message") or text  # Orthanc's error bodies are JSON with a Message
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
