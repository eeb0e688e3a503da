"""Checks on the slices of one DICOM series that SimpleITK would pass silently: slices that are
not CT, of different pixel spacing or size, damaged files GDCM leaves out of the series, and the
cause of a series SimpleITK cannot read, said in words. Used by :mod:`livseg.data.io.dicom`."""

from __future__ import annotations

import os
from pathlib import Path

from livseg.errors import CorruptFileError, GeometryError, ModalityError, one_line

__all__ = ["CT_SOP_CLASSES", "check_ct_slices", "check_pixel_spacing", "damaged_dicom_files", "explain_failed_read"]

# SOP classes of CT slices (CT, Enhanced CT, Legacy Converted Enhanced CT) and Secondary Capture,
# which anonymisation pipelines use for CT too; any other image class (MR, PET, ...) is refused
CT_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2",
                  "1.2.840.10008.5.1.4.1.1.7")


def check_ct_slices(modalities: list[str], sop_classes: list[str], files: list[str], *, where: str) -> None:
    """Refuse a series of which any slice is not CT (Modality, SOP Class UID); tags left empty pass.

    Raises:
        ModalityError: naming the modality or SOP class found, how many slices have it, and one file.
    """
    for values, kind in ((modalities, "Modality"), (sop_classes, "SOP class")):
        if kind == "Modality":
            foreign = [k for k, value in enumerate(values) if value and value.upper() != "CT"]
        else:
            foreign = [k for k, value in enumerate(values) if value and value not in CT_SOP_CLASSES]
        if not foreign:
            continue
        value = values[foreign[0]]
        if kind == "SOP class":
            value = f"{value} ({_uid_name(value)})"
        part = "the series is" if len(foreign) == len(values) else f"{len(foreign)} of {len(values)} slices are"
        raise ModalityError(f"{where}: {part} {kind} {value}, not CT (e.g. {files[foreign[0]]}); livseg segments "
                            "the liver in CT only" + ("" if len(foreign) == len(values) else "; take them out of the series"))


def _uid_name(uid: str) -> str:
    import pydicom

    return pydicom.uid.UID(uid).name if pydicom.uid.UID(uid).is_valid else "unknown"


def check_pixel_spacing(spacings: list[str], files: list[str], *, where: str,
                        read_mm: tuple[float, float] | None = None) -> None:
    """Refuse slices whose PixelSpacing differ (SimpleITK would take the first slice's for all)
    or that lack it where SimpleITK found no other pixel size (``read_mm`` (1, 1): it took 1 mm).

    Raises:
        GeometryError: naming both spacings and a file of the odd one, or a slice without one.
    """
    parsed = [tuple(round(v, 4) for v in _numbers(text)) if text else None for text in spacings]
    if None in parsed and (read_mm is None or tuple(read_mm) == (1.0, 1.0)):
        k = parsed.index(None)
        part = ("the slices have" if all(value is None for value in parsed) else
                f"{parsed.count(None)} slice(s), e.g. {files[k]}, have")
        raise GeometryError(f"{where}: {part} no PixelSpacing (0028,0030), so the pixel size is unknown; livseg will "
                            "not guess it (SimpleITK would take 1 mm)")
    counts: dict[tuple[float, ...], int] = {}
    for value in parsed:
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    if len(counts) < 2:
        return
    common = max(counts, key=lambda value: counts[value])
    odd = next(k for k, value in enumerate(parsed) if value is not None and value != common)
    raise GeometryError(
        f"{where}: slices have different pixel spacings: {_mm(common)} mm in {counts[common]} slices, "
        f"{_mm(parsed[odd])} mm in {files[odd]} ({len(parsed) - counts[common]} slice(s)); livseg needs one "
        "voxel grid: an edited slice or two series mixed"
    )


def _mm(values: tuple[float, ...] | None) -> str:
    return " x ".join(f"{v:g}" for v in values or ())


def explain_failed_read(folder: Path, files: list[str]) -> None:
    """After SimpleITK failed to read a series: raise what is wrong in words, where it can be told
    (a slice of another size, a file pydicom cannot read); return otherwise."""
    import pydicom

    sizes: dict[tuple[int, int], list[str]] = {}
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
            size = (int(ds.Rows), int(ds.Columns))
        except Exception as exc:  # noqa: BLE001 (pydicom raises many types for a damaged file)
            raise CorruptFileError(f"{file}: damaged DICOM file in the series of {folder} "
                                   f"({type(exc).__name__}: {one_line(exc)[:160]}); replace it with an intact copy") from None
        sizes.setdefault(size, []).append(file)
    if len(sizes) > 1:
        common = max(sizes, key=lambda size: len(sizes[size]))
        odd = next(size for size in sizes if size != common)
        raise GeometryError(
            f"{folder}: slices have different sizes: {common[0]} x {common[1]} pixels (rows x columns) in "
            f"{len(sizes[common])} slices, {odd[0]} x {odd[1]} in {sizes[odd][0]} ({len(files) - len(sizes[common])} "
            "slice(s)); livseg needs one voxel grid: an edited slice or two series mixed"
        )


def damaged_dicom_files(folder: Path, series: dict[str, list[str]], series_id: str | None) -> list[tuple[str, str]]:
    """DICOM files under ``folder`` that GDCM left out of every series because they are damaged
    (pydicom cannot read them, or their pixel data is cut short): ``(file, reason)`` pairs.

    Only files with the DICOM preamble ("DICM" at byte 128) are looked at, and a damaged file
    known to belong to another series than ``series_id`` is ignored.
    """
    import pydicom

    listed = {os.path.abspath(f) for files in series.values() for f in files}
    found = []
    for directory, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            path = os.path.join(directory, name)
            if os.path.abspath(path) in listed or not _has_preamble(path):
                continue
            try:
                ds = pydicom.dcmread(path)
                if "Rows" not in ds:  # DICOMDIR, a structured report, ...: not a slice
                    continue
                uid = str(ds.get("SeriesInstanceUID", ""))
                if series_id is not None and uid and uid != series_id:
                    continue
                ds.pixel_array  # noqa: B018 (decoding is the check)
            except Exception as exc:  # noqa: BLE001 (pydicom raises many types for a damaged file)
                found.append((path, f"{type(exc).__name__}: {one_line(exc)[:160]}"))
    return found


def _has_preamble(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.strip().split("\\")]
