"""Figure: phantoms rendered on TotalSegmentator subject s0009's label map beside its real CT.

    python benchmarks/fig_anatomy_phantom.py --out build/figures/anatomy-phantom-s0009.png

Top row: the real CT of s0009 (CC BY 4.0, TotalSegmentator dataset) at three heights through
its liver and a coronal section; the next rows: phantoms made by
``livseg.phantom.real_anatomy.make_anatomy_phantom`` on the same label map (seeds 0 and 2 by default),
at the same heights relative to the liver's top (a phantom's own z-range may differ: its label
map was deformed and its scan cropped). Outlines: green liver, orange stomach, cyan bowel,
magenta spleen/kidneys. Window [-160, 240] HU. The PNG shows third-party CT (CC BY 4.0): wherever it is
shown, attribute it (Wasserthal et al., TotalSegmentator dataset, as README.md does for the
copy in docs/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from livseg.data.io.volume import load_labels, load_volume  # noqa: E402
from livseg.data.organ_classes import class_index, phantom_lut, read_name_table, to_classes, totalseg_lut  # noqa: E402
from livseg.phantom.real_anatomy import load_anatomy, make_anatomy_phantom  # noqa: E402

COLOURS = {"liver": "lime", "stomach": "orange", "bowel": "cyan", "spleen": "magenta", "kidney": "magenta"}


def panels(ct: np.ndarray, classes: np.ndarray, spacing: tuple[float, ...], offsets_mm: list[float]):  # noqa: ANN201
    """Axial slices at ``offsets_mm`` below the liver's top slice, and a coronal one through the liver."""
    liver = classes == class_index("liver")
    top = int(np.flatnonzero(liver.any((0, 1)))[-1])
    out = []
    for off in offsets_mm:
        k = int(np.clip(round(top - off / spacing[2]), 0, ct.shape[2] - 1))
        out.append((f"{off:.0f} mm below liver top", ct[:, :, k].T[::-1], classes[:, :, k].T[::-1], spacing[0] / spacing[1]))
    j = int(np.round(np.argwhere(liver).mean(0)[1]))
    out.append(("coronal", ct[:, j, :].T[::-1], classes[:, j, :].T[::-1], spacing[2] / spacing[0]))
    return out


def draw(ax, title: str, image: np.ndarray, classes: np.ndarray, aspect: float) -> None:  # noqa: ANN001
    ax.imshow(image, cmap="gray", vmin=-160, vmax=240, aspect=aspect)
    for name, colour in COLOURS.items():
        mask = classes == class_index(name)
        if mask.any():
            ax.contour(ndimage.binary_fill_holes(mask), levels=[0.5], colors=colour, linewidths=0.7)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("build/figures/anatomy-phantom-s0009.png"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args(argv)
    folder = args.shared / "real/totalseg-subjects"
    ct = load_volume(folder / "s0009-ct.nii.gz")
    names = read_name_table(folder / "classes.csv")
    real = to_classes(load_labels(folder / "s0009-labels.nii.gz", like=ct, allowed=None), totalseg_lut(names))
    offsets = [10.0, 40.0, 70.0]
    rows = [("s0009 real CT", panels(ct.array, real, ct.spacing, offsets))]
    anatomy = load_anatomy(folder / "s0009-labels.nii.gz", names)
    for seed in args.seeds:
        phantom = make_anatomy_phantom(anatomy, seed, debug=True)
        spacing = tuple(float(s) for s in np.linalg.norm(phantom.affine[:3, :3], axis=0))
        classes = to_classes(phantom.organs, phantom_lut())
        rows.append((f"phantom {seed} ({phantom.facts['phase']}, {phantom.facts['stomach']})",
                     panels(phantom.ct, classes, spacing, offsets)))
    fig, axes = plt.subplots(len(rows), 4, figsize=(11, 2.9 * len(rows)))
    for r, (label, row) in enumerate(rows):
        for c, (title, image, classes, aspect) in enumerate(row):
            draw(axes[r, c], f"{label}: {title}" if c == 0 else title, image, classes, aspect)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=56)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
