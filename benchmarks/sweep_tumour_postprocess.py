"""Tumour threshold and smallest-lesion size of a cascade, swept on labelled cases.

Run by hand (not in CI), e.g. the choice of ``tumour-cpu``'s ``region.min_lesion_mm3`` in
benchmarks/README.md (choose on the stage-2 run's validation cases, then report on held-out ones):
    python benchmarks/sweep_tumour_postprocess.py --checkpoint CASCADE --data TRAIN --splits RUN2/splits.json --split val
    python benchmarks/sweep_tumour_postprocess.py --checkpoint CASCADE --data TEST

Each case runs through the cascade once (``livseg.segment`` with ``keep_probabilities``): the
post-processed liver and stage 2's tumour probability on the CT's own grid. Then every pair of
``--thresholds`` x ``--min-mm3`` gives tumour = (probability >= threshold) inside that liver, minus
lesions smaller than the size, scored with :func:`livseg.evaluation.tumours.score_tumours` and
summarised as ``livseg evaluate`` does. ``--thresholds 0.5 --min-mm3 M`` reproduces ``evaluate``
of a cascade whose ``region.min_lesion_mm3`` is M. Prints one row per pair, and the pair with the
highest tumour Dice per case among those with at most ``--max-fp`` false-positive lesions per case.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from livseg.data.io.volume import load_labels, load_volume
from livseg.evaluation.tumours import score_tumours, summarize_tumours
from livseg.inference.cascade import tumour_mask
from livseg.inference.segment import load_model, segment


def case_ids(data: Path, splits: Path | None, split: str) -> list[str]:
    """Case ids (``volume-<id>.nii.gz``) of a phantom folder, or of one split of a run's splits.json."""
    if splits is not None:
        return [case.removeprefix("lits-") for case in json.loads(splits.read_text())[split]]
    return sorted(p.name[len("volume-"):-len(".nii.gz")] for p in data.glob("volume-*.nii.gz"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a cascade checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="folder of volume-N / segmentation-N .nii.gz")
    parser.add_argument("--splits", type=Path, default=None, help="a run's splits.json (default: every case)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--min-mm3", type=float, nargs="+", default=[65, 250, 500, 1000, 2000])
    parser.add_argument("--max-fp", type=float, default=0.5, help="false-positive lesions per case allowed")
    args = parser.parse_args(argv)

    model = load_model(args.checkpoint)
    cases = []
    for case in case_ids(args.data, args.splits, args.split):
        volume = load_volume(args.data / f"volume-{case}.nii.gz")
        reference = load_labels(args.data / f"segmentation-{case}.nii.gz", like=volume)
        result = segment(volume, model, keep_probabilities=True)
        cases.append((result.mask > 0, result.input_probabilities["tumour"], volume, reference))

    rows = []
    print("| threshold | min mm^3 | tumour Dice / case | global | recall | >= 10 mm | precision | FP / case |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for threshold in args.thresholds:
        for min_mm3 in args.min_mm3:
            scores = []
            for liver, tumour_p, volume, reference in cases:
                tumour = tumour_mask(tumour_p, liver, threshold=threshold, voxel_mm3=volume.voxel_volume_ml * 1000.0,
                                     min_mm3=min_mm3)
                scores.append(score_tumours(liver.astype(np.uint8) + tumour.astype(np.uint8), reference, volume.affine))
            s = summarize_tumours(scores)
            rows.append((threshold, min_mm3, s))
            show = [s["dice_per_case"]["mean"], s["dice_global"], s["recall"], s["recall_10mm"], s["precision"]]
            print(f"| {threshold:.2f} | {min_mm3:.0f} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in show)
                  + f" | {s['fp_per_case']:.2f} |")
    allowed = [r for r in rows if r[2]["fp_per_case"] <= args.max_fp and r[2]["dice_per_case"]["mean"] is not None]
    if allowed:
        threshold, min_mm3, s = max(allowed, key=lambda r: r[2]["dice_per_case"]["mean"])
        print(f"chosen (most tumour Dice per case with <= {args.max_fp} FP per case): threshold {threshold}, "
              f"min {min_mm3:.0f} mm^3: Dice per case {s['dice_per_case']['mean']:.3f}, FP per case {s['fp_per_case']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
