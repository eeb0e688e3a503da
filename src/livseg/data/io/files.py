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
import json
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from livseg.errors import CorruptFileError, InputFileNotFoundError, OutputExistsError, OutputPathError, one_line

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
    process that no longer runs, or older than a day. Others' files are never touched.

    Returns:
        The removed paths.
    """
    removed = []
    host, now = _host(), time.time()
    for path in Path(folder).iterdir():
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


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that ``path`` can be an output folder, and tidy it.

    It must be a folder or not exist yet, and the folder (or the nearest existing parent, where
    it will be created) must be writable. Stale temporary files of an interrupted livseg run in
    it are removed (:func:`remove_stale_temp_files`). Nothing is created.

    Raises:
        OutputPathError: ``path`` (or a parent) is a file, or the place is not writable.
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
    if path.is_dir():
        remove_stale_temp_files(path)
    return path


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
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = temp_name(path.name, pid=os.getpid(), host=_host(), token="|").split("|")
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the output the permissions any ordinary file would get
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
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

