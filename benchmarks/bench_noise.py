"""How much image noise the built-in model (or any checkpoint) takes: Dice on each real CT of
../shared/data with correlated Gaussian noise of increasing strength added to the CT.

    python benchmarks/bench_noise.py                       # liver-v1, levels 0 10 20 30 45 HU
    python benchmarks/bench_noise.py --checkpoint builtin:liver-v2 --levels 0 20 40

The noise is added on the CT's own grid with a grain of 0.7 voxels (about a reconstruction
kernel's). What the network sees is less where its grid is coarser than the CT's (the fixed 3 mm
grid averages voxels), so each cell gives the noise left on the network's grid as well: the
added noise reoriented, cropped and resampled as the CT is (the resampling is linear). Dice on
each CT's own grid; "trained on" marks the CTs liver-v1's stage 2 saw. Typical CT noise in the
liver: 8-15 HU at routine dose, 20-30 HU at low dose (thin slices; thick slices have less).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_cases import REAL, noise_like  # noqa: E402

from livseg.data.io.volume import Volume  # noqa: E402
from livseg.data.preprocessing import GridMap, network_input, network_view  # noqa: E402
from livseg.data.resample import resample_faces, resample_linear  # noqa: E402
from livseg.evaluation.metrics import dice  # noqa: E402
from livseg.inference.segment import load_model, segment  # noqa: E402

GRAIN_VOXELS = 0.7


def network_noise_hu(noise: np.ndarray, volume: Volume, grid: GridMap,
                     config) -> float:  # noqa: ANN001 (a PreprocessConfig)
    """Standard deviation (HU) of ``noise`` (on ``volume``'s grid) once on ``volume``'s network
    grid ``grid``: reoriented, cropped and resampled as the CT is (the resampling is linear)."""
    oriented, _ = network_view(noise, volume.affine, config)
    cropped = oriented[grid.slices]
    seen = resample_linear(cropped, grid.shape) if grid.corners else resample_faces(cropped, grid.shape)
    return float(np.std(seen))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--checkpoint", default=None, help="default: the built-in model")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 10.0, 20.0, 30.0, 45.0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.checkpoint, "cpu", num_threads=args.threads)
    config = loaded[1].preprocess
    print("| case | trained on | " + " | ".join(f"+{level:g} HU" for level in args.levels) + " |")
    print("| --- | --- |" + " ---: |" * len(args.levels))
    for k, (name, (loader, group)) in enumerate(REAL.items()):
        volume, reference = loader(args.shared)
        clean = Volume(volume.array.astype(np.float32), volume.affine)
        _, grid = network_input(clean, config)  # the clean CT's grid: the noise is measured on it at every level
        cells = []
        for level in args.levels:
            if not level:
                cells.append(f"{dice(segment(clean, loaded).mask > 0, reference > 0):.3f} (0)")
                continue
            noise = noise_like(clean.shape, level, GRAIN_VOXELS, np.random.default_rng([5000 + k, int(level * 10)]))
            score = dice(segment(Volume(clean.array + noise, clean.affine), loaded).mask > 0, reference > 0)
            cells.append(f"{score:.3f} ({network_noise_hu(noise, clean, grid, config):.0f})")
        print(f"| {name} | {'yes' if group == 'real trained on' else 'no'} | " + " | ".join(cells) + " |", flush=True)
    print("\nCells: Dice (noise left on the network's grid, HU).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
