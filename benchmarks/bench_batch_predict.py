"""Cases per minute of `livseg predict` over a folder of real-size CTs: before and after the
overlapped batch (loader and writer threads: --overlap, or one case at a time: --no-overlap, the
default with several CPU threads), one command per CT, and torchrun ranks (one thread each,
overlapped).

Run by hand (not in CI):
    python benchmarks/bench_batch_predict.py [--rounds 2] [--cases 8] [--before 4e40f4c] [--torchrun 2]

The CTs are synthetic phantoms at a real size (512 x 512 x 100, int16 .nii.gz, about 28 MB each;
`livseg phantom`, made once into --data). The network is the paper's (160 x 160 x 80, 5.6 M
parameters) with its initial weights unless --checkpoint is given: speed does not depend on what
the weights learned (an untrained network's mask is the whole volume, which post-processes fast).

"before" is the source tree of the --before commit (the last one whose `predict` ran each case's
load, network and write one after another), extracted with `git archive` and run with
PYTHONPATH pointing at it; "after" is this checkout. Every configuration is a fresh
`python -m livseg predict` process timed by wall clock, model loading and start-up included,
and the configurations are interleaved round by round (the order rotates) so that the load of a
shared machine falls on all of them alike. Reported: the median wall time over rounds, cases per
minute, and the speed-up over both "before" ways of predicting 8 CTs. Writes
benchmarks/results/bench_batch_predict.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BEFORE = "4e40f4c"  # main before the overlapped batch: load -> network -> write, case after case


def make_phantoms(folder: Path, n: int, shape: tuple[int, int, int]) -> list[Path]:
    """n real-size phantom CTs in ``folder/images`` (made once; labels kept out of the way)."""
    images = folder / "images"
    wanted = [images / f"volume-{k}.nii.gz" for k in range(n)]
    if all(p.exists() for p in wanted):
        return wanted
    from livseg.phantom.generator import write_phantoms

    write_phantoms(folder / "made", n, seed=0, shape=shape, overwrite=True)
    images.mkdir(parents=True, exist_ok=True)
    for path in wanted:
        shutil.move(str(folder / "made" / path.name), path)
    return wanted


def before_tree(ref: str, work: Path) -> Path:
    """The ``src`` folder of commit ``ref``, extracted under ``work``."""
    archive = work / "before.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), ref, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(work / "before", filter="data")
    return work / "before" / "src"


# the paper network with seed-0 initial weights, saved by the livseg tree on PYTHONPATH (checkpoint
# formats differ between versions, so each tree writes its own: the same weights)
PAPER_INIT = (
    "import sys, torch; from livseg.config import RunConfig; from livseg.nn.model import UNet3D; "
    "from livseg.nn.checkpoint import save_checkpoint; torch.manual_seed(0); config = RunConfig(); "
    "save_checkpoint(sys.argv[1], config=config, model_state=UNet3D(config.model).state_dict())"
)


def paper_checkpoint(src: Path, path: Path) -> Path:
    """The paper network's initial weights as a checkpoint that the tree ``src`` reads."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-c", PAPER_INIT, str(path)], check=True, env=env)
    return path


def run(command: list[str], src: Path, out: Path) -> float:
    """Wall seconds of one command with ``src`` first on the path; its output folder is emptied first."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="livseg checkpoint (default: paper network, initial weights)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "livseg-bench-batch",
                        help="folder for the phantoms (made once, reused)")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 100))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", default=BEFORE, help=f"git ref of the 'before' code (default {BEFORE})")
    parser.add_argument("--torchrun", type=int, default=2, help="also run under torchrun with this many ranks (0: skip)")
    parser.add_argument("--no-one-by-one", action="store_true", help="skip one command per CT (the slowest way)")
    args = parser.parse_args(argv)

    images = make_phantoms(args.data, args.cases, tuple(args.shape))
    work = Path(tempfile.mkdtemp(prefix="livseg-bench-batch-"))
    old_src, new_src = before_tree(args.before, work), REPO / "src"
    old_ckpt = args.checkpoint or paper_checkpoint(old_src, work / "paper_init_before.pt")
    new_ckpt = args.checkpoint or paper_checkpoint(new_src, work / "paper_init_after.pt")
    py = [sys.executable, "-m", "livseg", "predict"]
    flags = ["--no-progress", "--device", "cpu"]
    folder = str(images[0].parent)
    out = str(work / "out")

    def one_by_one(src: Path, checkpoint: Path) -> float:
        return sum(run([*py, str(p), "-o", out, "--checkpoint", str(checkpoint), *flags], src, work / "out")
                   for p in images)

    configs = {}
    if not args.no_one_by_one:
        configs["before: one command per CT"] = lambda: one_by_one(old_src, old_ckpt)
    configs["before: one command, folder"] = lambda: run(
        [*py, folder, "-o", out, "--checkpoint", str(old_ckpt), *flags], old_src, work / "out")
    configs["after: folder, --overlap"] = lambda: run(
        [*py, folder, "-o", out, "--checkpoint", str(new_ckpt), "--overlap", *flags], new_src, work / "out")
    configs["after: folder, --no-overlap"] = lambda: run(
        [*py, folder, "-o", out, "--checkpoint", str(new_ckpt), "--no-overlap", *flags], new_src, work / "out")
    if args.torchrun > 1:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.torchrun}",
                    "-m", "livseg", "predict"]
        configs[f"after: torchrun, {args.torchrun} ranks"] = lambda: run(
            [*torchrun, folder, "-o", out, "--checkpoint", str(new_ckpt), *flags], new_src, work / "out")

    names = list(configs)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order every round
            seconds[name].append(configs[name]())
            print(f"round {r + 1}: {name}: {seconds[name][-1]:.1f} s", flush=True)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    baselines = [n for n in ("before: one command per CT", "before: one command, folder") if n in median]
    print(f"\n{args.cases} phantoms {'x'.join(map(str, args.shape))}, paper network, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {args.rounds} interleaved rounds (median)\n")
    titles = {"before: one command per CT": "vs one per CT", "before: one command, folder": "vs folder before"}
    header = f"{'configuration':34} {'seconds':>8} {'cases/min':>10}" + "".join(f" {titles[b]:>16}" for b in baselines)
    print(header)
    print("-" * len(header))
    rows = []
    for name in names:
        speedups = [median[b] / median[name] for b in baselines]
        print(f"{name:34} {median[name]:8.1f} {args.cases * 60 / median[name]:10.2f}" + "".join(f" {s:16.2f}" for s in speedups))
        rows.append([name, round(median[name], 2), round(args.cases * 60 / median[name], 3),
                     *(round(s, 3) for s in speedups), " ".join(f"{v:.1f}" for v in seconds[name])])
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "bench_batch_predict.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["configuration", "median_s", "cases_per_min", *(f"speedup_vs_{b}" for b in baselines), "all_s"])
        writer.writerows(rows)
    print(f"\nwrote {RESULTS / 'bench_batch_predict.csv'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
