"""A built-in model (or any checkpoint) on every real CT of ../shared/data, as liver-v2's rule scores them.

    python benchmarks/bench_builtin_real.py                                   # liver-v1 (the default)
    python benchmarks/bench_builtin_real.py --checkpoint builtin:liver-v2 --json out.json
    python benchmarks/bench_builtin_real.py --checkpoint fold.pt --cases lidc-0001

Cases: 3D-IRCADb-01 patient 1 (liver mask joined with every livertumor mask; organ references:
its spleen and kidney masks), the two partial MSD CTs (labels > 0 on their 30 slices: the
visible liver), lits-small-64's complete slices 14+ (header spacing corrected to 5.3125 mm),
and the TotalSegmentator-labelled CTs liver-v2 may train on (example NIfTI and DICOM,
LIDC-0001, s0009: organ references for every class). Per case: liver Dice, ASSD, HD95 (mm),
predicted and reference mL on the CT's own grid (livseg.evaluation.metrics.case_metrics), and
with a multi-organ model the Dice of each neighbour with a reference (``segment(organs=True)``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from liver_v2_data import REAL, load_real  # noqa: E402

from livseg.data.io.volume import Volume, load_labels, load_volume  # noqa: E402
from livseg.data.organ_classes import CLASSES, class_index  # noqa: E402
from livseg.evaluation.metrics import case_metrics  # noqa: E402
from livseg.inference.segment import load_model, segment  # noqa: E402

NEVER_TRAINED = ("ircadb-01-patient1", "msd-liver_0-part", "msd-liver_1-part", "lits-small-64 slices 14+")
IRCADB_ORGANS = {"spleen": ("spleen",), "kidney": ("leftkidney", "rightkidney")}


def with_spacing(volume: Volume, spacing: tuple[float, float, float]) -> Volume:
    """The same array with the affine's column lengths set to ``spacing`` (directions kept)."""
    affine = volume.affine.copy()
    affine[:3, :3] = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0) * np.asarray(spacing)
    return Volume(array=volume.array, affine=affine, source=volume.source)


def load_case(shared: Path, name: str) -> tuple[Volume, np.ndarray, dict[str, np.ndarray]]:
    """(CT, reference liver, {class: reference mask}) of a named real case."""
    real = shared / "real"
    if name in REAL:
        volume, classes = load_real(shared, name)
        organs = {c: classes == i for i, c in enumerate(CLASSES) if i and c != "liver" and np.any(classes == i)}
        return volume, classes == class_index("liver"), organs
    if name == "ircadb-01-patient1":
        folder = real / "ircadb-01-patient1"
        volume = load_volume(folder / "PATIENT_DICOM")
        liver = load_labels(folder / "MASKS_DICOM/liver", like=volume, select=255) > 0
        organs: dict[str, np.ndarray] = {}
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(folder / "MASKS_DICOM.zip") as archive:
            archive.extractall(tmp)
            for tumour in sorted(Path(tmp, "MASKS_DICOM").glob("livertumor*")):
                liver |= load_labels(tumour, like=volume, select=255) > 0
            for organ, masks in IRCADB_ORGANS.items():
                organs[organ] = np.zeros(volume.shape, bool)
                for mask in masks:
                    organs[organ] |= load_labels(Path(tmp, "MASKS_DICOM", mask), like=volume, select=255) > 0
        return volume, liver, organs
    if name.startswith("msd-"):
        stem = name[len("msd-"):]
        volume = load_volume(real / "msd-liver-partial" / f"{stem}-ct.nii.gz")
        return volume, load_labels(real / "msd-liver-partial" / f"{stem}-labels.nii.gz", like=volume) > 0, {}
    if name == "lits-small-64 slices 14+":
        volume = load_volume(real / "lits-small-64/resized_liver.nii")
        labels = load_labels(real / "lits-small-64/resized_mask.nii", like=volume) > 0
        volume = with_spacing(volume, (5.3125, 5.3125, 5.0))
        affine = volume.affine.copy()
        affine[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, 14.0]) + affine[:3, 3]
        return Volume(volume.array[:, :, 14:], affine, volume.source), labels[:, :, 14:], {}
    raise KeyError(f"unknown case {name!r}; known: {[*NEVER_TRAINED, *REAL]}")


def score_case(loaded: tuple, volume: Volume, liver: np.ndarray, organs: dict[str, np.ndarray]) -> dict:
    """Liver metrics and neighbour Dice of one case."""
    multi = bool(loaded[1].model.classes)
    result = segment(volume, loaded, organs=multi)
    metrics = case_metrics(result.mask > 0, liver, volume.spacing)
    row = {k: round(float(metrics[k]), 4) for k in ("dice", "assd", "hd95", "volume_pred_ml", "volume_ref_ml")}
    if multi:
        for organ, ref in organs.items():
            pred = result.organs == class_index(organ, loaded[1].model.classes)
            row[f"dice_{organ}"] = round(2 * float(np.count_nonzero(pred & ref)) / float(
                                         max(np.count_nonzero(pred) + np.count_nonzero(ref), 1)), 4)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--checkpoint", default=None, help="default: the default built-in model")
    parser.add_argument("--cases", nargs="+", default=[*NEVER_TRAINED, *REAL])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.checkpoint, num_threads=args.threads)
    rows = {}
    print(f"{'case':26s} {'Dice':>7s} {'ASSD':>6s} {'HD95':>6s} {'pred mL':>8s} {'ref mL':>7s}  neighbours")
    for name in args.cases:
        rows[name] = score_case(loaded, *load_case(args.shared, name))
        r = rows[name]
        extra = " ".join(f"{k[5:]} {v:.3f}" for k, v in r.items() if k.startswith("dice_"))
        print(f"{name:26s} {r['dice']:7.4f} {r['assd']:6.2f} {r['hd95']:6.2f} {r['volume_pred_ml']:8.0f} "
              f"{r['volume_ref_ml']:7.0f}  {extra}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "cases": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
