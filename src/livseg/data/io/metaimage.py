"""MetaImage (.mha/.mhd) headers checked before ITK reads them.

ITK's MetaIO library prints its own complaints about a missing or short data file straight to
the C stderr (``MetaImage: M_ReadElementsData: data not read completely``), and the exception
that follows blames "No such file or directory" even when the file is only truncated. Reading the
header first turns both into one accurate line. Only the simple, common layouts are checked: one
uncompressed data file (``ElementDataFile = name``) or the data after the header (``LOCAL``);
compressed data, file lists and slice patterns are left to ITK.
"""

from __future__ import annotations

import math
from pathlib import Path

from livseg.errors import CorruptFileError, InputFileNotFoundError

__all__ = ["check_metaimage"]

ELEMENT_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                 "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                 "MET_DOUBLE": 8}
HEADER_LIMIT = 64 * 1024  # a MetaImage header is a few hundred bytes; ElementDataFile ends it


def _read_header(path: Path) -> tuple[dict[str, str], int] | None:
    """``(fields, bytes up to the end of the ElementDataFile line)``, or None when no such line is
    found in the first 64 KiB (not a header ITK would read either: ITK's own error then stands)."""
    with path.open("rb") as handle:
        head = handle.read(HEADER_LIMIT)
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.split(b"\n"):
        offset += len(raw) + 1
        key, sep, value = raw.decode("latin-1").partition("=")
        if not sep:
            continue
        key = key.strip()
        fields[key] = value.strip()
        if key == "ElementDataFile":
            return fields, min(offset, len(head))
    return None


def check_metaimage(path: Path) -> None:
    """Refuse a MetaImage whose data file is missing or shorter than its header's voxels need.

    Raises:
        InputFileNotFoundError: ``ElementDataFile`` names a file that does not exist.
        CorruptFileError: the data (in the named file, or after a ``LOCAL`` header) is truncated.
    """
    parsed = _read_header(path)
    if parsed is None:
        return
    fields, header_bytes = parsed
    target = fields["ElementDataFile"]
    if fields.get("CompressedData", "False").lower() == "true" or not target or " " in target \
            or "%" in target or target.upper() == "LIST":
        return
    local = target.upper() == "LOCAL"
    data = path if local else path.parent / target
    if not data.is_file():
        raise InputFileNotFoundError(f"{path}: its data file {target} (ElementDataFile) does not exist next to it")
    try:
        dims = [int(v) for v in fields.get("DimSize", "").split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        return  # ITK reports a malformed header in its own words
    element = ELEMENT_BYTES.get(fields.get("ElementType", ""))
    if not dims or element is None:
        return
    needed = math.prod(dims) * channels * element
    available = data.stat().st_size - (header_bytes if local else 0)
    if available < needed:
        where = "after its header" if local else f"in its data file {target}"
        raise CorruptFileError(
            f"{path}: truncated: {' x '.join(map(str, dims))} {fields['ElementType']} voxels need {needed:,} bytes, "
            f"{max(available, 0):,} are {where}"
        )
