"""Two checkpoints on the same cases, side by side: what fine-tuning bought (``livseg evaluate
--compare``).

:func:`compare` chooses the cases once (the split of the run folder of the checkpoint that has
one, the second preferred: ``evaluate --compare run/best.pt`` scores the built-in model and the
fine-tuned one on that run's validation or test cases), runs :func:`~livseg.evaluation.evaluate.evaluate`
for each into ``OUT/before`` and ``OUT/after`` (every output of ``evaluate``; the per-case rows
are read back from their ``metrics.csv``), and writes ``OUT/comparison.csv``: per case and as a mean over the cases, Dice and ASSD on each CT's
own grid for both checkpoints and the change (after minus before: a higher Dice and a lower ASSD
are better), and ``OUT/comparison.json`` with the same and the two summaries.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Sequence

from livseg.evaluation.evaluate import evaluate, select_cases

__all__ = ["COMPARED", "compare", "format_comparison"]

COMPARED = ("dice", "assd")  # the original-grid metrics compared per case
GRID = "original_grid"


def compare(
    before: str | os.PathLike[str] | None,
    after: str | os.PathLike[str] | None,
    data: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str],
    split: str = "auto",
    overwrite: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Score ``before`` and ``after`` on the same cases and tabulate them side by side.

    Args:
        before, after: checkpoints (None or ``"builtin:<name>"``: a built-in model).
        data: a livseg cache or a dataset folder/CSV.
        out_dir: output folder (``before/``, ``after/``, ``comparison.csv``, ``comparison.json``).
        split: as for :func:`~livseg.evaluation.evaluate.evaluate`, looked up beside ``after``
            (else beside ``before``; ``auto`` with two built-in models: every case).
        overwrite: replace existing results.
        **options: ``postprocess``, ``threshold``, ``device``, ``progress``, ``figures``,
            ``liver_labels`` (as for ``evaluate``; both are scored against the same reference:
            without ``liver_labels``, the cache's or dataset.json's, else those of the checkpoint
            whose split is used, so a run fine-tuned with ``--liver-labels 5`` and the built-in
            model, trained on LiTS's 1 and 2, are both scored against label 5).

    Returns:
        ``{"before", "after" (their names), "split", "split_source", "cases": [row, ...],
        "mean": row}``, a row holding ``case``, ``<metric>_before``, ``<metric>_after`` and
        ``<metric>_change`` for Dice and ASSD (the mean over the cases where both are finite).

    Raises:
        As :func:`~livseg.evaluation.evaluate.evaluate`.
    """
    from livseg.data.io.files import prepare_output_dir, refuse_existing, write_csv, write_json
    from livseg.inference.predict import model_name
    from livseg.weights import is_builtin

    out = prepare_output_dir(out_dir)
    refuse_existing([out / "comparison.csv", out / "comparison.json"], overwrite)
    owner = after if not is_builtin(after) else before
    selection = select_cases(data, split, owner)
    if options.get("liver_labels") is None:  # one reference for both: a built-in model's own labels are LiTS's
        from livseg.data.cache import resolve_liver_labels
        from livseg.nn.checkpoint import read_checkpoint

        options["liver_labels"] = resolve_liver_labels(data, read_checkpoint(owner).config.preprocess).liver_labels
    scored = {}
    for name, checkpoint in (("before", before), ("after", after)):
        summary = evaluate(checkpoint, data, split=selection, out_dir=out / name, overwrite=overwrite, **options)
        with open(out / name / "metrics.csv", newline="", encoding="utf-8") as handle:
            rows = {row["case"]: row for row in csv.DictReader(handle) if row["grid"] == GRID}
        scored[name] = (summary, rows)
    cases = [_row(case, scored["before"][1][case], scored["after"][1][case]) for case in scored["before"][1]]
    result = {"before": model_name(before), "after": model_name(after), "split": selection[1],
              "split_source": selection[2], "cases": cases, "mean": _mean(cases),
              "summaries": {name: summary for name, (summary, _) in scored.items()}}
    columns = ["case", *(f"{m}_{side}" for m in COMPARED for side in ("before", "after", "change"))]
    write_csv(out / "comparison.csv", [*cases, result["mean"]], columns)
    finite = {**result, "cases": [_finite(r) for r in cases], "mean": _finite(result["mean"])}
    write_json(out / "comparison.json", finite, indent=2, allow_nan=False)
    return result


def _row(case: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"case": case}
    for metric in COMPARED:
        a, b = float(before[metric]), float(after[metric])
        row.update({f"{metric}_before": a, f"{metric}_after": b, f"{metric}_change": b - a})
    return row


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """A row for JSON: NaN and inf (a surface distance to an empty mask) become null."""
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()}


def _mean(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The mean row: each metric over the cases where both checkpoints scored a finite value."""
    mean: dict[str, Any] = {"case": "mean"}
    for metric in COMPARED:
        both = [r for r in rows if math.isfinite(r[f"{metric}_before"]) and math.isfinite(r[f"{metric}_after"])]
        for side in ("before", "after", "change"):
            values = [r[f"{metric}_{side}"] for r in both]
            mean[f"{metric}_{side}"] = sum(values) / len(values) if values else math.nan
    return mean


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison as a text table (what ``livseg evaluate --compare`` prints)."""
    width = max(8, *(len(r["case"]) for r in result["cases"]))
    lines = [f"before: {result['before']}", f"after:  {result['after']}",
             f"{result['split']} split, each CT's own grid; change = after - before",
             f"{'case':<{width}}  {'Dice':>7}  {'Dice':>7}  {'change':>7}  {'ASSD mm':>7}  {'ASSD mm':>7}  {'change':>7}",
             f"{'':<{width}}  {'before':>7}  {'after':>7}  {'':>7}  {'before':>7}  {'after':>7}  {'':>7}"]
    lines.append("-" * len(lines[-1]))
    for row in [*result["cases"], result["mean"]]:
        lines.append(f"{row['case']:<{width}}  {row['dice_before']:7.4f}  {row['dice_after']:7.4f}  "
                     f"{row['dice_change']:+7.4f}  {row['assd_before']:7.2f}  {row['assd_after']:7.2f}  "
                     f"{row['assd_change']:+7.2f}")
    return "\n".join(lines)

