"""Evaluation of a checkpoint on labelled cases, on two grids, labelled as such.

``network_grid``   what the paper reported: the prediction on the preprocessed grid (160 x 160 x
                   80 for the paper preset), probabilities >= 0.5, no post-processing, against
                   the label resampled to that grid by nearest neighbour (label > 0). Surface
                   distances there use the spacing ``original extent / grid shape`` per axis,
                   i.e. ``n_in * spacing_in / n_out`` (the physical field of view spread over
                   the grid's voxels; the corner-aligned resampling actually places samples
                   ``(n_in - 1) * spacing_in / (n_out - 1)`` apart, which differs by under one
                   voxel over the whole field of view).
``original_grid``  what LiTS requires: the prediction mapped back to each CT's own grid,
                   thresholded and (by default) post-processed, against the liver (label in
                   ``liver_labels``: given, else a cache's or dataset.json's, else the checkpoint's
                   ``preprocess.liver_labels``; LiTS: > 0) with the CT's real spacing.
``stage1_original_grid``  cascade checkpoints only: stage 1's liver alone, scored like
                   ``original_grid``, so that the effect of stage 2 on the liver is visible.

A cascade checkpoint (stage 2 on the liver's region) also gets tumour metrics
(:mod:`livseg.evaluation.tumours`): per case in the ``original_grid`` rows of ``metrics.csv``,
summarised under ``"tumour"`` in ``summary.json`` (per-case and global tumour Dice, lesion
precision and recall, recall for lesions >= 10 mm, false-positive lesions per case, tumour-burden
error). Tumour is label 2 of the reference; cases without it count for detection (every
predicted lesion there is a false positive) but not for the per-case tumour Dice.

Summaries (``summary.json``): for every metric the mean, standard deviation (population,
ddof=0) and median over the cases whose value is finite, with ``n`` (cases used) and
``n_nonfinite`` (cases left out). Surface distances are ``inf`` when exactly one of prediction
and reference is empty (see :mod:`livseg.evaluation.metrics`), and a mean over them would be ``inf`` for
the whole set; they are counted instead, so one failed case is visible without hiding the rest.
A statistic with no finite value is ``null``. Global Dice pools voxels over all cases (LiTS
"Dice global").

Quality estimate: every case's ``stats["quality"]`` (:mod:`livseg.inference.quality_model`) is
scored against its actual Dice: ``predicted_dice`` and ``review`` columns in the
``original_grid`` rows of ``metrics.csv`` and in ``report.html``, ``quality.png`` (predicted
against actual Dice, with the review threshold) and a ``quality`` block in ``summary.json``
(:func:`livseg.evaluation.scoring.summarize_quality`: Spearman correlation, how many cases under
Dice 0.90 were flagged, how many good ones, Dice >= 0.95, were flagged too).

Which cases: ``split="all"`` uses every case. ``split="test"`` / ``"val"`` use the test /
validation ids of a ``splits.json``: the one next to the checkpoint (``RUN_DIR/splits.json``,
written by training: the split the model was actually trained and validated on) if present,
else, for a cache, the cache's own ``splits.json``. ``split="auto"`` (the default) is ``"test"``
when that split has test cases (``train.test_fraction`` > 0) and ``"val"`` otherwise: best.pt was
chosen on the validation cases, so their score is optimistic, and the test cases are the honest
measurement. Every output names the split it scored (``split`` in summary.json and in each
metrics.csv row, the report's notes, the CLI's lines). A dataset folder or CSV without a
``splits.json`` beside the checkpoint can only be evaluated with ``split="all"``. A cache supplies only the case list and split: every CT and
label is read again from the source paths in its manifest (the original grid needs them anyway)
and preprocessed with the checkpoint's own config, so the cache's preprocessing need not match.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence


from livseg.errors import ConfigError, DatasetError, OutputPathError
from livseg.evaluation.scoring import (
    COUNTS,
    GRIDS,
    METRICS,
    QUALITY_COLUMNS,
    SUMMARY_NOTE,
    quality_note,
    score_case,
    score_network_grid,
    summarize,
    summarize_quality,
    tumour_note,
)
from livseg.evaluation.tumours import TUMOUR_METRICS, score_tumours, summarize_tumours

log = logging.getLogger(__name__)

__all__ = ["evaluate", "select_cases"]

SPLITS = ("auto", "test", "val", "all")


# ------------------------------------------------------------------------------------- cases


def select_cases(
    data: str | os.PathLike[str], split: str, checkpoint: str | os.PathLike[str] | None
) -> tuple[list[Any], str, str]:
    """The cases to evaluate, the split they are, and where the split came from.

    Args:
        data: a livseg cache folder or a dataset folder/CSV.
        split: ``"auto"``, ``"test"``, ``"val"`` or ``"all"`` (see the module docstring); for a
            built-in model ``"auto"`` means ``"all"``: it was trained on none of these cases.
        checkpoint: the checkpoint; its folder is searched for ``splits.json`` (not for a
            built-in model: None or ``"builtin:<name>"``).

    Returns:
        ``([Case, ...], split scored ("test", "val" or "all"), split source)``.

    Raises:
        ConfigError: unknown ``split``.
        DatasetError: no split file (unless ``split="all"``), no test cases for
            ``split="test"``, or split ids missing from the data.
        InputFileNotFoundError: ``data`` does not exist.
    """
    from livseg.data.cache import is_cache, load_manifest
    from livseg.data.datasets import SPLITS_FILE, Case, discover_cases, load_split

    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    data = Path(data)
    if is_cache(data):
        manifest = load_manifest(data)
        cases = [
            Case(case_id=cid, image=Path(entry["image"]), label=Path(entry["label"]))
            for cid, entry in manifest["cases"].items()
        ]
    else:
        cases = discover_cases(data)
    from livseg.weights import is_builtin

    if split == "all" or (split == "auto" and is_builtin(checkpoint)):
        return cases, "all", "all"  # a built-in model was trained on none of the user's cases
    candidates = [] if is_builtin(checkpoint) else [Path(checkpoint).parent / SPLITS_FILE]  # type: ignore[arg-type]
    if is_cache(data):
        candidates.append(data / SPLITS_FILE)
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        looked = ", ".join(str(c) for c in candidates) or "nowhere (a built-in model has no run folder)"
        raise DatasetError(
            f"split {split!r} needs a {SPLITS_FILE}; looked at {looked}. "
            "Keep the checkpoint in its run folder, or use --split all"
        )
    parts = load_split(found)
    if split == "auto":
        split = "test" if parts["test"] else "val"
    wanted = list(parts[split])
    if not wanted:
        raise DatasetError(
            f"{found}: no {split} cases; train with --test-fraction to hold some out, or use --split val"
        )
    by_id = {case.case_id: case for case in cases}
    missing = [cid for cid in wanted if cid not in by_id]
    if missing:
        raise DatasetError(
            f"{found}: {len(missing)} {split} case(s) not in {data}: {missing[:10]}; "
            "evaluate on the dataset the model was trained on, or use --split all"
        )
    return [by_id[cid] for cid in wanted], split, str(found)


# ------------------------------------------------------------------------------------- evaluate


def evaluate(
    checkpoint: str | os.PathLike[str] | None,
    data: str | os.PathLike[str],
    *,
    split: str | tuple[list[Any], str, str] = "auto",
    out_dir: str | os.PathLike[str],
    postprocess: bool = True,
    threshold: float = 0.5,
    device: str = "auto",
    progress: bool = True,
    figures: bool = True,
    overwrite: bool = False,
    liver_labels: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Score a checkpoint on labelled cases on both grids and write the results.

    :func:`livseg.evaluation.compare.compare` scores two checkpoints this way on the same cases.

    Writes into ``out_dir``: ``metrics.csv`` (one row per case and grid: built here and only here),
    ``summary.json``, ``figures/<case>.png`` (CT, ground truth, prediction on the axial slice with
    most liver, original grid), ``quality.png`` (predicted against actual Dice) and ``report.html``.

    Args:
        checkpoint: livseg checkpoint; None or ``"builtin:<name>"`` for a built-in model.
        data: a livseg cache (manifest.json + splits.json) or a dataset folder/CSV.
        split: ``"auto"`` (test when the split has test cases, else val), ``"test"``, ``"val"`` or
            ``"all"``; see the module docstring for where the split comes from. Or the cases
            already chosen, as :func:`select_cases` returns them (two checkpoints on the same
            cases: :func:`livseg.evaluation.compare.compare`).
        out_dir: output folder.
        postprocess: post-process the original-grid prediction (the network-grid score never is).
        threshold: probability threshold on both grids (paper: 0.5).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: tqdm bar over cases.
        figures: draw the per-case figures.
        overwrite: replace existing results instead of refusing.
        liver_labels: the reference's label values that count as liver (TotalSegmentator: 5).
            None: those of a cache (``livseg preprocess --liver-labels``) or of a dataset.json,
            else the checkpoint's own (LiTS: 1, 2).

    Returns:
        The summary written to ``summary.json``.

    Raises:
        OutputExistsError: results exist in ``out_dir`` and ``overwrite`` is False.
        OutputPathError: ``out_dir`` cannot be written, or is a training run folder.
        CheckpointError, InputFileNotFoundError: bad checkpoint.
        DatasetError, ConfigError: bad data or split, references of which none holds a liver
            label (a wrong ``liver_labels``), or other liver labels than LiTS's for a
            cascade (its tumour is LiTS's label 2); LivsegError subclasses for unreadable cases.
    """
    from tqdm.auto import tqdm

    from livseg.inference.cascade import Cascade
    from livseg.inference.predict import model_name
    from livseg.inference.segment import load_model, segment
    from livseg.config import validate_config
    from livseg.data.cache import resolve_liver_labels
    from livseg.data.io.files import prepare_output_dir, refuse_existing, write_csv, write_json
    from livseg.data.io.volume import allowed_label_values, load_labels, load_volume
    from livseg.data.preprocessing import binarize
    from livseg.figures import plot_case_panels, plot_quality_scatter, write_html_report

    out = prepare_output_dir(out_dir)  # before the model loads: a bad -o fails in a second, not after the run
    if (out / "last.pt").is_file() or (out / "best.pt").is_file():  # --overwrite would replace training's metrics.csv
        raise OutputPathError(f"-o {out} is a training run folder: evaluate's metrics.csv and report would replace the "
                              "run's own; choose another output folder (e.g. a folder inside it)")
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    model, config = load_model(checkpoint, device)
    cascade = isinstance(model, Cascade)
    if liver_labels is not None:
        scoring = replace(config.preprocess, liver_labels=tuple(int(v) for v in liver_labels))
        validate_config(replace(config, preprocess=scoring))  # 1..255, as --set preprocess.liver_labels
    else:
        scoring = resolve_liver_labels(data, config.preprocess)  # a cache's or a dataset.json's labels
    if cascade and tuple(scoring.liver_labels) != (1, 2):
        raise ConfigError(f"liver labels {list(scoring.liver_labels)}: a cascade's tumour is LiTS's label 2, so it is "
                          "scored on LiTS labels (1 liver, 2 tumour) only; score the liver with its stage-1 checkpoint")
    cases, split, split_source = split if isinstance(split, tuple) else select_cases(data, split, checkpoint)
    if not cases:
        raise DatasetError(f"{data}: no cases to evaluate for split {split!r}")
    unlabelled = [case for case in cases if case.label is None]
    if unlabelled:  # before the first case is scored, not after
        raise DatasetError(f"{len(unlabelled)} of {len(cases)} cases have no label, e.g. {unlabelled[0].case_id} "
                           f"({unlabelled[0].image}); cannot evaluate them")
    figure_paths = {case.case_id: out / "figures" / f"{case.case_id}.png" for case in cases} if figures else {}
    quality_plot = out / "quality.png" if figures else None
    refuse_existing([out / "metrics.csv", out / "summary.json", out / "report.html", *figure_paths.values(),
                     *([quality_plot] if quality_plot else [])], overwrite)

    rows: list[dict[str, Any]] = []
    for case in tqdm(cases, desc="evaluate", unit="case", disable=not progress):
        volume = load_volume(case.image)
        # every case has a label (checked above)
        labels = load_labels(case.label, like=volume, allowed=allowed_label_values(scoring.liver_labels))  # type: ignore[arg-type]
        liver = binarize(labels, scoring.liver_labels)
        result = segment(volume, (model, config), threshold=threshold, postprocess=postprocess)
        scores = {
            "network_grid": score_network_grid(
                result.probabilities, labels, volume.affine, scoring, threshold=threshold,
                grid=result.grid,
            ),
            "original_grid": score_case(result.mask, liver, volume.spacing),
        }
        quality = result.stats["quality"]
        scores["original_grid"].update(predicted_dice=quality["predicted_dice"], review=int(quality["review"]))
        if cascade:
            scores["original_grid"].update(score_tumours(result.mask, labels, volume.affine))
            scores["stage1_original_grid"] = score_case(result.stage1_mask, liver, volume.spacing)
        rows.extend({"case": case.case_id, "split": split, "grid": grid, **values} for grid, values in scores.items())
        log.debug("%s: Dice %.4f (network grid), %.4f (original grid)", case.case_id,
                 scores["network_grid"]["dice"], scores["original_grid"]["dice"])
        if figures:
            tumour_dice = scores["original_grid"].get("tumour_dice", float("nan"))
            plot_case_panels(volume.array, labels if cascade else liver, result.mask, volume.affine,
                             figure_paths[case.case_id],
                             title=f"{case.case_id}  Dice {scores['original_grid']['dice']:.4f} (original grid)"
                             + (f", tumour Dice {tumour_dice:.3f}" if tumour_dice == tumour_dice else ""),
                             tumour=cascade)

    if not any(row["n_ref"] for row in rows if row["grid"] == "original_grid"):
        for path in figure_paths.values():  # this run's figures: no result is written for a wrong reference
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (out / "figures").rmdir()
        raise DatasetError(
            f"{data}: no reference of the {len(cases)} case(s) holds a liver label {list(scoring.liver_labels)}, so every "
            "score would be against an empty liver; name the liver's value(s) in the references with --liver-labels"
        )
    summary = {
        "checkpoint": model_name(checkpoint),
        "data": str(data),
        "split": split,
        "split_source": split_source,
        "n_cases": len(cases),
        "threshold": float(threshold),
        "postprocess": bool(postprocess),
        "network_shape": [int(s) for s in config.preprocess.target_shape],  # the training patch with preprocess.spacing
        "liver_labels": [int(v) for v in scoring.liver_labels],
        "statistics": SUMMARY_NOTE,
        **summarize(rows),
    }
    if cascade:
        summary["tumour"] = summarize_tumours([row for row in rows if row["grid"] == "original_grid"])
    summary["quality"] = summarize_quality([row for row in rows if row["grid"] == "original_grid"],
                                           review_below=result.stats["quality"]["review_below"])
    if quality_plot is not None:
        plot_quality_scatter([{"dice": row["dice"], "predicted_dice": row["predicted_dice"], "review": row["review"],
                               "group": "flagged for review" if row["review"] else "not flagged"}
                              for row in rows if row["grid"] == "original_grid"], quality_plot,
                             review_below=summary["quality"]["review_below"],
                             title=f"quality estimate on {summary['n_cases']} case(s) ({split} split)")
    columns = ["case", "split", "grid", *METRICS, *QUALITY_COLUMNS, *COUNTS, *(TUMOUR_METRICS if cascade else ())]
    write_csv(out / "metrics.csv", rows, columns)
    write_json(out / "summary.json", summary, indent=2, allow_nan=False)
    _write_report(rows, summary, {**figure_paths, **({"quality": quality_plot} if quality_plot else {})},
                  out / "report.html", write_html_report)
    return summary


def _write_report(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], figure_paths: Mapping[str, Path],
                  path: Path, write_html_report: Any) -> None:
    """report.html: one row per case with the headline metrics of both grids."""
    by_case: dict[str, dict[str, Any]] = {}
    for row in rows:
        short = {"network_grid": "net", "original_grid": "orig"}.get(row["grid"])
        if short is None:  # a cascade's stage 1 alone: in metrics.csv, not in the headline table
            continue
        entry = by_case.setdefault(row["case"], {"case": row["case"]})
        entry[f"dice_{short}"] = row["dice"]
        if short == "orig":
            entry.update({f"{m}_orig": row[m] for m in ("assd", "hd95", "mssd", "rvd", "volume_pred_ml", "volume_ref_ml")})
            entry.update(predicted_dice=row["predicted_dice"], review="REVIEW" if row["review"] else "")
    notes = [
        f"{summary['n_cases']} case(s), split {summary['split']} ({summary['split_source']}); "
        f"threshold {summary['threshold']}; post-processing on the original grid: {summary['postprocess']}.",
        "net = network grid (the paper's measurement, no post-processing); orig = each CT's own grid (LiTS). "
        "Distances in mm, volumes in mL.",
        *(f"{grid}: global Dice {summary[grid]['global_dice']:.4f}, mean Dice "
          f"{summary[grid]['metrics']['dice']['mean']:.4f}" for grid in GRIDS if grid in summary),
        *([tumour_note(summary["tumour"])] if "tumour" in summary else []),
        quality_note(summary["quality"]),
        f"Summary statistics: {SUMMARY_NOTE}.",
    ]
    for row in rows:
        if row["grid"] == "original_grid" and "tumour_dice" in row:
            by_case[row["case"]].update({key: row[key] for key in ("tumour_dice", "lesions_ref", "lesions_detected",
                                                                   "lesions_fp", "burden_error_pct")})
    figures = {case: Path(p.name) if case == "quality" else Path("figures") / p.name for case, p in figure_paths.items()}
    write_html_report(list(by_case.values()), figures, path, title="livseg evaluate", notes=notes)
