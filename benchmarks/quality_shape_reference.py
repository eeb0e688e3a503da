"""The shape reference of the quality estimate: how real livers look on the built-in model's grid.

    python benchmarks/quality_shape_reference.py [--masks ../shared/data/lits-liver-masks] [--write]

Reads the 112 LiTS training liver masks, puts each on the grid the built-in model's probabilities
lie on (RAS, 3 mm voxels, the liver's share of each voxel >= 0.5, exactly as a training label),
computes :func:`livseg.inference.quality.shape_descriptors` and the volume, and prints, per
descriptor, the median and the median absolute deviation (MAD) over the masks, and the volume's
median and 95th percentile. With ``--write`` these 12 numbers (our own statistics; no mask and no
voxel of LiTS is shipped) go into the ``shape_reference`` and ``volume_reference`` blocks of
src/livseg/inference/quality-v3.json, which the ``shape_distance`` and ``volume_excess`` signals
compare a prediction with. About 10 minutes on a loaded 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from livseg.config import PreprocessConfig
from livseg.data.preprocessing import network_view, plan_grid, preprocess_labels
from livseg.inference.quality import shape_descriptors
from livseg.inference.quality_model import QUALITY_FILE
from livseg.phantom.generator import find_liver_shapes, read_liver_mask

log = logging.getLogger("quality_shape_reference")

GRID = PreprocessConfig(reorient=True, spacing=(3.0, 3.0, 3.0), crop_body=False)  # the built-in model's grid


def descriptors_of(path: Path) -> tuple[dict[str, float], float]:
    """Shape descriptors and volume (mL) of one liver mask file on the 3 mm RAS grid."""
    mask, affine = read_liver_mask(path)
    mask = mask.astype(np.uint8)
    oriented, oriented_affine = network_view(mask, affine, GRID)
    grid = plan_grid(oriented, np.linalg.norm(oriented_affine[:3, :3], axis=0), GRID)
    on_grid = preprocess_labels(mask, GRID, affine=affine, grid=grid) > 0
    volume_ml = float(np.count_nonzero(on_grid)) * float(np.prod(GRID.spacing)) / 1000.0
    return shape_descriptors(on_grid, GRID.spacing), volume_ml  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--masks", type=Path, default=Path("../shared/data/lits-liver-masks"))
    parser.add_argument("--write", action="store_true", help=f"store the statistics in {QUALITY_FILE.name}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    files = find_liver_shapes(args.masks)
    rows, volumes = [], []
    for path in files:
        descriptors, volume = descriptors_of(path)
        rows.append(descriptors)
        volumes.append(volume)
        log.info("%s %s %.0f mL", path.name, {k: round(v, 3) for k, v in descriptors.items()}, volume)
    reference = {}
    print(f"{'descriptor':20s} {'median':>8s} {'MAD':>8s} {'p5':>8s} {'p95':>8s}   ({len(rows)} LiTS livers)")
    for name in rows[0]:
        values = np.array([r[name] for r in rows])
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        reference[name] = {"median": round(median, 5), "mad": round(mad, 5)}
        print(f"{name:20s} {median:8.4f} {mad:8.4f} {np.percentile(values, 5):8.4f} {np.percentile(values, 95):8.4f}")
    volume_reference = {"median_ml": round(float(np.median(volumes)), 1), "p95_ml": round(float(np.percentile(volumes, 95)), 1)}
    print(f"{'volume_ml':20s} {volume_reference['median_ml']:8.1f} {'':8s} {np.percentile(volumes, 5):8.1f} "
          f"{volume_reference['p95_ml']:8.1f}")
    if args.write:
        data = json.loads(QUALITY_FILE.read_text())
        data["shape_reference"] = reference
        data["volume_reference"] = volume_reference
        data["shape_reference_note"] = (
            f"median and MAD of livseg.inference.quality.shape_descriptors over the {len(rows)} LiTS training liver "
            "masks on the 3 mm RAS grid, by benchmarks/quality_shape_reference.py --write")
        QUALITY_FILE.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {QUALITY_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
