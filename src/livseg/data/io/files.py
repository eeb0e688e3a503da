"""Writing files safely: every output goes to a temporary name beside its target and is renamed
into place, so an interrupted write never leaves a half-written file; JSON in and out.

Temporary names say whose they are: ``.<target>.livseg-tmp-<pid>@<host>-<random>.tmp<suffix>``
(the suffix keeps ``.nii.gz`` etc. so writers pick the format from it). A writer handed such a
name writes it directly (one temporary layer per file, however many helpers are stacked), and
:func:`prepare_output_dir`, which every command runs on its output folder before any work,
removes the ones a killed process left behind.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from livseg.errors import (
    CorruptFileError,
    InputFileNotFoundError,
    LivsegError,
    OutputExistsError,
    OutputPathError,
    UnreadableInputError,
    one_line,
)

log = logging.getLogger(__name__)

_TEMP = re.compile(r"^\.(?P<target>.+)\.livseg-tmp-(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)-(?P<token>[A-Za-z0-9_]+)\.tmp")
STALE_AFTER_S = 24 * 3600  # a temporary this old is stale whichever machine wrote it (shared folders)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]


def temp_name(target: str, *, pid: int, host: str, token: str) -> str:
    """The temporary file name livseg uses for ``target`` (see the module docstring)."""
    lowered = target.lower()
    suffix = ".nii.gz" if lowered.endswith(".nii.gz") else Path(target).suffix
    return f".{target}.livseg-tmp-{pid}@{host}-{token}.tmp{suffix}"


def is_temp_name(name: str) -> bool:
    """True for a name :func:`atomic_output` makes."""
    return _TEMP.match(name) is not None


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete livseg temporaries in ``folder`` whose writer is gone: written on this machine by a
    process that no longer runs, or older than a day. Others' files are never touched. A folder
    that does not exist (any more) has none.

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    host, now = _host(), time.time()
    try:
        entries = list(Path(folder).iterdir())
    except FileNotFoundError:  # gone meanwhile (another DDP rank's probe_output_dir made it and removed it)
        return removed
    for path in entries:
        match = _TEMP.match(path.name)
        if match is None or not path.is_file():
            continue
        dead = match["host"] == host and not _running(int(match["pid"]))
        with contextlib.suppress(FileNotFoundError):  # another rank or run removed it meanwhile
            if dead or now - path.stat().st_mtime > STALE_AFTER_S:
                path.unlink()
                removed.append(path)
    if removed:
        log.info("%s: removed %d temporary file(s) an interrupted livseg run left behind (%s)", folder, len(removed),
                 ", ".join(p.name for p in removed[:3]) + (", ..." if len(removed) > 3 else ""))
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def check_input(path: str | os.PathLike[str], what: str = "input") -> Path:
    """Check that an input path exists and can be opened, saying why not in words.

    Returns:
        ``path`` as a Path.

    Raises:
        InputFileNotFoundError: nothing there (a dangling symbolic link is named as such).
        UnreadableInputError: a symbolic-link loop, permission denied, or a device, FIFO or socket.
    """
    path = Path(path)
    try:
        os.stat(path)
    except FileNotFoundError:
        dangling = os.path.islink(path)
        raise InputFileNotFoundError(f"{what} not found: {str(path)!r}"
                                     + (" (a symbolic link to a missing target)" if dangling else "")) from None
    except OSError as exc:
        reason = "a symbolic-link loop" if exc.errno == errno.ELOOP else (exc.strerror or type(exc).__name__).lower()
        raise UnreadableInputError(f"{what} {str(path)!r} cannot be opened: {reason}") from None
    if not path.is_dir() and not path.is_file():  # opening a FIFO would wait for a writer forever
        raise UnreadableInputError(f"{what} {str(path)!r} is not a file or a folder (a device, FIFO or socket)")
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            with open(path, "rb"):
                pass
    except PermissionError:
        raise UnreadableInputError(f"{what} {str(path)!r} cannot be read: permission denied") from None
    except OSError as exc:
        raise UnreadableInputError(f"{what} {str(path)!r} cannot be read: {(exc.strerror or str(exc)).lower()}") from None
    return path


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that ``path`` can be an output folder, and tidy it.

    It must be a folder or not exist yet, and a file must be creatable in it: the folder (and
    any missing parents) are created, a probe file is written and removed, and what the probe
    created is removed again, so a run that fails later leaves nothing behind (``os.access`` is
    not enough: root passes it for /proc and /sys, and a read-only or full disk only shows on a
    write). Stale temporary files of an interrupted livseg run in it are removed
    (:func:`remove_stale_temp_files`).

    Raises:
        OutputPathError: ``path`` (or a parent) is a file, or nothing can be written there.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path} is a file, not a folder; give -o a new or existing folder")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"cannot create {path}: {existing} is a file, not a folder; give -o a new or existing folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = f"{path} is not writable" if existing == path.absolute() else f"cannot create {path}: {existing} is not writable"
        raise OutputPathError(f"{where} (permission denied); choose a folder you can write to")
    probe_output_dir(path)
    if path.is_dir():
        remove_stale_temp_files(path)
    return path


def probe_output_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path`` (with its parents) and a small file in it, then remove all that was created.

    Raises:
        OutputPathError: naming the reason the system gave (read-only file system, no space left, ...).
    """
    path = Path(path)
    created = missing_folders(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".livseg-probe-", dir=path)
        try:
            os.write(fd, b"livseg")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"cannot write to {path}: {(exc.strerror or str(exc)).lower()}; "
                              "choose a folder on a writable disk") from None
    finally:
        remove_empty_folders(created)


def missing_folders(path: str | os.PathLike[str]) -> list[Path]:
    """The folders that creating ``path`` as a folder would create, deepest first."""
    missing = []
    current = Path(path).absolute()
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    return missing


def remove_empty_folders(folders: Sequence[Path]) -> None:
    """Remove each folder (deepest first) that is empty, and the empty folders inside it; keep any
    that holds a file."""
    for folder in folders:
        if not folder.is_dir():
            continue
        for inner, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
            with contextlib.suppress(OSError):
                os.rmdir(inner)  # fails (and is kept) when anything is in it


@contextlib.contextmanager
def no_empty_output_left(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """On failure or interruption inside the block, remove the folders it created for ``path``
    (an output folder, or the folder of an output file) when they hold no file: a command
    refused after it made its output folder leaves nothing behind."""
    created = missing_folders(path) if path is not None else []
    try:
        yield
    except BaseException:
        remove_empty_folders(created)
        raise


def refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    """Check a set of planned outputs before writing any of them.

    Raises:
        OutputExistsError: one of ``paths`` exists and ``overwrite`` is False.
    """
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{len(existing)} output file(s) exist, e.g. {existing[0]!r}; "
            "pass overwrite=True (CLI: --overwrite) to replace them"
        )


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, else delete it.

    The temporary name keeps the suffix (``.nii.gz``, ``.png``, ...) so writers that choose a
    format from the extension behave as for the final name. Given a temporary name itself (a
    writer called inside another atomic_output), it yields that name unchanged: the outer
    context renames it.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if is_temp_name(path.name):  # already a temporary of an outer atomic_output: one layer is enough
        yield path
        return
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if path.is_dir():
        raise OutputPathError(f"{path} is a folder; expected a file name to write")
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = temp_name(path.name, pid=os.getpid(), host=_host(), token="|").split("|")
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        # mkstemp creates 0600; give the output the permissions any ordinary file would get
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        os.replace(tmp, path)
    except LivsegError:
        raise
    except OSError as exc:  # a full or read-only disk, a vanished folder: one line, not a traceback
        raise OutputPathError(f"cannot write {path}: {(exc.strerror or str(exc)).lower()}") from None
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def write_json(
    path: str | os.PathLike[str], data: Any, *, overwrite: bool = True, indent: int = 1, allow_nan: bool = True
) -> Path:
    """Write ``data`` as indented JSON, atomically (replacing an existing file by default).

    ``allow_nan=False`` refuses NaN/inf, for files other tools must parse as strict JSON.
    """
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, allow_nan=allow_nan) + "\n", encoding="utf-8")
    return Path(path)


def write_csv(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` as CSV with a header of ``columns`` (keys outside them are left out),
    atomically, replacing an existing file."""
    with atomic_output(path, overwrite=True) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return Path(path)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file livseg wrote (manifest, split, config).

    Raises:
        InputFileNotFoundError: no such file.
        CorruptFileError: not readable as JSON.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(f"file not found: {str(path)!r}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{path}: cannot read JSON ({one_line(exc)})") from None

