"""Speed, FLOPs and memory of the paper network, side by side with MONAI's BasicUNet.

Run by hand (not in CI):  python benchmarks/bench_model.py [--shape 160 160 80] [--repeats 3]

For each network, at batch 1: forward time in eval mode (default memory format, channels-last
3D, and for livseg also with batch norm folded into the convolutions as `predict` runs it) and
one full training step (forward, AdvancedComboLoss, backward, Adam step), the median of several
runs after a warm-up; FLOPs counted with torch.utils.flop_counter; achieved GFLOP/s and the
fraction of the float32 matrix-multiply peak measured in the same run; peak memory (RSS of a
fresh process on CPU, max allocated on CUDA). Each measurement runs in its own subprocess so
peak RSS belongs to that measurement alone. Writes benchmarks/results/bench_model.csv.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def matmul_peak_gflops(device: str, n: int = 4096, repeats: int = 10) -> float:
    """Best-of-``repeats`` float32 matrix-multiply throughput (GFLOP/s): the hardware ceiling
    that convolutions lowered to GEMM can approach."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = 0.0
    for _ in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build(name: str) -> torch.nn.Module:
    """The network under test: ``livseg`` (paper UNet3D) or ``monai`` (BasicUNet, same widths)."""
    if name == "livseg":
        from livseg.nn.model import UNet3D

        return UNet3D()
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=3, in_channels=1, out_channels=1, features=(32, 32, 64, 128, 256, 32))


def count_flops(fn: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement in a fresh process: returns timing, FLOPs and peak memory."""
    torch.manual_seed(0)
    device, shape, mode = job["device"], tuple(job["shape"]), job["mode"]
    model = build(job["net"]).to(device)
    x = torch.rand(1, 1, *shape, device=device)
    target = (torch.rand(1, 1, *shape, device=device) > 0.5).float()
    if job["channels_last"]:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    from livseg.device import autocast as livseg_autocast

    autocast = livseg_autocast(torch.device(device))  # training's rule: bf16 from Ampere on, fp16 before
    if mode == "train":
        from livseg.nn.losses import AdvancedComboLoss

        loss_fn = AdvancedComboLoss()
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(model(x), target)
            loss.backward()
            opt.step()
    else:
        model.eval()
        if job.get("fold"):
            from livseg.inference.segment import fold_batchnorm

            model = fold_batchnorm(model)

        def step() -> None:
            with torch.inference_mode(), autocast:
                model(x)

    flops = count_flops(step)
    for _ in range(job["warmup"]):
        step()
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(job["repeats"]):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**job, "seconds": statistics.median(times), "gflop": flops / 1e9, "peak_mb": peak_mb}


def run_isolated(job: dict[str, Any]) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (job,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 160, 80))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--skip-monai", action="store_true")
    args = parser.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device

    peak = matmul_peak_gflops(device)
    nets = ["livseg"] + ([] if args.skip_monai else ["monai"])
    jobs = []
    for net in nets:
        for channels_last in (False, True):
            jobs.append(dict(net=net, mode="forward", channels_last=channels_last, fold=False))
        if net == "livseg":
            jobs.append(dict(net=net, mode="forward", channels_last=True, fold=True))
        jobs.append(dict(net=net, mode="train", channels_last=True, fold=False))
    rows = []
    base = dict(device=device, shape=list(args.shape), repeats=args.repeats, warmup=args.warmup)
    for job in jobs:
        row = run_isolated({**base, **job})
        row["gflops"] = row["gflop"] / row["seconds"]
        row["peak_fraction"] = row["gflops"] / peak
        rows.append(row)
        print(f"  done {row['net']} {row['mode']} cl={row['channels_last']} fold={row['fold']}", file=sys.stderr)

    print(f"\nmachine: {os.cpu_count()} CPU threads, torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))
    print(f"float32 matmul peak (4096^3, measured now): {peak:.0f} GFLOP/s; input 1x1x{'x'.join(map(str, args.shape))}\n")
    header = f"{'network':8} {'what':8} {'layout':13} {'folded':6} {'seconds':>8} {'GFLOP':>8} {'GFLOP/s':>8} {'of peak':>8} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        layout = "channels-last" if r["channels_last"] else "default"
        print(f"{r['net']:8} {r['mode']:8} {layout:13} {str(r['fold']):6} {r['seconds']:8.2f} {r['gflop']:8.0f} "
              f"{r['gflops']:8.0f} {r['peak_fraction']:8.0%} {r['peak_mb']:8.0f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_model.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "shape"] + ["shape", "matmul_peak_gflops"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "shape": "x".join(map(str, r["shape"])), "matmul_peak_gflops": round(peak, 1)})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
