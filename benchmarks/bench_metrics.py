"""Time livseg.evaluation.metrics on a LiTS-sized case (512 x 512 x 200 voxels).

The pair is a liver-sized ellipsoid (about 1.8 L) and a prediction shifted by a few voxels with
a bump, at a typical CT spacing of 0.78 x 0.78 x 2.5 mm. Run by hand:

    python benchmarks/bench_metrics.py            # livseg only
    python benchmarks/bench_metrics.py --medpy    # also medpy (uncropped EDT), for comparison

Prints one table row per function: best and median wall time over a few repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

from livseg.evaluation import metrics

SHAPE = (512, 512, 200)
SPACING = (0.78, 0.78, 2.5)


def make_pair() -> tuple[np.ndarray, np.ndarray]:
    """Reference ellipsoid and a shifted, bumped prediction, both bool (x, y, z)."""
    x, y, z = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ref = ((x - 250) / 100.0) ** 2 + ((y - 240) / 80.0) ** 2 + ((z - 100) / 35.0) ** 2 <= 1.0
    pred = ((x - 254) / 98.0) ** 2 + ((y - 237) / 82.0) ** 2 + ((z - 101) / 34.0) ** 2 <= 1.0
    pred |= ((x - 345) / 20.0) ** 2 + ((y - 240) / 20.0) ** 2 + ((z - 100) / 8.0) ** 2 <= 1.0
    return pred, ref


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Best and median seconds over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--medpy", action="store_true", help="also time medpy.metric.binary")
    args = parser.parse_args()

    pred, ref = make_pair()
    print(f"shape {SHAPE}, spacing {SPACING} mm, ref {metrics.volume_ml(ref, SPACING):.0f} mL, "
          f"pred {metrics.volume_ml(pred, SPACING):.0f} mL")
    rows: list[tuple[str, Callable[[], object]]] = [
        ("dice", lambda: metrics.dice(pred, ref)),
        ("surface_distances", lambda: metrics.surface_distances(pred, ref, SPACING)),
        ("hd95", lambda: metrics.hd95(pred, ref, SPACING)),
        ("case_metrics (all)", lambda: metrics.case_metrics(pred, ref, SPACING)),
    ]
    if args.medpy:
        from medpy.metric import binary

        rows += [
            ("medpy hd95", lambda: binary.hd95(pred, ref, voxelspacing=SPACING)),
            ("medpy assd", lambda: binary.assd(pred, ref, voxelspacing=SPACING)),
        ]

    print(f"{'function':<22} {'best s':>8} {'median s':>9}  result")
    for name, fn in rows:
        repeats = 1 if name.startswith("medpy") else args.repeats
        best, median, result = timed(fn, repeats)
        if isinstance(result, dict):
            shown = ", ".join(f"{k}={v:.3f}" for k, v in result.items())
        elif isinstance(result, tuple):
            shown = f"{result[0].size} + {result[1].size} surface voxels"
        else:
            shown = f"{result:.4f}"
        print(f"{name:<22} {best:>8.3f} {median:>9.3f}  {shown}")


if __name__ == "__main__":
    main()
