"""A cascade checkpoint on real tumours: 3D-IRCADb-01 patient 1 (seven expert tumour masks).

Run by hand (not in CI):
    python benchmarks/bench_ircadb_tumour.py --checkpoint livseg-demo/cascade.pt [--threads 1]

IRCADb is CC BY-NC-ND 4.0: evaluation only, never training. The masks come from
../shared/data/real/ircadb-01-patient1/MASKS_DICOM.zip, unpacked into a temporary folder
(deleted afterwards). Reference in LiTS terms: tumour (2) = livertumor01..07; liver (1) = liver
mask or tumour or the cyst (``liverkyst``: a cyst is not a tumour; IRCADb's liver mask leaves
some edge lesions outside the liver, LiTS counts them as liver). Scored on the CT's own grid
(512 x 512 x 129, 0.57 x 0.57 x 1.6 mm): liver Dice / ASSD / HD95 of stage 1 alone and of the
cascade; tumour Dice, lesion detection (LiTS: > 50 % of a reference lesion covered by one
predicted lesion), false-positive lesions, tumour burden. Prints the tables, writes
benchmarks/results/bench_ircadb_tumour.csv (one row per reference lesion) and
benchmarks/results/ircadb_tumour.png (axial slices through the reference lesions: reference
tumour green, predicted tumour cyan, predicted liver red).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from livseg.data.io.volume import load_volume
from livseg.evaluation.scoring import score_case
from livseg.data.lesions import label_lesions
from livseg.evaluation.lesions import match_lesions
from livseg.evaluation.tumours import score_tumours
from livseg.inference.segment import load_model, segment

RESULTS = Path(__file__).resolve().parent / "results"
PATIENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "ircadb-01-patient1"
TUMOURS = [f"livertumor0{k}" for k in range(1, 8)]


def reference_labels(masks_zip: Path, ct_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """LiTS-style 0/1/2 labels of patient 1 and the cyst mask, from the zipped DICOM mask series."""
    with tempfile.TemporaryDirectory(prefix="ircadb-masks-") as tmp:
        with zipfile.ZipFile(masks_zip) as archive:
            archive.extractall(tmp)
        root = next(p for p in Path(tmp).rglob("liver") if p.is_dir()).parent

        def mask(name: str) -> np.ndarray:
            array = load_volume(root / name).array > 0
            if array.shape != ct_shape:
                raise SystemExit(f"{name}: mask shape {array.shape} is not the CT's {ct_shape}")
            return array

        tumour = np.zeros(ct_shape, bool)
        for name in TUMOURS:
            tumour |= mask(name)
        cyst = mask("liverkyst")
        liver = mask("liver") | tumour | cyst
    labels = liver.astype(np.uint8)
    labels[tumour] = 2
    return labels, cyst


def figure(volume, labels: np.ndarray, pred: np.ndarray, path: Path, title: str) -> None:  # noqa: ANN001
    """Axial slices through the reference lesions (largest first), radiological view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from livseg.data.preprocessing import to_ras

    image, ras_affine = to_ras(volume.array, volume.affine)
    ref, out = to_ras(labels, volume.affine)[0], to_ras(pred, volume.affine)[0]
    lesions, n = label_lesions(ref == 2)
    sizes = np.bincount(lesions.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-sizes)[:6]
    fig, axes = plt.subplots(1, len(order), figsize=(3.2 * len(order), 3.6), squeeze=False)
    for ax, index in zip(axes[0], order):
        where = np.argwhere(lesions == index + 1)
        k = int(np.median(where[:, 2]))
        centre = where.mean(axis=0).astype(int)
        half = 60  # voxels around the lesion (~34 mm)
        xs = slice(max(centre[0] - half, 0), centre[0] + half)
        ys = slice(max(centre[1] - half, 0), centre[1] + half)

        def view(a: np.ndarray) -> np.ndarray:
            return a[xs, ys, k][::-1, ::-1].T  # patient right on the left, anterior up

        ax.imshow(view(image), cmap="gray", vmin=-160, vmax=240)
        for mask, colour in ((out > 0, "red"), (ref == 2, "lime"), (out == 2, "cyan")):
            if view(mask).any():
                ax.contour(view(mask).astype(float), levels=[0.5], colors=colour, linewidths=0.9)
        ax.set_title(f"lesion {index + 1}: {sizes[index] * abs(np.linalg.det(ras_affine[:3, :3])) / 1000:.1f} mL",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title + "  (green: reference tumour, cyan: predicted tumour, red: predicted liver)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a cascade checkpoint (livseg cascade)")
    parser.add_argument("--patient", type=Path, default=PATIENT)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.patient / "PATIENT_DICOM").is_dir():
        print(f"{args.patient}: IRCADb patient 1 not found", file=sys.stderr)
        return 2
    volume = load_volume(args.patient / "PATIENT_DICOM")
    labels, cyst = reference_labels(args.patient / "MASKS_DICOM.zip", volume.shape)
    loaded = load_model(args.checkpoint, "cpu", num_threads=args.threads)
    started = time.perf_counter()
    result = segment(volume, loaded)
    seconds = time.perf_counter() - started
    if result.stage1_mask is None:
        print(f"{args.checkpoint} is not a cascade checkpoint", file=sys.stderr)
        return 2
    pred = result.mask
    liver = labels > 0
    stage1 = score_case(result.stage1_mask, liver, volume.spacing)
    cascade = score_case(pred, liver, volume.spacing)
    tumour = score_tumours(pred, labels, volume.affine)
    match = match_lesions(pred == 2, labels == 2, volume.affine)
    on_cyst = int(np.count_nonzero((pred == 2) & cyst))

    print(f"IRCADb patient 1 ({volume.shape}, {', '.join(f'{s:.2f}' for s in volume.spacing)} mm), "
          f"{args.checkpoint}, segment {seconds:.1f} s (threads {args.threads or torch.get_num_threads()})")
    print("| liver | Dice | ASSD mm | HD95 mm | volume mL (ref) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, s in (("stage 1 alone", stage1), ("cascade", cascade)):
        print(f"| {name} | {s['dice']:.4f} | {s['assd']:.2f} | {s['hd95']:.2f} | {s['volume_pred_ml']:.0f} "
              f"({s['volume_ref_ml']:.0f}) |")
    dice = tumour["tumour_dice"]
    print(f"tumour Dice {dice:.3f}; reference {tumour['lesions_ref']} lesions ({tumour['tumour_volume_ref_ml']:.1f} mL), "
          f"detected {tumour['lesions_detected']} (>= 10 mm: {tumour['lesions_detected_10mm']} of "
          f"{tumour['lesions_ref_10mm']}); predicted {tumour['lesions_pred']} lesions "
          f"({tumour['tumour_volume_pred_ml']:.1f} mL), {tumour['lesions_fp']} false positive(s); "
          f"burden {tumour['burden_pred_pct']:.2f} % vs {tumour['burden_ref_pct']:.2f} %; "
          f"predicted tumour voxels on the cyst: {on_cyst}")
    # match_lesions numbers lesions as label_lesions does on the whole array (C order of first voxel)
    lesions, n = label_lesions(labels == 2)
    volumes = np.bincount(lesions.ravel(), minlength=n + 1)[1:] * volume.voxel_volume_ml
    rows = []
    print("| reference lesion | volume mL | longest axial diameter mm | detected |")
    print("| --- | ---: | ---: | --- |")
    for index in range(n):
        row = {"lesion": index + 1, "volume_ml": float(volumes[index]), "diameter_mm": float(match.ref_diameter_mm[index]),
               "detected": bool(match.ref_detected[index])}
        rows.append(row)
        print(f"| {index + 1} | {row['volume_ml']:.2f} | {row['diameter_mm']:.1f} | {row['detected']} |")
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "bench_ircadb_tumour.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figure(volume, labels, pred, RESULTS / "ircadb_tumour.png",
           f"IRCADb patient 1: tumour Dice {dice:.3f}, {tumour['lesions_detected']}/{tumour['lesions_ref']} lesions "
           f"detected, {tumour['lesions_fp']} FP; liver Dice {cascade['dice']:.3f} (stage 1 {stage1['dice']:.3f})")
    print(f"figure {RESULTS / 'ircadb_tumour.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
