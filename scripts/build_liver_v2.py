"""Rebuild livseg's multi-organ built-in model liver-v2 from ../shared/data: one seeded command.

    python scripts/build_liver_v2.py --out src/livseg/weights/liver-v2.pt

The recipe is liver-v1's (``builtin`` / ``builtin-stage2`` presets: 3 mm RAS grid, patches,
torch augmentation, warm-up and cosine) with a softmax head over the classes of
:mod:`livseg.data.organ_classes` and the partial-label Dice + CE loss, trained by
``livseg.training.train.train`` (the path ``livseg train`` runs). This script orchestrates:

1. data (``scripts/liver_v2_data.py``, cached in ``--work``): procedural phantoms (every other one
   with a LiTS liver shape) and phantoms rendered on the TotalSegmentator subjects' label maps,
   every class labelled; the real CTs whose licences allow derived weights with their
   TotalSegmentator labels mapped to the classes (liver_v2_data.REAL). Written as livseg caches
   (:func:`livseg.data.cache.store_organ_case`): ``phantoms-stage1`` (procedural + s0001, s0004,
   s0006), ``phantoms-stage2[-without-s0009]`` (those + s0009's), ``real[-without-FOLD]``;
2. stage 1: ``train(phantoms-stage1, init="builtin:liver-v1")``: liver-v1's body under a widened
   head (:func:`livseg.training.init.widen_head`), phantoms only (--steps1);
3. stage 2: ``train(real, init=stage 1, phantoms=phantoms-stage2)``: the real CTs drawn
   --real-weight times as often as each phantom (--steps2);
4. ``--out``: float16 weights, no optimiser state; ``<work>/<out name>.json``: every loss and
   score (benchmarks/bench_builtin_real.py's cases: IRCADb patient 1, the two partial MSD CTs,
   lits-small-64's complete slices, any held-out fold; liver and neighbour Dice).

Leave-one-out: ``--hold-out totalseg|lidc-0001|s0009`` retrains stage 2 without that source (for
s0009 also without the phantoms rendered on its label map) from the shared stage 1
(``--stage1 FILE``) and scores it. Seeded: every phantom from --seed, stage 1 from --seed,
stage 2 from --seed + 1; a killed build resumes (caches and last.pt).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_builtin_real import NEVER_TRAINED, load_case, score_case  # noqa: E402
from build_builtin_model import _cpu_seconds, rounds, save_lean  # noqa: E402
from liver_v2_data import (  # noqa: E402
    CONFIG, FOLDS, REAL, STAGE1_SUBJECTS, STAGE2_SUBJECTS, OrganCase, build_cases, phantom_jobs, real_cases,
)

from livseg.config import apply_overrides, get_preset, to_dict  # noqa: E402
from livseg.data.cache import MANIFEST_FILE, open_cache, store_organ_case, update_split  # noqa: E402
from livseg.data.datasets import SPLITS_FILE  # noqa: E402
from livseg.data.io.files import write_json  # noqa: E402
from livseg.data.organ_classes import CLASSES  # noqa: E402
from livseg.inference.segment import load_model  # noqa: E402
from livseg.nn.checkpoint import load_checkpoint  # noqa: E402

log = logging.getLogger("build_liver_v2")


def write_cache(folder: Path, cases: list[OrganCase]) -> Path:
    """Cases made on the network grid as a livseg cache (every case trains); kept if complete."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = open_cache(folder, to_dict(CONFIG.preprocess))
    for case in cases:
        if case.name not in manifest["cases"]:
            names = [c for c, on in zip(CLASSES, case.labelled) if on]
            manifest["cases"][case.name] = store_organ_case(
                folder, case.name, case.image, case.share, case.other, names, voxel_ml=27.0 / 1000.0,
                source={"image": f"liver-v2:{case.name}", "label": f"liver-v2:{case.name}", "image_stamp": None,
                        "label_stamp": None})
    write_json(folder / MANIFEST_FILE, manifest)
    update_split(folder / SPLITS_FILE, [c.name for c in cases], 0.0, 0, 0.0)
    return folder


def run_stage(data: Path, run: Path, config, **kwargs: object) -> Path:  # noqa: ANN001
    """One stage through livseg's training path, continuing a killed one (a resumed run keeps the
    init it started from); its best.pt."""
    from livseg.training.train import train

    resume = (run / "last.pt").is_file()
    if resume:
        kwargs.pop("init", None)
    return train(data, run, config, resume=resume, device="cpu", progress=False, **kwargs).paths["best"]


def stage_config(preset: str, steps: int, seed: int, threads: int, extra: list[str] = ()):  # noqa: ANN201
    """A builtin preset with liver-v2's classes, this many steps and this seed."""
    config = apply_overrides(get_preset(preset), [*rounds(steps), f"train.seed={seed}", f"train.num_threads={threads}",
                                                  *extra])
    return config.__class__(**{**{f: getattr(config, f) for f in config.__dataclass_fields__},
                               "model": CONFIG.model, "name": f"liver-v2-{preset}"})


def scores(model_path: Path, shared: Path, names: list[str], threads: int) -> dict[str, dict]:
    """Liver and neighbour scores of a checkpoint on named real cases (bench_builtin_real)."""
    loaded = load_model(model_path, "cpu", num_threads=threads)
    out = {}
    for name in names:
        out[name] = score_case(loaded, *load_case(shared, name))
        log.info("%-26s %s", name, out[name])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("build/liver-v2"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--procedural", type=int, default=120, help="procedural phantoms")
    parser.add_argument("--per-subject", type=int, default=16, help="phantoms per TotalSegmentator subject")
    parser.add_argument("--steps1", type=int, default=700, help="stage 1 steps (phantoms only)")
    parser.add_argument("--steps2", type=int, default=200, help="stage 2 steps (real CTs and phantoms)")
    parser.add_argument("--real-weight", type=float, default=20.0)
    parser.add_argument("--hold-out", choices=FOLDS, default=None)
    parser.add_argument("--stage1", type=Path, default=None, help="reuse this stage-1 checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes making phantoms")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    started, cpu0 = time.perf_counter(), _cpu_seconds()
    report: dict = {"model": "liver-v2", "args": {k: str(v) for k, v in vars(args).items()}}

    jobs = phantom_jobs(args.shared, args.seed, args.procedural,
                        {s: args.per_subject for s in (*STAGE1_SUBJECTS, *STAGE2_SUBJECTS)})
    phantoms = build_cases(args.work, jobs, args.workers)
    stage1_pool = [c for c in phantoms if not c.name.startswith(STAGE2_SUBJECTS)]
    mix = stage1_pool if args.hold_out == "s0009" else phantoms
    report["data_seconds"] = round(time.perf_counter() - started, 1)

    stage1_file = args.stage1 or args.work / f"{args.out.stem}.stage1.pt"
    if args.stage1 is None:
        best = run_stage(write_cache(args.work / "phantoms-stage1", stage1_pool), args.work / "stage1",
                         stage_config("builtin", args.steps1, args.seed, args.threads), init="builtin:liver-v1")
        save_lean(best, stage1_file)
        report["stage1"] = {"steps": args.steps1, "history": load_checkpoint(best).history,
                            "scores": scores(stage1_file, args.shared, [*NEVER_TRAINED, *REAL], args.threads)}

    suffix = f"-without-{args.hold_out}" if args.hold_out else ""
    names = [name for name in REAL if REAL[name][5] != args.hold_out]
    real = write_cache(args.work / f"real{suffix}", real_cases(args.shared, args.work, tuple(names)))
    mix_cache = write_cache(args.work / f"phantoms-stage2{'-without-s0009' if args.hold_out == 's0009' else ''}", mix)
    stage2 = stage_config("builtin-stage2", args.steps2, args.seed + 1, args.threads,
                          [f"patches.real_weight={args.real_weight}"])
    best = run_stage(real, args.work / f"stage2{suffix}", stage2, init=stage1_file, phantoms=mix_cache)
    report["stage2"] = {"steps": args.steps2, "history": load_checkpoint(best).history, "real": names}
    report["train_wall_s"] = round(time.perf_counter() - started, 1)
    report["train_cpu_s"] = round(_cpu_seconds() - cpu0, 1)

    save_lean(best, args.out)
    held = [name for name in REAL if REAL[name][5] == args.hold_out]
    report["scores"] = scores(args.out, args.shared, held if args.hold_out else [*NEVER_TRAINED, *REAL], args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / f"{args.out.stem}.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    log.info("done in %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
