"""Writing files safely: every output goes to a temporary name beside its target and is renamed
into place, so an interrupted write never leaves a half-written file; JSON in and out.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from livseg.errors import CorruptFileError, InputFileNotFoundError, OutputExistsError, one_line


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
    format from the extension behave as for the final name.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".nii.gz") else path.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
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

