"""One series through the node: retrieve it, segment it, write the DICOM SEG, store it.

:func:`process_series` does it over DICOMweb; :func:`segment_and_store` is the part after the
retrieval, shared with the DIMSE node (:mod:`livseg.pacs.dimse`), which receives series by C-STORE.

The segmentation is exactly ``livseg predict --output-type dicom-seg`` on the retrieved series
(:class:`livseg.inference.predict.CaseRunner`), so the SEG in the archive and the files
``predict`` writes for the same series agree voxel for voxel. The SEG is written completely
(to a temporary name, renamed when whole) before a single byte is sent, and it is sent as one
STOW-RS request, so the archive never holds part of one.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from livseg.data.io.files import prepare_output_dir, refuse_existing, write_json
from livseg.pacs.client import PacsClient, SeriesInfo

log = logging.getLogger(__name__)

__all__ = ["Processed", "Segmenter", "local_outputs", "process_series", "segment_and_store"]

STAGES = ("retrieve", "segment", "write", "store")  # the timings every processed series reports


class Segmenter:
    """The model, loaded once, and how to apply it (as :func:`livseg.inference.predict.predict`).

    Args:
        checkpoint: a livseg checkpoint, or None / ``"builtin:<name>"`` for a built-in model.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        threshold, postprocess: as for :func:`livseg.segment`.
        num_threads: CPU threads for torch; 0 = every core.
    """

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, *, device: str = "auto",
                 threshold: float = 0.5, postprocess: bool = True, num_threads: int = 0) -> None:
        from livseg.errors import ConfigError
        from livseg.inference.predict import model_name
        from livseg.inference.segment import load_model

        if not 0.0 < float(threshold) < 1.0:
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold}")
        self.loaded = load_model(checkpoint, device, num_threads=num_threads)
        self.name = model_name(checkpoint)
        self.threshold = float(threshold)
        self.postprocess = postprocess


@dataclass(frozen=True)
class Processed:
    """A series segmented and its SEG stored.

    Attributes:
        series: the source series.
        seg_uid: SOP Instance UID of the stored SEG.
        seg_series_uid: its Series Instance UID.
        stats: the prediction's statistics (as ``predict``'s ``<case>_stats.json``, plus ``pacs``:
            archive, study, series and SEG UIDs).
        timings: seconds for ``retrieve``, ``segment``, ``write`` and ``store``.
        outputs: the local files kept (with ``out_dir``): ``mask``, ``seg``, ``stats``.
    """

    series: SeriesInfo
    seg_uid: str
    seg_series_uid: str
    stats: dict[str, Any]
    timings: dict[str, float]
    outputs: dict[str, Path] = field(default_factory=dict)


def local_outputs(out_dir: str | os.PathLike[str], series: SeriesInfo) -> dict[str, Path]:
    """The files kept for a series in ``out_dir``: ``<SeriesInstanceUID>_liver.nii.gz``, ``_seg.dcm``
    and ``_stats.json`` (the series UID names them: unique across an archive)."""
    from livseg.inference.predict import case_outputs

    return case_outputs(out_dir, series.series_uid, output_type="both")


def process_series(
    client: PacsClient,
    series: SeriesInfo,
    segmenter: Segmenter,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    work_dir: str | os.PathLike[str] | None = None,
    before_store: Callable[[str], None] | None = None,
) -> Processed:
    """Retrieve a series (WADO-RS), segment it, and store its DICOM SEG into the same study (STOW-RS).

    Args:
        client: the archive.
        series: the series to segment (a CT series; see :mod:`livseg.pacs.select`).
        segmenter: the loaded model.
        out_dir: also keep the mask (NIfTI), the SEG and the statistics here (see
            :func:`local_outputs`); None keeps nothing.
        overwrite: replace existing local outputs instead of refusing.
        work_dir: where the series is retrieved to (a temporary folder inside it, removed
            afterwards); None: the system's temporary folder.
        before_store: called with the SEG's SOP Instance UID just before it is sent (the watch
            loop records it, so that a restart finds it instead of sending another).

    Returns:
        What was stored, with timings.

    Raises:
        PacsError, PacsUnavailableError: the archive failed (nothing stored).
        OutputExistsError: a local output exists and ``overwrite`` is False (checked first).
        LivsegError subclasses: the series cannot be read or segmented (nothing stored).
    """
    if out_dir is not None:
        prepare_output_dir(out_dir)
        refuse_existing(list(local_outputs(out_dir, series).values()), overwrite)
    with tempfile.TemporaryDirectory(prefix="livseg-pacs-", dir=work_dir) as tmp:
        start = time.perf_counter()
        source = Path(tmp) / series.series_uid
        client.retrieve_series(series.study_uid, series.series_uid, source)
        retrieve_s = time.perf_counter() - start
        processed = segment_and_store(source, series, segmenter, store=client.store, out_dir=out_dir,
                                      overwrite=overwrite, before_store=before_store, work_dir=tmp,
                                      address=f"{client.url}/studies/{series.study_uid}/series/{series.series_uid}",
                                      timings={"retrieve": retrieve_s})
    return processed


def segment_and_store(
    folder: Path,
    series: SeriesInfo,
    segmenter: Segmenter,
    *,
    store: Callable[[Path], Any],
    address: str,
    out_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    before_store: Callable[[str], None] | None = None,
    timings: dict[str, float] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> Processed:
    """Segment a series already on disk and store its SEG with ``store`` (STOW-RS or C-STORE).

    Args:
        folder: the series' files (one series).
        series: what the archive said about it.
        segmenter: the loaded model.
        store: sends one complete SEG file; raises on failure.
        address: where the series came from, for the statistics' ``input``.
        out_dir, overwrite, before_store: as for :func:`process_series`.
        timings: stages already timed (``retrieve``), continued here.
        work_dir: where the SEG is written before it is sent (a temporary folder inside it);
            None: the system's temporary folder.

    Returns:
        What was stored.
    """
    import pydicom

    from livseg.inference.predict import CaseRunner

    timings = dict(timings or {})
    with tempfile.TemporaryDirectory(prefix="livseg-seg-", dir=work_dir) as tmp:
        runner = CaseRunner(loaded=segmenter.loaded, checkpoint_name=segmenter.name,
                            out_dir=Path(out_dir) if out_dir is not None else Path(tmp),
                            output_type="both" if out_dir is not None else "dicom-seg", preview=False,
                            probabilities=(), threshold=segmenter.threshold, postprocess=segmenter.postprocess,
                            overwrite=overwrite)
        case = (0, series.series_uid, folder)
        start = time.perf_counter()
        volume = runner.load(case)
        result = runner.compute(case, volume)
        timings["segment"] = time.perf_counter() - start
        start = time.perf_counter()
        _, stats = runner.write(case, volume, result)
        timings["write"] = time.perf_counter() - start
        written = {key: runner.out_dir / name for key, name in stats["outputs"].items()}

        seg = pydicom.dcmread(written["seg"], stop_before_pixels=True)
        seg_uid, seg_series_uid = str(seg.SOPInstanceUID), str(seg.SeriesInstanceUID)
        if before_store is not None:
            before_store(seg_uid)
        start = time.perf_counter()
        store(written["seg"])
        timings["store"] = time.perf_counter() - start

    stats["input"] = address
    stats["pacs"] = {"source": address, "study_uid": series.study_uid, "series_uid": series.series_uid,
                     "seg_uid": seg_uid, "seg_series_uid": seg_series_uid, "timings_s": timings}
    if out_dir is not None:
        write_json(written["stats"], stats)  # the archive's address instead of the temporary folder
    return Processed(series=series, seg_uid=seg_uid, seg_series_uid=seg_series_uid, stats=stats, timings=timings,
                     outputs=written if out_dir is not None else {})
