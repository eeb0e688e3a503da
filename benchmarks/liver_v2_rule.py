"""liver-v2's decision rule (issue 22), applied: does liver-v2 replace liver-v1 as the default?

    python benchmarks/liver_v2_rule.py --v2 build/liver-v2/liver-v2.pt --folds build/liver-v2 \
        --json build/liver-v2/rule.json

The rule was written before any liver-v2 result existed (and is repeated in liver-v2's model card):
liver-v2 becomes the default only if (a) its mean liver Dice over the 8 held-out real cases
below is strictly higher than liver-v1's over the same cases (both rounded to 4 decimals) and (b)
no case drops by more than 0.01 (v2 >= v1 - 0.0100 on every case).

- The 4 CTs liver-v2 trains on (totalseg-ct-sm, totalseg-dicom, lidc-0001, s0009) are scored
  by the fold model that never saw them: ``<folds>/fold-<fold>.json``, written by
  ``scripts/build_liver_v2.py --hold-out <fold>`` (stage 2 retrained without the case from the
  shared stage 1). liver-v1's figures for the first three are its own leave-one-out values from
  its model card (made the same way); s0009, which liver-v1 never trained on, is scored here with
  the shipped liver-v1.
- The 4 CTs nobody trains on (IRCADb patient 1, the two partial MSD CTs, lits-small-64's complete
  slices) are scored here with the shipped liver-v1 and with ``--v2``, by the same code
  (``bench_builtin_real.score_case``: each CT's own grid, post-processed, tumour counted as liver).

A fold that was not run (no ``fold-<fold>.json``) is reported as missing: the rule is then
decided only if a scored case already fails (b); s0009's liver-v1 value is then the one measured
for the rule before any liver-v2 result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_builtin_real import NEVER_TRAINED, load_case, score_case  # noqa: E402

from livseg.inference.segment import load_model  # noqa: E402

FOLD_OF = {"totalseg-ct-sm": "totalseg", "totalseg-dicom": "totalseg", "lidc-0001": "lidc-0001", "s0009": "s0009"}
V1_CARD_LOO = {"totalseg-ct-sm": 0.9289, "totalseg-dicom": 0.9497, "lidc-0001": 0.9235}  # liver-v1.md, leave-one-out
V1_S0009 = 0.9237  # shipped liver-v1 on s0009, measured before any liver-v2 result (the rule's table)
MAX_DROP = 0.01


def _word(value: bool | None) -> str:
    return "not decidable (cases missing)" if value is None else str(value)


def decide(v1: dict[str, float], v2: dict[str, float | None]) -> dict:
    """The rule on per-case liver Dice: means, per-case changes, and whether v2 wins.

    A case whose v2 value is None (its fold was not run) is reported as missing: (b) already fails
    if a scored case drops by more than 0.01 (no missing case can undo that), else the rule is
    undecided until every case is scored; (a) is only the rule's mean when no case is missing.
    """
    scored = [c for c in v1 if v2.get(c) is not None]
    missing = [c for c in v1 if v2.get(c) is None]
    mean1 = round(sum(v1[c] for c in scored) / len(scored), 4)
    mean2 = round(sum(v2[c] for c in scored) / len(scored), 4)  # type: ignore[misc]
    drops = {c: round(v2[c] - v1[c], 4) for c in scored}  # type: ignore[operator]
    worst = min(drops, key=drops.get)
    failed = [c for c in scored if v2[c] < v1[c] - MAX_DROP - 1e-9]  # type: ignore[operator]
    higher = mean2 > mean1
    no_drop: bool | None = False if failed else (None if missing else True)
    wins: bool | None = False if failed else (None if missing else higher)
    return {"mean_v1": mean1, "mean_v2": mean2, "cases_in_means": len(scored), "missing": missing, "change": drops,
            "worst_case": worst, "dropped_over_0.01": failed, "mean_higher": higher if not missing else None,
            "no_case_drops_over_0.01": no_drop, "v2_wins": wins}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--v1", default="builtin:liver-v1")
    parser.add_argument("--v2", required=True, help="the full liver-v2 model (build output or builtin:liver-v2)")
    parser.add_argument("--folds", type=Path, default=Path("build/liver-v2"), help="folder of fold-<fold>.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: dict[str, dict] = {}
    for case, fold in FOLD_OF.items():
        report_file = args.folds / f"fold-{fold}.json"
        if not report_file.is_file():
            rows[case] = {"v2": None, "v2_by": f"fold {fold} not run ({report_file} missing)"}
            continue
        rows[case] = {"v2": json.loads(report_file.read_text())["scores"][case], "v2_by": f"fold {fold} (never saw it)"}
    v1_own = [*NEVER_TRAINED] + (["s0009"] if rows["s0009"]["v2"] is not None else [])
    for label, spec in (("v1", args.v1), ("v2", args.v2)):
        loaded = load_model(spec, "cpu", num_threads=args.threads)
        for case in v1_own if label == "v1" else NEVER_TRAINED:
            rows.setdefault(case, {})[label] = score_case(loaded, *load_case(args.shared, case))
            rows[case].setdefault(f"{label}_by", str(spec))
    for case, value in V1_CARD_LOO.items():
        rows[case]["v1"], rows[case]["v1_by"] = {"dice": value}, "liver-v1 card, leave-one-out"
    rows["s0009"].setdefault("v1", {"dice": V1_S0009})
    rows["s0009"].setdefault("v1_by", "liver-v1 measured before any liver-v2 result (RULE)")
    order = [*FOLD_OF, *NEVER_TRAINED]
    result = decide({c: rows[c]["v1"]["dice"] for c in order},
                    {c: rows[c]["v2"]["dice"] if rows[c]["v2"] is not None else None for c in order})
    print(f"{'case':26s} {'v1':>7s} {'v2':>7s} {'change':>7s}  v2 ASSD / HD95 / pred / ref mL   v2 neighbours")
    for case in order:
        v2 = rows[case]["v2"]
        if v2 is None:
            print(f"{case:26s} {rows[case]['v1']['dice']:7.4f} {'-':>7s} {'-':>7s}  {rows[case]['v2_by']}")
            continue
        extra = " ".join(f"{k[5:]} {v:.3f}" for k, v in v2.items() if k.startswith("dice_"))
        print(f"{case:26s} {rows[case]['v1']['dice']:7.4f} {v2['dice']:7.4f} {result['change'][case]:+7.4f}  "
              f"{v2['assd']:5.2f} / {v2['hd95']:5.2f} / {v2['volume_pred_ml']:5.0f} / {v2['volume_ref_ml']:5.0f}   {extra}")
    scored = result["cases_in_means"]
    print(f"{f'mean of {scored} scored':26s} {result['mean_v1']:7.4f} {result['mean_v2']:7.4f}"
          + (f"  (not the rule's mean: {len(result['missing'])} case(s) missing)" if result["missing"] else ""))
    verdict = {True: "liver-v2 becomes the default", False: "liver-v1 stays the default",
               None: "undecided until the missing folds are run"}[result["v2_wins"]]
    print(f"(a) mean higher: {_word(result['mean_higher'])}; (b) no case below v1 - 0.01: "
          f"{_word(result['no_case_drops_over_0.01'])} (below: {', '.join(result['dropped_over_0.01']) or 'none'}; "
          f"worst {result['worst_case']} {result['change'][result['worst_case']]:+.4f}) -> {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "rule": result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
