"""Series per minute of the PACS watch loop against a real Orthanc, retrieval, inference and store
timed apart.

Starts a private Orthanc with its DICOMweb plugin (tests/orthanc_server.py: the README's
configuration on free ports, a temporary storage folder), uploads N copies of 3D-IRCADb-01
patient 1 (129 slices of 512 x 512, each under new Study/Series/SOP UIDs, so N studies), then
runs one ``watch --once`` cycle with the built-in model and prints each series' stages from the
state file:

    retrieve   WADO-RS of the series into a temporary folder (129 files, 66 MB)
    segment    reading the DICOM series and the segmentation (preprocess, network, back-mapping)
    write      the DICOM SEG (highdicom), and the mask when --keep
    store      STOW-RS of the SEG and the receipt check

Usage: python benchmarks/bench_pacs.py [--series 5] [--threads 1] [--shared ../shared/data]
Needs Orthanc + orthanc-dicomweb (Debian packages) and the pacs extra.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/orthanc_server.py

from orthanc_server import PASSWORD, USER, Orthanc, copy_series, find_binary, find_plugin  # noqa: E402

STAGES = ("retrieve", "segment", "write", "store")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=5, help="series to upload and process (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0 = all cores)")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--keep", action="store_true", help="also keep the local outputs (-o), as watch -o does")
    args = parser.parse_args()

    from livseg.pacs import Credentials, PacsClient, Segmenter, WatchOptions, WatchState, watch

    binary, plugin = find_binary(), find_plugin()
    if binary is None or plugin is None:
        raise SystemExit("needs Orthanc and its DICOMweb plugin: apt-get install orthanc orthanc-dicomweb")
    source = args.shared / "real/ircadb-01-patient1/PATIENT_DICOM"
    if not source.is_dir():
        raise SystemExit(f"{source} not found (--shared)")
    import pydicom

    files = sorted(source.iterdir(), key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))

    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp:
        root = Path(tmp)
        server = Orthanc(root / "orthanc", binary, plugin)
        server.start()
        try:
            start = time.perf_counter()
            for k in range(args.series):
                _, _, copies = copy_series(files, root / f"series{k}", description=f"bench {k}", number=k + 1)
                server.upload(copies)
            upload_s = time.perf_counter() - start
            client = PacsClient(server.dicomweb, credentials=Credentials(USER, PASSWORD))
            start = time.perf_counter()
            segmenter = Segmenter(device="cpu", num_threads=args.threads)
            load_s = time.perf_counter() - start
            options = WatchOptions(settle_s=0, study_date=None, out_dir=root / "out" if args.keep else None,
                                   work_dir=root)
            with WatchState(root / "state.sqlite") as state:
                start = time.perf_counter()
                summary = watch(client, segmenter, state, options, once=True)
                wall = time.perf_counter() - start
                records = [r for r in state.records() if r.status == "done"]
        finally:
            server.stop()

    if len(records) != args.series or summary.failed:
        raise SystemExit(f"only {len(records)} of {args.series} series done; failed: {summary.failed}")
    print(f"watch loop over {args.series} series of {len(files)} slices (512 x 512) in Orthanc "
          f"(DICOMweb, localhost), built-in model, {args.threads or os.cpu_count()} torch thread(s); "
          f"upload {upload_s:.1f} s and model load {load_s:.1f} s not counted")
    print(f"{'series':>6} {'retrieve s':>11} {'segment s':>10} {'write s':>8} {'store s':>8} {'total s':>8}")
    totals = dict.fromkeys(STAGES, 0.0)
    for k, record in enumerate(records):
        row = [record.timings[stage] for stage in STAGES]
        for stage, seconds in zip(STAGES, row):
            totals[stage] += seconds
        print(f"{k + 1:>6} " + " ".join(f"{v:>{w}.2f}" for v, w in zip(row, (11, 10, 8, 8))) + f" {sum(row):>8.2f}")
    n = len(records)
    print(f"{'mean':>6} " + " ".join(f"{totals[s] / n:>{w}.2f}" for s, w in zip(STAGES, (11, 10, 8, 8)))
          + f" {sum(totals.values()) / n:>8.2f}")
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    with open(results / "bench_pacs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["series", *STAGES, "total", "threads"])
        for k, record in enumerate(records):
            row = [record.timings[stage] for stage in STAGES]
            writer.writerow([k + 1, *(f"{v:.3f}" for v in row), f"{sum(row):.3f}", args.threads])
    share = ", ".join(f"{stage} {100 * totals[stage] / sum(totals.values()):.0f} %" for stage in STAGES)
    print(f"loop wall time {wall:.1f} s (poll, header checks and bookkeeping {wall - sum(totals.values()):.1f} s): "
          f"{60 * n / wall:.2f} series per minute; time per series: {share}")
    print(f"table: {results / 'bench_pacs.csv'}")


if __name__ == "__main__":
    main()
