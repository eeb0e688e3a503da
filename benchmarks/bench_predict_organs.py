"""What does `predict --organs` with liver-v2 cost against the default liver-v1? Whole commands.

Run by hand (about 1-2 minutes):

    python benchmarks/bench_predict_organs.py CT.nii.gz [--repeats 3] [--threads 0]

Runs, alternately and ``--repeats`` times each, the whole command as a user types it (a new
process: Python, imports, model load, reading the CT, writing the outputs):

- ``liver-v1``: ``livseg predict CT -o OUT`` (the default model, liver mask and stats);
- ``liver-v2``: the same with ``--checkpoint builtin:liver-v2`` (the liver only: the model's cost);
- ``liver-v2 --organs``: ``livseg predict CT -o OUT --checkpoint builtin:liver-v2 --organs``
  (also the organ label map, its JSON legend and volumes).

Prints the median wall seconds of each and their ratio. Alternating the commands and comparing
them as a ratio measured in one run is what makes a shared, noisy CPU usable for this; the
seconds themselves depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "liver-v1": [],
    "liver-v2": ["--checkpoint", "builtin:liver-v2"],
    "liver-v2 --organs": ["--checkpoint", "builtin:liver-v2", "--organs"],
}


def run_once(ct: Path, extra: list[str], out: Path, threads: int) -> float:
    """Wall seconds of one ``livseg predict`` process (fails loudly if the command fails)."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)) if threads else None
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "livseg", "predict", str(ct), "-o", str(out), "--no-progress", *extra],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ct", type=Path, help="a CT (e.g. a 512 x 512 x 150 phantom written as NIfTI)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="OMP threads of each command (0: its default)")
    args = parser.parse_args(argv)
    seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, extra in COMMANDS.items():
                seconds[name].append(run_once(args.ct, extra, Path(tmp) / "out", args.threads))
        outputs = sorted(p.name for p in (Path(tmp) / "out").iterdir())
    base = statistics.median(seconds["liver-v1"])
    print(f"{'command':20s} {'median s':>9s} {'ratio':>6s}  runs")
    for name, values in seconds.items():
        runs = " ".join(f"{v:.1f}" for v in values)
        print(f"{name:20s} {statistics.median(values):9.1f} {statistics.median(values) / base:6.2f}  {runs}")
    print(f"outputs of the last command: {', '.join(outputs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
