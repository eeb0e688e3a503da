"""``livseg predict``: segment many CTs with one model load and write each case's outputs.

Per case, by output type: ``<case>_liver.nii.gz`` (``nifti``: uint8, exactly the input's shape
and affine: 0/1 liver, or 0/1/2 background/liver/tumour for a cascade checkpoint, the LiTS
convention) and/or ``<case>_seg.dcm`` (``dicom-seg``: a DICOM SEG referencing the source series,
for DICOM input only); always ``<case>_stats.json`` (statistics, per-stage timings); optionally
``<case>_preview.png`` and ``<case>_liver_probability.nii.gz``; ``report.html`` for a batch. The
segmentation itself is :func:`livseg.inference.segment.segment`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from livseg import __version__
from livseg.config import RunConfig
from livseg.data.io.files import atomic_output, check_input, prepare_output_dir, refuse_existing
from livseg.data.image_folders import find_images
from livseg.data.io.volume import Volume, case_name_and_source, load_volume, save_mask, save_probability
from livseg.device import cpu_count, resolve_device
from livseg.distributed import all_gather_objects, cleanup, env_world, setup
from livseg.errors import ConfigError, DatasetError, LivsegError
from livseg.inference.cascade import Cascade
from livseg.inference.outputs import (
    OUTPUT_NIFTI_SUFFIXES,
    OUTPUT_TYPES,
    case_outputs,
    check_output_folder,
    check_output_type,
    finished_cases,
)
from livseg.inference.pipeline import run_pipeline
from livseg.inference.segment import Segmentation, load_model, segment

log = logging.getLogger(__name__)

__all__ = ["OUTPUT_NIFTI_SUFFIXES", "OUTPUT_TYPES", "CaseRunner", "case_outputs", "check_output_folder",
           "check_output_type", "expand_inputs", "finished_cases", "model_name", "predict", "review_first"]



def model_name(checkpoint: str | os.PathLike[str] | None) -> str:
    """How outputs name the model used: ``builtin:<name>`` or the checkpoint's absolute path."""
    from livseg.weights import builtin_name, is_builtin

    if is_builtin(checkpoint):
        return builtin_name(checkpoint)  # type: ignore[arg-type]
    return str(Path(checkpoint).resolve())  # type: ignore[arg-type]


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[tuple[str, Path]]:
    """Turn command-line inputs into ``(case name, path)`` pairs.

    A file is one case. A folder of NIfTI files, or a LiTS, MSD or nnU-Net dataset folder, gives
    one case per image: label maps and livseg's own outputs are skipped, and one log line says
    which (:func:`livseg.data.image_folders.find_images`). Any other folder is one DICOM series,
    named after the folder, or, for a generic name (``DICOM``, ``PATIENT_DICOM``, ...), after its
    parent folder or header (:func:`livseg.data.io.volume.case_name_and_source`).

    Raises:
        InputFileNotFoundError: an input does not exist.
        DatasetError: no inputs, or two inputs with the same case name (their outputs would
            collide).
    """
    cases: list[tuple[str, Path]] = []
    for raw in inputs:
        path = check_input(raw, "input")
        found = find_images(path, skip_suffixes=OUTPUT_NIFTI_SUFFIXES) if path.is_dir() else None
        if found is None:
            cases.append((case_name_and_source(path)[0], path))
            continue
        cases.extend(found.images)
        if found.skipped:
            log.info("%s: %d image(s) to predict; %s", path, len(found.images), found.summary())
    if not cases:
        raise DatasetError("no inputs given; expected NIfTI files, DICOM series folders or folders of NIfTI files")
    seen: dict[str, Path] = {}
    for name, path in cases:
        if name in seen:
            raise DatasetError(
                f"inputs {str(seen[name])!r} and {str(path)!r} both give case name {name!r}; "
                "their outputs would collide: predict them into different output folders"
            )
        seen[name] = path
    return cases


def predict(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str],
    threshold: float = 0.5,
    postprocess: bool = True,
    device: str | torch.device = "auto",
    preview: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    output_type: str = "nifti",
    save_probabilities: bool = False,
    series_id: str | None = None,
    overlap: bool | None = None,
    quality: bool = True,
    skip_existing: bool = False,
    organs: bool = False,
) -> list[dict[str, Any]]:
    """Segment many CTs with one model load; write a mask, statistics and a preview per case.

    Per case ``<case>_liver.nii.gz`` (uint8, the input's shape and affine) and/or
    ``<case>_seg.dcm`` (DICOM SEG) by ``output_type``, ``<case>_stats.json`` (with the quality
    estimate, :mod:`livseg.inference.quality_model`), with ``preview`` ``<case>_preview.png`` and
    with ``save_probabilities`` ``<case>_liver_probability.nii.gz``; ``report.html`` when there
    is more than one case, the cases flagged for review first.

    Where the network leaves the CPU to spare (on a GPU, or on one CPU thread per process) the
    next CT is read while the network runs and the previous case is written meanwhile
    (:mod:`livseg.inference.pipeline`), so a batch is bound by the network. A network running
    on several CPU threads keeps every core busy already, and a reader or writer thread taking
    a core from one of them stalls the others at every synchronisation (measured 9% slower on 2
    cores), so there cases run one at a time. Under ``torchrun --nproc_per_node=N -m livseg
    predict ...`` the cases are dealt out among the ranks (one GPU each, or the CPU cores shared
    out: the fastest way to use a CPU, 1.4x on 2 cores), every rank writes its own cases, and
    rank 0 writes one report of all of them.

    Every output of a case is written to a temporary file first and all are renamed into place
    together, so a failure leaves no partial case. Existing outputs are checked for every case
    before the model is loaded, and again before each case is written. Processing stops at the
    first bad input; cases finished before it keep their complete outputs.

    Args:
        inputs: NIfTI files, DICOM series folders, or folders of NIfTI files.
        checkpoint: livseg checkpoint (its preprocessing config is used); None or
            ``"builtin:<name>"`` for a model shipped with livseg (None: the default).
        out_dir: output folder (created when the first file is written).
        threshold, postprocess, device: as for :func:`segment` / :func:`load_model`.
        preview: also draw the three-plane preview PNG.
        overwrite: replace existing outputs instead of refusing.
        progress: show a tqdm bar over cases (rank 0's cases under torchrun).
        output_type: ``nifti`` (default), ``dicom-seg`` (DICOM series input only) or ``both``.
        save_probabilities: also write the liver probability on the input grid (before
            thresholding and post-processing) as a two-byte NIfTI (uint16, scale 1/65535); for a
            cascade, stage 2's liver-or-tumour and tumour probabilities (``<case>_liver_probability``,
            ``<case>_tumour_probability``; 0 outside the liver's region).
        series_id: the DICOM SeriesInstanceUID to read from folders that hold several series
            (else the largest is read, and a log line lists them all).
        overlap: read and write in threads beside the network (up to four CTs in memory) or
            handle one case at a time, start to end; None (default) overlaps on a GPU or with one
            CPU thread per process, not when the network uses several CPU threads.
        quality: estimate each mask's quality (``stats["quality"]``: predicted Dice, ``review``
            flag and its ``reasons``; one more forward pass on a crop around the liver). Flagged
            cases come first in ``report.html``, and their preview says so.
        skip_existing: go on where an interrupted batch stopped: a case whose outputs all exist
            is not predicted again (its statistics are read back, marked ``"skipped": True``),
            and ``report.html`` is written anew.
        organs: with a multi-organ model (``livseg models``: liver-v2), also write the liver and
            its neighbours as one label map ``<case>_organs.nii.gz`` (uint8, the input's grid)
            and ``<case>_organs.json`` (the legend, value -> class, and each class's volume in mL).

    Returns:
        The statistics dict of every case (all ranks' cases, in input order), as written to its JSON.

    Raises:
        InputFileNotFoundError, DatasetError: bad input list.
        ConfigError: ``dicom-seg``/``both`` for an input that is not a DICOM series; both
            ``overwrite`` and ``skip_existing``; ``organs`` with a liver-only model.
        OutputPathError: ``out_dir`` is (inside) a DICOM input folder, or cannot be written.
        OutputExistsError: an output exists and neither ``overwrite`` nor ``skip_existing`` is
            given; with ``skip_existing``, a case with some of its outputs but not all.
        CheckpointError, ConfigError: bad checkpoint or device.
        LivsegError subclasses from :func:`livseg.data.io.volume.load_volume` for an unreadable
        CT (under torchrun: the first error of any rank, raised on every rank).
    """
    if overwrite and skip_existing:
        raise ConfigError("overwrite and skip_existing exclude each other: one redoes every case, the other keeps "
                          "finished ones")
    prepare_output_dir(out_dir)
    if not 0.0 < float(threshold) < 1.0:  # NaN too; before an hour of inference, not after
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    cases = expand_inputs(inputs)
    check_output_folder(cases, out_dir)
    check_output_type(cases, output_type)
    if series_id is not None and any(not path.is_dir() for _, path in cases):
        files = [str(path) for _, path in cases if not path.is_dir()]
        log.warning("series_id %s applies to DICOM folders only; ignored for %d file input(s), e.g. %s", series_id,
                    len(files), files[0])
    probabilities = ("liver",) if save_probabilities else ()
    planned = [case_outputs(out_dir, name, preview=preview, output_type=output_type, probabilities=probabilities,
                            organs=organs) for name, _ in cases]
    report = Path(out_dir) / "report.html" if len(cases) > 1 else None
    skipped = finished_cases(cases, planned) if skip_existing else {}
    refuse_existing([p for index, paths in enumerate(planned) if index not in skipped for p in paths.values()]
                    + ([report] if report and not skip_existing else []), overwrite)
    todo = [index for index in range(len(cases)) if index not in skipped]

    target = resolve_device(device, env_world().local_rank)
    info = setup(target)
    try:
        mine = [(index, *cases[index]) for index in todo[info.rank :: info.world_size]]
        results: list[tuple[int, dict[str, Any]]] = []
        error: LivsegError | None = None
        try:
            threads = max(1, cpu_count() // info.local_world_size) if target.type == "cpu" else 0
            loaded = load_model(checkpoint, target, num_threads=threads)
            if organs and not loaded[1].model.classes:
                raise ConfigError(f"--organs needs a multi-organ model (e.g. --checkpoint builtin:liver-v2); "
                                  f"{model_name(checkpoint)} segments the liver only")
            if save_probabilities and isinstance(loaded[0], Cascade):  # stage 2 has a tumour probability too
                refuse_existing([case_outputs(out_dir, cases[index][0], probabilities=("tumour",))["probability_tumour"]
                                 for index in todo], overwrite)
            runner = CaseRunner(
                loaded=loaded,
                checkpoint_name=model_name(checkpoint),  # builtin:<name> for a shipped model
                out_dir=Path(out_dir), output_type=output_type, preview=preview, probabilities=probabilities,
                threshold=threshold, postprocess=postprocess, overwrite=overwrite, series_id=series_id,
                organs=organs,
                quality=quality,
            )
            if overlap is None:  # overlap where no OpenMP team can be stalled by the reader and writer
                overlap = target.type == "cuda" or threads == 1
            results = _run_cases(mine, runner, progress=progress and info.is_main, overlap=overlap)
        except LivsegError as exc:  # every rank must reach the gather below, or the others wait forever
            error = exc
        gathered = all_gather_objects((results, error), info)
    finally:
        cleanup(info)
    errors = [rank_error for _, rank_error in gathered if rank_error is not None]
    if errors:
        raise error if error is not None else errors[0]
    pairs = [pair for rank_results, _ in gathered for pair in rank_results] + list(skipped.items())
    combined = [stats for _, stats in sorted(pairs, key=lambda pair: pair[0])]
    if report is not None and info.is_main:
        _write_report(combined, report)  # replaces an older one (skip_existing)
    return combined


def review_first(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases flagged for review (``stats["quality"]["review"]``) first, lowest predicted Dice
    first among them; the others after them in their own order."""
    flagged = [s for s in results if s.get("quality", {}).get("review")]
    flagged.sort(key=lambda s: s["quality"]["predicted_dice"])
    return flagged + [s for s in results if not s.get("quality", {}).get("review")]


def _write_report(results: Sequence[dict[str, Any]], path: Path) -> None:
    """report.html of a batch: one row per case, flagged cases first."""
    columns = ("case", "liver_volume_ml", "tumour_count", "tumour_volume_ml", "tumour_burden_percent", "mean_hu",
               "median_hu", "n_components_before_postprocess", "seconds")
    rows = []
    for stats in review_first(results):
        row = {key: stats[key] for key in columns[:1] if key in stats}
        if "quality" in stats:
            row.update(review="REVIEW" if stats["quality"]["review"] else "",
                       predicted_dice=stats["quality"]["predicted_dice"])
        row.update({key: stats[key] for key in columns[1:] if key in stats})
        if "quality" in stats:
            row["reasons"] = "; ".join(stats["quality"]["reasons"][1:] or stats["quality"]["reasons"])
        rows.append(row)
    figures = {s["case"]: s["outputs"]["preview"] for s in results if "preview" in s["outputs"]}
    flagged = sum(1 for s in results if s.get("quality", {}).get("review"))
    notes = [f"{flagged} of {len(results)} case(s) flagged for review (predicted Dice below "
             f"{results[0]['quality']['review_below']:.2f}, or an empty mask): listed first."] \
        if results and "quality" in results[0] else []
    from livseg.figures import write_html_report  # matplotlib costs 0.6 s to import: only when drawing

    write_html_report(rows, figures, path, title="livseg predict", notes=notes)


def _run_cases(cases: list[tuple[int, str, Path]], runner: CaseRunner, *, progress: bool,
               overlap: bool) -> list[tuple[int, dict[str, Any]]]:
    """This rank's cases through load (thread) -> segment (here) -> write (thread)."""
    from tqdm.auto import tqdm

    with tqdm(total=len(cases), desc="predict", unit="case", disable=not progress) as bar:
        return run_pipeline(cases, runner.load, runner.compute, runner.write, on_written=lambda _: bar.update(),
                            overlap=overlap)


@dataclass(frozen=True)
class CaseRunner:
    """The three stages of one case (read, segment, write its outputs), with everything they
    share; :func:`predict` runs them over a batch, :mod:`livseg.pacs` over one retrieved series."""

    loaded: tuple[nn.Module, RunConfig]
    checkpoint_name: str
    out_dir: Path
    output_type: str
    preview: bool
    probabilities: tuple[str, ...]
    threshold: float
    postprocess: bool
    overwrite: bool
    series_id: str | None = None
    organs: bool = False  # also the neighbours' label map (a multi-organ model)
    quality: bool = True

    def load(self, case: tuple[int, str, Path]) -> tuple[Volume, float]:
        """Read the CT (loader thread); returns it and the seconds it took."""
        start = time.perf_counter()
        volume = load_volume(case[2], series_id=self.series_id if case[2].is_dir() else None)
        return volume, time.perf_counter() - start

    def compute(self, case: tuple[int, str, Path], loaded: tuple[Volume, float]) -> Segmentation:
        """Segment it (the calling thread: the network)."""
        return segment(loaded[0], self.loaded, threshold=self.threshold, postprocess=self.postprocess,
                       keep_probabilities=bool(self.probabilities), organs=self.organs,
                       quality=self.quality)

    def write(self, case: tuple[int, str, Path], loaded: tuple[Volume, float], result: Segmentation) -> tuple[int, dict[str, Any]]:
        """Write every output of the case atomically (writer thread); returns (index, statistics)."""
        index, name, path = case
        volume, load_seconds = loaded
        outputs = case_outputs(self.out_dir, name, preview=self.preview, output_type=self.output_type,
                               probabilities=tuple(result.input_probabilities), organs=self.organs)
        refuse_existing(list(outputs.values()), self.overwrite)  # something may have appeared meanwhile
        timings = {"load": load_seconds, **result.timings}
        start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            tmp = {key: stack.enter_context(atomic_output(p, overwrite=self.overwrite)) for key, p in outputs.items()}
            if "mask" in tmp:
                save_mask(result.mask, volume, tmp["mask"], overwrite=True)
            if "seg" in tmp:
                from livseg.data.io.dicom_seg import LITS_SEGMENTS, seg_series_description, write_dicom_seg

                # liver, and for a cascade the tumour too (LiTS labels 1 and 2)
                numbers = (1, 2) if result.stage1_mask is not None else (1,)
                write_dicom_seg(result.mask, volume, tmp["seg"], segments={k: LITS_SEGMENTS[k] for k in numbers},
                                series_id=self.series_id, overwrite=True,
                                series_description=seg_series_description(result.stats))
            for structure, probability in result.input_probabilities.items():
                save_probability(probability, volume, tmp[f"probability_{structure}"], overwrite=True)
            if "organs" in tmp:
                save_mask(result.organs, volume, tmp["organs"], overwrite=True)
                tmp["organs_json"].write_text(json.dumps({"case": name, "checkpoint": self.checkpoint_name,
                                                          **result.stats["organs"]}, indent=2) + "\n")
            if "preview" in tmp:
                from livseg.figures import plot_preview

                quality = result.stats.get("quality", {})
                plot_preview(volume.array, result.mask, volume.affine, tmp["preview"], title=name,
                             review=quality.get("reasons") if quality.get("review") else None)
            timings["write"] = time.perf_counter() - start  # the JSON itself is not counted
            stats = {
                "case": name,
                "case_name_from": case_name_and_source(path)[1],  # a generic DICOM folder name is replaced
                "input": str(path),
                **({"series_id": self.series_id} if path.is_dir() and self.series_id else {}),
                "checkpoint": self.checkpoint_name,
                **result.stats,
                "seconds": sum(timings.values()),  # this case's own stages; in a batch they overlap others
                "timings_s": timings,
                "outputs": {key: p.name for key, p in outputs.items()},
                "livseg_version": __version__,
            }
            tmp["stats"].write_text(json.dumps(stats, indent=2) + "\n")
        log.debug("%s: liver %.1f mL in %.1f s", name, stats["liver_volume_ml"], stats["seconds"])
        return index, stats
