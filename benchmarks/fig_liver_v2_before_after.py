"""Figure: liver-v1 (before) and liver-v2 (after) on one real CT, where they differ most.

    python benchmarks/fig_liver_v2_before_after.py --case lidc-0001 --after builtin:liver-v2 \
        --out build/figures/liver-v2-before-after.png

Four axial slices of the case (names as in bench_builtin_real.py) where the two liver masks
disagree by the most voxels, cropped to the upper abdomen (the liver, stomach and spleen side),
shown radiologically (patient's right on the image's left, anterior up). Outlines: green the
reference liver, red liver-v1, yellow liver-v2; the stomach of the reference in orange where it
exists. Window [-160, 240] HU. The title gives each model's Dice on the whole CT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_builtin_real import load_case  # noqa: E402

from livseg.data.orientation import to_ras  # noqa: E402
from livseg.inference.segment import load_model, segment  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.count_nonzero(a & b)) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--case", default="lidc-0001")
    parser.add_argument("--before", default="builtin:liver-v1")
    parser.add_argument("--after", default="builtin:liver-v2")
    parser.add_argument("--out", type=Path, default=Path("build/figures/liver-v2-before-after.png"))
    args = parser.parse_args(argv)
    volume, liver, organs = load_case(args.shared, args.case)
    masks = [segment(volume, load_model(spec, num_threads=1)).mask > 0 for spec in (args.before, args.after)]
    # RAS array order for display: x to the patient's left... shown mirrored below (radiological)
    ct, _ = to_ras(volume.array, volume.affine)
    ref, _ = to_ras(liver, volume.affine)
    before, _ = to_ras(masks[0], volume.affine)
    after, _ = to_ras(masks[1], volume.affine)
    stomach = to_ras(organs["stomach"], volume.affine)[0] if "stomach" in organs else None
    disagree = (before ^ after).sum((0, 1))
    slices = sorted(np.argsort(disagree)[::-1][:1].tolist())
    order = np.argsort(disagree)[::-1]
    for k in order:  # four slices at least 3 apart
        if len(slices) == 4:
            break
        if all(abs(int(k) - s) >= 3 for s in slices):
            slices.append(int(k))
    slices.sort()
    box = np.argwhere(ref | before | after)
    lo, hi = np.maximum(box.min(0)[:2] - 30, 0), np.minimum(box.max(0)[:2] + 30, ct.shape[:2])
    fig, axes = plt.subplots(1, 4, figsize=(14, 4))
    for ax, k in zip(axes, slices):
        view = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), k)
        ax.imshow(ct[view].T[::-1, ::-1], cmap="gray", vmin=-160, vmax=240)  # anterior up, patient right on the left
        for mask, colour in ((ref, "lime"), (before, "red"), (after, "yellow"), (stomach, "orange")):
            if mask is not None and mask[view].any():
                ax.contour(mask[view].T[::-1, ::-1], levels=[0.5], colors=colour, linewidths=0.9)
        ax.set_title(f"slice {k}: v1 vs v2 differ by {int(disagree[k])} voxels", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{args.case}: reference green, liver-v1 red (Dice {dice(masks[0], liver):.4f}), liver-v2 yellow "
                 f"(Dice {dice(masks[1], liver):.4f}), reference stomach orange", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=70)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
