"""`livseg predict` end to end on the real IRCADb CT, stage by stage, against the forward floor.

Run by hand (not in CI):  python benchmarks/bench_inference.py [--checkpoint CKPT] [--repeats 3]

Without --checkpoint the paper network (160x160x80, 5.6 M parameters) is saved with its
initial weights: speed does not depend on what the weights learned, except post-processing,
which is cheap for one liver-shaped blob and slower for the noisy mask of an untrained network.
So post-processing is also timed on the IRCADb expert liver mask, the input a trained network
gives it.

Reported: per-stage seconds from `<case>_stats.json` (load, preprocess, network, back-mapping,
post-process, write), the whole `livseg predict` command (a fresh process: Python start-up and
imports included), the forward pass alone (median of --repeats, folded batch norm, channels-last,
as predict runs it), and the floor = FLOPs / float32 matmul peak measured in the same run.
Writes benchmarks/results/bench_inference.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import count_flops, matmul_peak_gflops  # noqa: E402

from livseg.config import RunConfig  # noqa: E402
from livseg.data.io.volume import load_labels, load_volume  # noqa: E402
from livseg.inference.postprocess import clean_mask  # noqa: E402
from livseg.inference.segment import _forward, load_model  # noqa: E402
from livseg.nn.checkpoint import save_checkpoint  # noqa: E402
from livseg.nn.model import UNet3D  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "ircadb-01-patient1"


def paper_checkpoint(folder: Path) -> Path:
    """A paper-size checkpoint with initial weights (speed does not depend on training)."""
    torch.manual_seed(0)
    config = RunConfig()
    return save_checkpoint(folder / "paper_init.pt", config=config, model_state=UNet3D(config.model).state_dict())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="livseg checkpoint (default: paper network, initial weights)")
    parser.add_argument("--data", type=Path, default=DATA, help="IRCADb patient folder")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    ct_path = args.data / "PATIENT_DICOM"
    work = Path(tempfile.mkdtemp(prefix="livseg-bench-"))
    checkpoint = args.checkpoint or paper_checkpoint(work)

    peak = matmul_peak_gflops("cpu")
    model, config = load_model(checkpoint, "cpu")
    shape = config.preprocess.target_shape
    image = torch.rand(*shape).numpy()
    flops = count_flops(lambda: _forward(model, image, torch.device("cpu")))
    _forward(model, image, torch.device("cpu"))  # warm-up
    forward_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        _forward(model, image, torch.device("cpu"))
        forward_times.append(time.perf_counter() - start)
    forward = statistics.median(forward_times)
    floor = flops / (peak * 1e9)

    runs = []
    for i in range(args.repeats):
        out = work / f"run{i}"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "livseg", "predict", str(ct_path), "--checkpoint", str(checkpoint),
             "-o", str(out), "--no-progress", "--device", "cpu"],
            check=True,
        )
        wall = time.perf_counter() - start
        stats = json.loads(next(out.glob("*_stats.json")).read_text())
        runs.append({"command_s": wall, "in_process_s": stats["seconds"], **stats["timings_s"]})
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}

    volume = load_volume(ct_path)
    reference = load_labels(args.data / "MASKS_DICOM" / "liver", like=volume, select=255)
    start = time.perf_counter()
    clean_mask(reference)
    post_reference = time.perf_counter() - start

    print(f"\nIRCADb patient 1, {volume.shape[0]}x{volume.shape[1]}x{volume.shape[2]} CT, network grid "
          f"{'x'.join(map(str, shape))}, checkpoint {checkpoint.name}")
    print(f"float32 matmul peak {peak:.0f} GFLOP/s; forward {flops / 1e9:.0f} GFLOP -> floor {floor:.2f} s\n")
    print(f"{'stage':34} {'seconds':>8} {'x forward':>10}")
    print("-" * 54)
    rows = [(f"stage: {key}", median[key]) for key in ("load", "preprocess", "network", "back_mapping", "postprocess", "write")]
    rows += [
        ("post-process of the expert mask", post_reference),
        ("predict in process (sum of stages)", median["in_process_s"]),
        ("`livseg predict` command (fresh)", median["command_s"]),
        ("forward alone (median)", forward),
        ("forward floor (FLOPs / peak)", floor),
    ]
    for name, seconds in rows:
        print(f"{name:34} {seconds:8.2f} {seconds / forward:10.2f}")
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "bench_inference.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["what", "seconds", "ratio_to_forward", "matmul_peak_gflops", "gflop"])
        for name, seconds in rows:
            writer.writerow([name, round(seconds, 4), round(seconds / forward, 3), round(peak, 1), round(flops / 1e9, 1)])
    print(f"\nwrote {RESULTS / 'bench_inference.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
