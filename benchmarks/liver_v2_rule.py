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
MAX_DROP = 0.01


def decide(v1: dict[str, float], v2: dict[str, float]) -> dict:
    """The rule on per-case liver Dice: means, per-case changes, and whether v2 wins."""
    cases = list(v1)
    mean1 = round(sum(v1[c] for c in cases) / len(cases), 4)
    mean2 = round(sum(v2[c] for c in cases) / len(cases), 4)
    drops = {c: round(v2[c] - v1[c], 4) for c in cases}
    worst = min(drops, key=drops.get)
    higher, no_drop = mean2 > mean1, all(v2[c] >= v1[c] - MAX_DROP - 1e-9 for c in cases)
    return {"mean_v1": mean1, "mean_v2": mean2, "change": drops, "worst_case": worst, "mean_higher": higher,
            "no_case_drops_over_0.01": no_drop, "v2_wins": higher and no_drop}


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
        report = json.loads((args.folds / f"fold-{fold}.json").read_text())
        rows[case] = {"v2": report["scores"][case], "v2_by": f"fold {fold} (never saw it)"}
    for label, spec in (("v1", args.v1), ("v2", args.v2)):
        loaded = load_model(spec, "cpu", num_threads=args.threads)
        for case in (*NEVER_TRAINED, "s0009") if label == "v1" else NEVER_TRAINED:
            rows.setdefault(case, {})[label] = score_case(loaded, *load_case(args.shared, case))
            rows[case].setdefault(f"{label}_by", str(spec))
    for case, value in V1_CARD_LOO.items():
        rows[case]["v1"], rows[case]["v1_by"] = {"dice": value}, "liver-v1 card, leave-one-out"
    order = [*FOLD_OF, *NEVER_TRAINED]
    result = decide({c: rows[c]["v1"]["dice"] for c in order}, {c: rows[c]["v2"]["dice"] for c in order})
    print(f"{'case':26s} {'v1':>7s} {'v2':>7s} {'change':>7s}  v2 ASSD / HD95 / pred / ref mL   v2 neighbours")
    for case in order:
        v2 = rows[case]["v2"]
        extra = " ".join(f"{k[5:]} {v:.3f}" for k, v in v2.items() if k.startswith("dice_"))
        print(f"{case:26s} {rows[case]['v1']['dice']:7.4f} {v2['dice']:7.4f} {result['change'][case]:+7.4f}  "
              f"{v2['assd']:5.2f} / {v2['hd95']:5.2f} / {v2['volume_pred_ml']:5.0f} / {v2['volume_ref_ml']:5.0f}   {extra}")
    print(f"{'mean of 8':26s} {result['mean_v1']:7.4f} {result['mean_v2']:7.4f}")
    print(f"(a) mean higher: {result['mean_higher']}; (b) no case below v1 - 0.01: {result['no_case_drops_over_0.01']} "
          f"(worst {result['worst_case']} {result['change'][result['worst_case']]:+.4f}) -> "
          f"{'liver-v2 becomes the default' if result['v2_wins'] else 'liver-v1 stays the default'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "rule": result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
