"""livseg.pacs.client without an archive: credentials, URLs, and servers that are down, hang,
refuse or answer garbage (a stub HTTP server in a thread), each as one PacsError line."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from livseg.errors import ConfigError, InputFileNotFoundError, PacsError, PacsUnavailableError
from livseg.pacs.client import Credentials, PacsClient, read_credentials

SECRET = "s3cret-Pa55"


class _Stub(http.server.BaseHTTPRequestHandler):
    status, content_type, body = 200, "text/html", b"<html>hello</html>"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def stub() -> Iterator[type[_Stub]]:
    """An HTTP server answering every GET with the handler's status, type and body."""
    handler = type("Handler", (_Stub,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ credentials


def test_credentials_come_from_the_environment_or_a_file_and_never_show(tmp_path: Path) -> None:
    env = {"LIVSEG_PACS_USER": "ana", "LIVSEG_PACS_PASSWORD": SECRET}
    assert read_credentials(environ=env) == Credentials("ana", SECRET)
    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\nsecond line ignored\n")
    assert read_credentials(username="bo", password_file=secret_file, environ=env) == Credentials("bo", "from-file")
    assert read_credentials(environ={"LIVSEG_PACS_TOKEN": "tok"}) == Credentials(token="tok")
    assert read_credentials(environ={}) == Credentials()
    assert SECRET not in repr(read_credentials(environ=env)) and "tok" not in repr(Credentials(token="tok"))


@pytest.mark.parametrize("kwargs, env, error", [
    ({}, {"LIVSEG_PACS_PASSWORD": SECRET}, ConfigError),  # a password without a user
    ({"username": "ana"}, {}, ConfigError),  # a user without a password
    ({}, {"LIVSEG_PACS_USER": "a", "LIVSEG_PACS_PASSWORD": "p", "LIVSEG_PACS_TOKEN": "t"}, ConfigError),
    ({"username": "ana", "password_file": "/nonexistent/password"}, {}, InputFileNotFoundError),
])
def test_bad_credentials_are_refused(kwargs: dict, env: dict, error: type) -> None:
    with pytest.raises(error) as caught:
        read_credentials(environ=env, **kwargs)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("url", [f"http://ana:{SECRET}@localhost:8042/dicom-web", "ftp://localhost/dicom-web", "localhost:8042"])
def test_urls_with_credentials_or_without_http_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PacsClient(url)
    assert SECRET not in str(caught.value)


# ------------------------------------------------------------------------------------ failures


def test_an_archive_that_is_down_gives_one_line() -> None:
    client = PacsClient(f"http://127.0.0.1:{_closed_port()}/dicom-web", credentials=Credentials("ana", SECRET), retries=0)
    with pytest.raises(PacsUnavailableError, match="cannot reach the archive .* connection refused") as caught:
        client.find_series(modality="CT")
    assert "\n" not in str(caught.value) and SECRET not in str(caught.value)


def test_an_archive_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        client = PacsClient(f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web", timeout_s=0.5, retries=1)
        start = time.monotonic()
        with pytest.raises(PacsUnavailableError, match=r"no answer within 0.5 s \(2 tries\)"):
            client.find_series()
        assert time.monotonic() - start < 5  # two reads of 0.5 s and a 1 s back-off


def test_an_answer_that_is_not_dicomweb_is_a_pacs_error(stub: type[_Stub], tmp_path: Path) -> None:
    client = PacsClient(stub.url, retries=0)
    with pytest.raises(PacsError, match="not DICOMweb") as caught:
        client.find_series(modality="CT")
    assert not isinstance(caught.value, PacsUnavailableError)
    stub.content_type, stub.body = "application/dicom+json", b'{"not": "a list"}'
    with pytest.raises(PacsError, match="not DICOMweb"):
        client.find_series()
    stub.body = b'[{"0020000E": {"vr": "UI", "Value": ["1.2.3"]}}]'  # a series without its study
    with pytest.raises(PacsError, match="without Study/Series Instance UID"):
        client.find_series()
    stub.content_type, stub.body = "text/plain", b"garbage"
    with pytest.raises(PacsError, match="not DICOMweb"):
        client.retrieve_series("1.2", "1.2.3", tmp_path / "series")
    assert not any((tmp_path / "series").iterdir())


@pytest.mark.parametrize("status, error, message", [
    (401, PacsError, "refused the credentials \\(HTTP 401\\)"),
    (404, PacsError, "not found \\(HTTP 404\\); check the DICOMweb base URL"),
    (400, PacsError, "HTTP 400"),
    (500, PacsUnavailableError, "HTTP 500"),
    (503, PacsUnavailableError, "stayed busy"),  # retried by dicomweb-client first
])
def test_http_errors_become_one_line(stub: type[_Stub], status: int, error: type, message: str) -> None:
    stub.status, stub.content_type, stub.body = status, "application/json", b'{"Message": "Bad request"}'
    client = PacsClient(stub.url, credentials=Credentials("ana", SECRET), retries=1)
    with pytest.raises(error, match=message) as caught:
        client.find_series()
    assert type(caught.value) is error and SECRET not in str(caught.value) and "\n" not in str(caught.value)
