"""The shape reference of the quality estimate: how real livers look on the built-in model's grid.

    python benchmarks/quality_shape_reference.py [--masks ../shared/data/lits-liver-masks] [--write]

Reads the 112 LiTS training liver masks, puts each on the grid the built-in model's probabilities
lie on (RAS, 3 mm voxels, the liver's share of each voxel >= 0.5, exactly as a training label),
computes :func:`livseg.inference.quality.shape_descriptors` and prints, per descriptor, the median
and the median absolute deviation (MAD) over the masks. With ``--write`` these 2 x 5 numbers
(our own statistics; no mask and no voxel of LiTS is shipped) go into the ``shape_reference``
block of src/livseg/inference/quality-v1.json, which the ``shape_distance`` signal compares a
prediction with. About 10 minutes on a loaded 2-core CPU.
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


def descriptors_of(path: Path) -> dict[str, float]:
    """Shape descriptors of one liver mask file on the 3 mm RAS grid."""
    mask, affine = read_liver_mask(path)
    mask = mask.astype(np.uint8)
    oriented, oriented_affine = network_view(mask, affine, GRID)
    grid = plan_grid(oriented, np.linalg.norm(oriented_affine[:3, :3], axis=0), GRID)
    on_grid = preprocess_labels(mask, GRID, affine=affine, grid=grid) > 0
    return shape_descriptors(on_grid, GRID.spacing)  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--masks", type=Path, default=Path("../shared/data/lits-liver-masks"))
    parser.add_argument("--write", action="store_true", help=f"store the statistics in {QUALITY_FILE.name}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    files = find_liver_shapes(args.masks)
    rows = []
    for path in files:
        rows.append(descriptors_of(path))
        log.info("%s %s", path.name, {k: round(v, 3) for k, v in rows[-1].items()})
    reference = {}
    print(f"{'descriptor':20s} {'median':>8s} {'MAD':>8s} {'p5':>8s} {'p95':>8s}   ({len(rows)} LiTS livers)")
    for name in rows[0]:
        values = np.array([r[name] for r in rows])
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        reference[name] = {"median": round(median, 5), "mad": round(mad, 5)}
        print(f"{name:20s} {median:8.4f} {mad:8.4f} {np.percentile(values, 5):8.4f} {np.percentile(values, 95):8.4f}")
    if args.write:
        data = json.loads(QUALITY_FILE.read_text())
        data["shape_reference"] = reference
        data["shape_reference_note"] = (
            f"median and MAD of livseg.inference.quality.shape_descriptors over the {len(rows)} LiTS training liver "
            "masks on the 3 mm RAS grid, by benchmarks/quality_shape_reference.py --write")
        QUALITY_FILE.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {QUALITY_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
