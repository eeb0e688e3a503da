"""The outputs of ``livseg predict``: their names per case, and the checks made on them before any
work (output type against the inputs, an output folder inside a DICOM input, cases a stopped
batch finished already)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from livseg.errors import ConfigError, CorruptFileError, OutputExistsError, OutputPathError

log = logging.getLogger(__name__)

__all__ = ["OUTPUT_NIFTI_SUFFIXES", "OUTPUT_TYPES", "case_outputs", "check_output_folder", "check_output_type",
           "finished_cases"]

OUTPUT_TYPES = ("nifti", "dicom-seg", "both")  # mask as NIfTI, as DICOM SEG, or both
# endings of every NIfTI that case_outputs names: a folder given to predict skips them (its own
# earlier outputs when -o is the input folder); a test keeps this in step with case_outputs
OUTPUT_NIFTI_SUFFIXES = ("_liver.nii.gz", "_probability.nii.gz", "_organs.nii.gz")


def case_outputs(
    out_dir: str | os.PathLike[str],
    case: str,
    *,
    preview: bool = False,
    output_type: str = "nifti",
    probabilities: Sequence[str] = (),
    organs: bool = False,
) -> dict[str, Path]:
    """Output paths of one case: ``mask`` (NIfTI) and/or ``seg`` (DICOM SEG) by ``output_type``,
    ``stats``, ``preview`` (with ``preview``), ``probability_<name>`` per name in
    ``probabilities`` (``"liver"``), and with ``organs`` the neighbours' label map ``organs``
    (``<case>_organs.nii.gz``) and its legend and volumes ``organs_json`` (``<case>_organs.json``)."""
    out = Path(out_dir)
    paths = {}
    if output_type in ("nifti", "both"):
        paths["mask"] = out / f"{case}_liver.nii.gz"
    if output_type in ("dicom-seg", "both"):
        paths["seg"] = out / f"{case}_seg.dcm"
    paths["stats"] = out / f"{case}_stats.json"
    if preview:
        paths["preview"] = out / f"{case}_preview.png"
    for name in probabilities:
        paths[f"probability_{name}"] = out / f"{case}_{name}_probability.nii.gz"
    if organs:
        paths["organs"] = out / f"{case}_organs.nii.gz"
        paths["organs_json"] = out / f"{case}_organs.json"
    return paths


def check_output_type(cases: Sequence[tuple[str, Path]], output_type: str) -> None:
    """Refuse an output type the inputs cannot have, before any work.

    Raises:
        ConfigError: unknown type, or a DICOM SEG asked for an input that is not a DICOM series
            (a SEG references the source slices; a NIfTI file has none).
    """
    if output_type not in OUTPUT_TYPES:
        raise ConfigError(f"unknown output type {output_type!r}; expected one of {', '.join(OUTPUT_TYPES)}")
    if output_type == "nifti":
        return
    files = [str(path) for _, path in cases if not path.is_dir()]
    if files:
        raise ConfigError(
            f"--output-type {output_type} needs DICOM series folders (a DICOM SEG references the source slices), "
            f"but {files[0]!r}{f' and {len(files) - 1} more' if len(files) > 1 else ''} is not one; "
            "use --output-type nifti for NIfTI input"
        )


def check_output_folder(cases: Sequence[tuple[str, Path]], out_dir: str | os.PathLike[str]) -> None:
    """Refuse an output folder that is, or lies inside, a DICOM input folder: the next run would
    find livseg's files among the slices (and take the folder for a folder of NIfTI files).

    Raises:
        OutputPathError: naming the input folder.
    """
    out = Path(out_dir).resolve()
    for _, path in cases:
        if path.is_dir() and (out == path.resolve() or path.resolve() in out.parents):
            where = "is" if out == path.resolve() else "lies inside"
            raise OutputPathError(f"-o {out_dir} {where} the DICOM input folder {path}: outputs written among its "
                                  "slices would be read with them next time; choose another output folder")


def finished_cases(cases: Sequence[tuple[str, Path]], planned: Sequence[dict[str, Path]]) -> dict[int, dict[str, Any]]:
    """The cases whose planned outputs all exist (``skip_existing``): index -> their statistics,
    read back from ``<case>_stats.json`` and marked ``"skipped": True``.

    Raises:
        OutputExistsError: a case with some of its outputs but not all (an interrupted write, or
            an earlier run asked for other outputs): only ``overwrite`` may replace them.
        CorruptFileError: a finished case's statistics file cannot be read.
    """
    from livseg.data.io.files import read_json

    done: dict[int, dict[str, Any]] = {}
    for index, ((name, _), paths) in enumerate(zip(cases, planned)):
        present = [p for p in paths.values() if p.exists()]
        if len(present) == len(paths):
            stats = read_json(paths["stats"])
            if not isinstance(stats, dict) or "case" not in stats:
                raise CorruptFileError(f"{paths['stats']}: not the statistics livseg writes; pass --overwrite to "
                                       "predict the case again")
            done[index] = {**stats, "skipped": True}
            log.debug("%s: every output exists; skipped", name)
        elif present:
            missing = [p.name for p in paths.values() if not p.exists()]
            raise OutputExistsError(f"case {name!r} has some of its outputs ({present[0].name}, ...) but not "
                                    f"{', '.join(missing)}; pass --overwrite to predict it again")
    return done
