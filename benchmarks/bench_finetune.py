"""What does `livseg train --init` buy on a few real CTs? Fine-tuning measured where it can be.

Run by hand (each experiment is one `livseg train` of about 5-15 minutes on a 2-core CPU):

    python benchmarks/bench_finetune.py --work W [--build B] [--only site-0 ...] [-- --set K=V ...]

Experiments (every training run is the command a user types, timed with /usr/bin/time -v):

- ``site-0``, ``site-1``: the two partial MSD CTs of ../shared/data/real/msd-liver-partial as a
  "site": fine-tune the built-in model on one (with the ``finetune`` preset's phantoms), score the
  other, before (the built-in model) and after, with `livseg evaluate --compare` semantics. MSD is
  CC BY-SA: these weights are measured and thrown away, never shipped.
- ``loo-totalseg``, ``loo-lidc-0001`` (with ``--build B``, the ``--work`` folder of a
  scripts/build_builtin_model.py run): leave-one-out over the real CTs the built-in model trains
  on (B/real/cases.csv): fine-tune the phantom-only stage-1 weights (B/liver-v1.stage1.pt;
  liver-v1 itself saw all three CTs) on the others, score the held-out one.
- every fine-tuned model is also scored on 3D-IRCADb-01 patient 1 (never trained on), and a
  site-* model (with ``--build B``) on the built-in model's own real CTs (B/real/cases.csv, mean
  and LIDC-0001), to see whether adapting to a site costs accuracy elsewhere.

Arguments after ``--`` go to every `livseg train` (e.g. ``-- --set train.lr=3e-4 --phantoms 0``).
Prints one table; writes W/EXPERIMENT/result.json. Third-party data is read from ../shared/data and
derived files (labels on a CT grid, the IRCADb reference) stay in W.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from livseg.data.io.volume import save_mask
from livseg.evaluation.compare import compare

DATA = Path(os.environ.get("LIVSEG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
MSD = "real/msd-liver-partial/liver_{}-part-{}.nii.gz"
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_builtin_model.py"
FOLDS = {"loo-totalseg": ("totalseg-ct-sm", "totalseg-dicom"), "loo-lidc-0001": ("lidc-0001",)}


def write_csv(path: Path, rows: list[tuple[str, Path, Path]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "case_id"])
        writer.writerows([(str(image), str(label), case) for case, image, label in rows])
    return path


def build_cases(build: Path) -> list[tuple[str, Path, Path]]:
    """The built-in model's real training CTs as the build wrote them (liver = 5; ids ``k-name``)."""
    with (build / "real" / "cases.csv").open(newline="") as handle:
        return [(row["case_id"].split("-", 1)[1], Path(row["image"]), Path(row["label"]))
                for row in csv.DictReader(handle)]


def ircadb(work: Path) -> Path:
    """3D-IRCADb-01 patient 1 as a one-case CSV, its reference as the build script makes it (liver =
    liver mask or any tumour mask, LiTS terms)."""
    target = work / "labels" / "ircadb-01-patient1-liver.nii.gz"
    if not target.is_file():
        spec = importlib.util.spec_from_file_location("build_builtin_model", BUILD_SCRIPT)
        build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build)  # type: ignore[union-attr]
        volume, liver = build.load_ircadb(DATA)
        target.parent.mkdir(parents=True, exist_ok=True)
        save_mask(liver, like=volume, path=target)
    return write_csv(work / "ircadb.csv", [("ircadb-01-patient1", DATA / "real/ircadb-01-patient1/PATIENT_DICOM",
                                            target)])


def timed_train(args: list[str], log: Path) -> dict[str, float]:
    """`livseg train ARGS` under /usr/bin/time -v: wall seconds, CPU seconds (user + system: with one
    thread about the wall time of an idle machine) and peak memory (GB)."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "livseg", "train", *args]
    with log.open("w") as handle:
        code = subprocess.run(command, check=False, stdout=handle, stderr=subprocess.STDOUT).returncode
    text = log.read_text()
    if code != 0:
        raise SystemExit(f"livseg train failed ({code}); see {log}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    seconds = sum(float(part) * 60**k for k, part in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): (\S+)", text).group(1)) for kind in ("User", "System"))
    return {"wall_s": round(seconds, 1), "cpu_s": round(cpu, 1), "peak_gb": round(rss / 1024**2, 2)}


def experiment(name: str, work: Path, build: Path | None, extra: list[str], threads: int) -> dict:
    """One fine-tuning run and its scores; the result row."""
    folder = work / name
    if name.startswith("site-"):
        train_k, test_k = (0, 1) if name == "site-0" else (1, 0)
        data = write_csv(folder / "train.csv", [(f"msd-{train_k}", DATA / MSD.format(train_k, "ct"),
                                                 DATA / MSD.format(train_k, "labels"))])
        test = write_csv(folder / "test.csv", [(f"msd-{test_k}", DATA / MSD.format(test_k, "ct"),
                                                DATA / MSD.format(test_k, "labels"))])
        init, labels = "builtin", None
    else:
        if build is None:
            raise SystemExit(f"{name}: pass --build (its phantom-only stage-1 weights; liver-v1 saw every real CT)")
        held, real = FOLDS[name], build_cases(build)
        data = write_csv(folder / "train.csv", [case for case in real if case[0] not in held])
        test = write_csv(folder / "test.csv", [case for case in real if case[0] in held])
        init, labels = str(build / "liver-v1.stage1.pt"), (5,)
    run = folder / "run"
    flags = ["--val-fraction", "0", "--threads", str(threads), "--no-progress", "--overwrite"]
    if labels:
        flags += ["--liver-labels", ",".join(map(str, labels))]
    row = {"experiment": name, "init": init, "extra": " ".join(extra),
           **timed_train([str(data), "-o", str(run), "--init", init, *flags, *extra], folder / "train.log")}
    options = {"split": "all", "overwrite": True, "progress": False, "figures": False}
    held_out = compare(init, run / "best.pt", test, out_dir=folder / "compare", liver_labels=labels, **options)
    row["cases"] = held_out["cases"]
    check = compare(init, run / "best.pt", ircadb(work), out_dir=folder / "ircadb", liver_labels=(1,), **options)
    row["ircadb"] = check["cases"][0]
    if name.startswith("site-") and build is not None:  # forgetting: the CTs the built-in model trained on
        own = compare(init, run / "best.pt", build / "real" / "cases.csv", out_dir=folder / "builtin-cases",
                      liver_labels=(5,), **options)
        row["builtin_cases"] = {"mean": own["mean"], "cases": own["cases"]}
    return row


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (runs, derived labels)")
    parser.add_argument("--build", type=Path, default=None,
                        help="--work of a build_builtin_model.py run: its stage-1 weights and real CTs (for loo-*)")
    parser.add_argument("--only", nargs="+", default=None, choices=["site-0", "site-1", *FOLDS])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1 on a shared CPU)")
    args = parser.parse_args(argv)
    names = args.only or ["site-0", "site-1", *(FOLDS if args.build else ())]
    rows = []
    for name in names:
        rows.append(experiment(name, args.work, args.build, extra, args.threads))
        (args.work / name / "result.json").write_text(json.dumps(rows[-1], indent=1, default=str) + "\n")
    print(f"{'experiment':<15} {'held-out case':<16} {'Dice before':>11} {'after':>7} {'ASSD before':>11} "
          f"{'after':>7} {'IRCADb before':>13} {'after':>7} {'own CTs before':>14} {'after':>7} {'wall':>7} "
          f"{'CPU':>7} {'peak GB':>7}")
    for row in rows:
        own = row.get("builtin_cases", {}).get("mean", {})
        for case in row["cases"]:
            print(f"{row['experiment']:<15} {case['case']:<16} {case['dice_before']:11.4f} {case['dice_after']:7.4f} "
                  f"{case['assd_before']:11.2f} {case['assd_after']:7.2f} {row['ircadb']['dice_before']:13.4f} "
                  f"{row['ircadb']['dice_after']:7.4f} {own.get('dice_before', float('nan')):14.4f} "
                  f"{own.get('dice_after', float('nan')):7.4f} {row['wall_s'] / 60:6.1f}m {row['cpu_s'] / 60:6.1f}m "
                  f"{row['peak_gb']:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
