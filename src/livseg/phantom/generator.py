"""Synthetic abdominal CT with liver and tumour labels, for tests and demos without real data.

A phantom is made in world millimetres (RAS+: +x = patient right, +y anterior, +z superior) and
then sampled on a voxel grid, so geometry is right whatever the spacing. It is hard in the ways
real CT is hard: a body with skin, fat, muscle, spine and ribs, air outside and gas in the
bowel and stomach; a liver of realistic shape and size (procedural, or a real mask from
``liver_shape``) in the right upper abdomen under the diaphragm, with vessels and hypodense
tumours; spleen, stomach, heart, right kidney and inferior vena cava touching or within a few
mm of it at CT numbers close to the liver's; per-case spacing, contrast phase, correlated
noise, partial-volume blur and a random flip of the array axes (the affine follows), in the
proportions of the LiTS orientations.

The same seed gives the same arrays, and :func:`write_phantoms` the same file bytes (nibabel
writes gzip with mtime 0 and no file name).

Modules: :mod:`livseg.phantom.anatomy` (shape primitives, body, diaphragm), :mod:`livseg.phantom.liver`
(the liver), :mod:`livseg.phantom.organs` (the other organs, CT numbers),
:mod:`livseg.phantom.render` (painting onto the grid).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from livseg.data.io.files import prepare_output_dir
from livseg.data.io.grid import check_grid
from livseg.data.io.nifti import is_nifti, read_nifti, save_nifti
from livseg.errors import ConfigError, DatasetError, InputFileNotFoundError, OutputExistsError
from livseg.phantom.anatomy import Body, Diaphragm, Ellipsoid, Grid, lift_for_liver
from livseg.phantom.lesions import draw_marginal_lesions, merge_lesions
from livseg.phantom.liver import clip_field, draw_volume_ml, mask_field, place_field, procedural_liver
from livseg.phantom.organs import NEIGHBOURS, ORGANS, Contrast, draw_layout
from livseg.phantom.render import render
from livseg.phantom.scanner import scan

log = logging.getLogger(__name__)

__all__ = ["NEIGHBOURS", "ORGANS", "Phantom", "make_phantom", "write_phantoms", "find_liver_shapes"]

DEFAULT_INPLANE_VOXELS = 256  # LiTS field of view (512 x 0.6-0.9 mm) at half resolution: fast
FOV_MM = (330.0, 450.0)  # in-plane field of view, as in LiTS (p5-p95 329-511 mm)
SLICE_MM = (1.5, 5.0)  # default slice spacing range (coarser than 1.5 mm makes no default slow)
# array orientations of the 112 LiTS training masks (affine diagonal signs): (+,+,+) 35 cases,
# (-,+,+) 33, (-,-,+) 44; slices always run upwards. Phantoms are built (+,+,+) and flipped to match
ORIENTATIONS = (((), 35), ((0,), 33), ((0, 1), 44))
HU_RANGE = (-1024.0, 3071.0)
# what the scan covers, and how often: the abdomen (lung bases down to below the liver, at
# times to the pelvis), chest and abdomen (as LIDC-0001), a scan that starts or stops inside the
# liver, and a thin slab through it (as TotalSegmentator's 20-slice example)
SCAN_RANGES = (("abdomen", 0.55), ("chest_abdomen", 0.2), ("cut_liver", 0.15), ("slab", 0.1))
# the default keeps the whole liver in every scan, as LiTS does (and the demo's fixed grid needs)
LITS_SCAN_RANGES = (("abdomen", 0.85), ("chest_abdomen", 0.15))


@dataclass(frozen=True, eq=False)
class Phantom:
    """One synthetic CT case.

    Attributes:
        ct: float32 HU, array axes (x, y, z) as written to NIfTI.
        labels: uint8, 0 background, 1 liver, 2 tumour; same grid.
        affine: 4x4 voxel index -> RAS+ mm.
        facts: what was drawn and measured (liver volume in mL, tumour count, contrast and noise
            HU, flipped axes, spacing, ...), JSON-serialisable.
        organs: uint8 organ-id map (see :data:`ORGANS`) when made with ``debug=True``, else None.
    """

    ct: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    facts: dict = field(default_factory=dict)
    organs: np.ndarray | None = None

    def organ_mask(self, name: str) -> np.ndarray:
        """Boolean mask of one organ (``debug=True`` phantoms only), e.g. ``"spleen"``."""
        if self.organs is None:
            raise ValueError("organ masks need make_phantom(..., debug=True)")
        return self.organs == ORGANS[name]


def make_phantom(
    seed: int,
    *,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    liver_shape: np.ndarray | None = None,
    liver_affine: np.ndarray | None = None,
    debug: bool = False,
    scan_ranges: Sequence[tuple[str, float]] = LITS_SCAN_RANGES,
) -> Phantom:
    """Make one synthetic abdominal CT with liver/tumour labels.

    Args:
        seed: the case; the same seed (and arguments) gives identical arrays.
        shape: array shape (x, y, z). Default: 256 x 256 in-plane, slices to cover the scan.
        spacing: voxel size in mm per array axis. Default: field of view / shape (the field of
            view is drawn per case: 330-450 mm in-plane, lung bases to below the liver in z);
            with neither given, slices are 1.5-5 mm.
        liver_shape: a real liver mask (nonzero = liver) to use instead of a procedural liver;
            it is moved (and mirrored if it lies on the patient's left) into the right upper
            abdomen at its real size.
        liver_affine: voxel -> RAS mm affine of ``liver_shape`` (default: 1 mm isotropic).
        debug: also return the organ-id map (:attr:`Phantom.organs`).
        scan_ranges: ``(kind, weight)`` pairs of what a scan covers (see :data:`SCAN_RANGES`);
            the default keeps the whole liver in view, as LiTS does. The built-in model's
            training uses :data:`SCAN_RANGES`, with scans that cut the liver and thin slabs.

    Returns:
        The phantom.

    Raises:
        ConfigError: a negative seed, a bad shape, spacing or liver mask.
    """
    started = time.perf_counter()
    _check_seed(seed)
    shape, spacing = _check_grid_args(shape, spacing)
    rng = np.random.default_rng(seed)
    body = Body.draw(rng)
    contrast = Contrast.draw(rng)
    inner = body.inner_half_width()
    diaphragm = Diaphragm(right=(inner * rng.uniform(0.35, 0.55), rng.uniform(-20, 10), rng.uniform(130, 200)),
                          left=(-inner * rng.uniform(0.35, 0.55), rng.uniform(-20, 10), rng.uniform(130, 200),
                                rng.uniform(-25, -8)),
                          thickness=rng.uniform(3, 5), back=rng.uniform(90, 150))
    ivc = Ellipsoid((body.spine_r * 0.6 + rng.uniform(12, 20), body.spine_y + body.spine_r + rng.uniform(6, 12), 0.0),
                    (rng.uniform(11, 15), rng.uniform(8, 11), 3000.0))
    centre_y = ((body.ant - body.wall[0]) - (body.post - body.wall[2])) / 2 + rng.uniform(0, 15)
    facts: dict = {"seed": int(seed), "liver_mirrored": False, "liver_clipped_fraction": 0.0}
    if liver_shape is None:
        target = draw_volume_ml(rng)
        liver = procedural_liver(rng, body=body, diaphragm=diaphragm, anchor=np.array([inner + 4.0, centre_y, 0.0]),
                                 ivc=ivc, ivc_gap=rng.uniform(0.0, 2.0), target_ml=target)
        lesions = draw_marginal_lesions(rng, liver)
        liver = merge_lesions(liver, lesions, body, diaphragm)
        facts.update(liver_source="procedural", liver_target_ml=round(target, 1))
    else:
        liver, mirrored = mask_field(_check_mask(liver_shape), np.eye(4) if liver_affine is None else liver_affine)
        lo, hi = liver.bounds()
        body = _fit_body(body, hi - lo)
        inner = body.inner_half_width()
        liver = place_field(liver, right_x=inner - 1.0, top_z=-diaphragm.thickness / 2 - 0.5, centre_y=centre_y)
        liver, lost = clip_field(liver, body)
        lesions = draw_marginal_lesions(rng, liver)
        liver = merge_lesions(liver, lesions, body, None)  # the diaphragm is draped over them below
        lift, origin = lift_for_liver(liver, diaphragm.thickness)
        diaphragm = replace(diaphragm, lift=lift, lift_origin=origin)
        facts.update(liver_source="mask", liver_mirrored=mirrored, liver_clipped_fraction=round(lost, 4))
    layout = draw_layout(rng, body, diaphragm, liver, ivc)
    grid, grid_facts = _choose_grid(rng, body, liver, shape, spacing, scan_ranges)
    ct, labels, organs, drawn = render(grid, body, diaphragm, liver, layout, contrast, rng, lesions)
    ct, scanner = scan(ct, grid, body, rng)
    affine = grid.affine()
    weights = np.array([w for _, w in ORIENTATIONS], dtype=float)
    flips = list(ORIENTATIONS[rng.choice(len(ORIENTATIONS), p=weights / weights.sum())][0])
    for axis in flips:  # the world stays put: reverse the axis and move the origin to its far end
        affine[:3, 3] += affine[:3, axis] * (grid.shape[axis] - 1)
        affine[:3, axis] *= -1
    if flips:
        ct, labels = (np.ascontiguousarray(np.flip(a, flips)) for a in (ct, labels))
        organs = np.ascontiguousarray(np.flip(organs, flips)) if debug else organs
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    facts.update(
        shape=list(grid.shape), spacing_mm=[round(s, 4) for s in grid.spacing], flipped_axes=flips,
        liver_volume_ml=round(float(np.count_nonzero(labels)) * voxel_ml, 1),
        tumour_count=int(sum(1 for t in layout.tumours if _visible(t, labels, grid, flips))),
        tumour_volume_ml=round(float(np.count_nonzero(labels == 2)) * voxel_ml, 1),
        marginal_lesions=[{"kind": m.kind, "radius_mm": round(float(np.mean(m.shape.radii)), 1)} for m in lesions],
        phase=contrast.phase, contrast_hu=round(contrast.liver, 1), vessel_hu=round(contrast.vessel, 1), spleen_hu=round(contrast.spleen, 1),
        **scanner, scan_range=grid_facts, **drawn,
        neighbour_gap_mm={k: round(v, 2) for k, v in layout.gaps.items()},
        body_width_mm=round(float(2 * body.half_width), 1), body_depth_mm=round(float(body.ant + body.post), 1),
    )
    log.debug("phantom seed %d: %s in %.2f s", seed, facts, time.perf_counter() - started)
    return Phantom(ct=ct, labels=labels, affine=affine, facts=facts, organs=organs if debug else None)


def write_phantoms(
    out_dir: str | os.PathLike[str],
    n: int,
    *,
    seed: int = 0,
    shape: tuple[int, int, int] | None = None,
    liver_shapes_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> list[tuple[Path, Path]]:
    """Write ``n`` phantoms as a LiTS-layout folder: ``volume-K.nii.gz`` + ``segmentation-K.nii.gz``.

    Args:
        out_dir: folder to write (created if missing).
        n: number of cases, K = 0 .. n-1.
        seed: base seed; case K uses a seed derived from (seed, K), so sets never overlap.
        shape: array shape of every case (default: per case, see :func:`make_phantom`).
        liver_shapes_dir: folder of real liver masks (NIfTI, nonzero = liver); case K uses the
            K-th mask (cycling) instead of a procedural liver.
        overwrite: replace existing files.

    Returns:
        (volume path, segmentation path) per case. Volumes are int16 HU, segmentations uint8.

    Raises:
        ConfigError: n < 1, a negative seed, or a bad shape.
        OutputExistsError: a target file exists and ``overwrite`` is False (nothing is written).
        InputFileNotFoundError, DatasetError, CorruptFileError: problems with the liver masks.
    """
    if int(n) < 1:
        raise ConfigError(f"n={n}: expected at least one phantom")
    _check_seed(seed)
    _check_grid_args(shape, None)  # before the folder is touched, not in the first case
    out = prepare_output_dir(out_dir)
    shapes = find_liver_shapes(liver_shapes_dir) if liver_shapes_dir is not None else []
    pairs = [(out / f"volume-{k}.nii.gz", out / f"segmentation-{k}.nii.gz") for k in range(int(n))]
    existing = [str(p) for pair in pairs for p in pair if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} exists ({len(existing)} of the outputs do); pass overwrite=True "
                                "(CLI: --overwrite) to replace them")
    for k, (volume_path, seg_path) in enumerate(pairs):
        case_seed = int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0])
        mask, affine = (None, None)
        if shapes:
            mask, affine = read_liver_mask(shapes[k % len(shapes)])
        phantom = make_phantom(case_seed, shape=shape, liver_shape=mask, liver_affine=affine)
        hu = np.clip(np.rint(phantom.ct), *HU_RANGE)
        save_nifti(hu, phantom.affine, volume_path, dtype=np.int16, overwrite=overwrite)
        save_nifti(phantom.labels, phantom.affine, seg_path, dtype=np.uint8, overwrite=overwrite)
        log.info("wrote %s (liver %.0f mL, %d tumours)", volume_path.name, phantom.facts["liver_volume_ml"],
                 phantom.facts["tumour_count"])
    return pairs


def find_liver_shapes(folder: str | os.PathLike[str]) -> list[Path]:
    """NIfTI files in a folder, in natural order (segmentation-2 before segmentation-10).

    Raises:
        InputFileNotFoundError: the folder does not exist.
        DatasetError: it holds no NIfTI file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileNotFoundError(f"liver shape folder not found: {str(folder)!r}")
    files = [p for p in folder.iterdir() if p.is_file() and is_nifti(p)]
    if not files:
        raise DatasetError(f"{folder}: no .nii/.nii.gz liver masks found; expected label files (nonzero = liver)")
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


def read_liver_mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A liver mask file as (bool array, affine); any nonzero label counts as liver.

    Raises:
        CorruptFileError: unreadable file.
        GeometryError: a header without a usable grid.
        ConfigError: no liver voxel in it.
    """
    array, affine = read_nifti(path, None)  # the header checks and units of every NIfTI livseg reads
    check_grid(affine, str(path))
    return _check_mask(np.asarray(array) != 0, str(path)), affine


def _check_mask(mask: np.ndarray, source: str = "liver_shape") -> np.ndarray:
    mask = np.asarray(mask)
    while mask.ndim > 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 3:
        raise ConfigError(f"{source}: liver mask has shape {mask.shape}; expected a 3D array")
    if not np.any(mask):
        raise ConfigError(f"{source}: liver mask is empty; expected nonzero voxels for the liver")
    return mask


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ConfigError(f"seed={seed}: expected an integer >= 0")


MAX_PHANTOM_AXIS, MAX_PHANTOM_VOXELS = 2048, 512**3  # a large CT is 512 x 512 x 500; the generator holds several copies


def _check_grid_args(shape: Sequence[int] | None, spacing: Sequence[float] | None):  # noqa: ANN202
    if shape is not None:
        if len(shape) != 3 or any(int(s) != s or not 8 <= s <= MAX_PHANTOM_AXIS for s in shape):
            raise ConfigError(f"shape={tuple(shape)}: expected three integers from 8 to {MAX_PHANTOM_AXIS} (x, y, z)")
        shape = tuple(int(s) for s in shape)
        if shape[0] * shape[1] * shape[2] > MAX_PHANTOM_VOXELS:
            raise ConfigError(f"shape={shape}: {shape[0] * shape[1] * shape[2]:,} voxels; at most {MAX_PHANTOM_VOXELS:,} "
                              "(512 x 512 x 512) are allowed")
    if spacing is not None:
        if len(spacing) != 3 or not all(np.isfinite(s) and 0.1 <= s <= 20 for s in spacing):
            raise ConfigError(f"spacing={tuple(spacing)}: expected three voxel sizes in mm, 0.1-20")
        spacing = tuple(float(s) for s in spacing)
    return shape, spacing


def _fit_body(body: Body, extent: np.ndarray) -> Body:
    """A body big enough for a real liver of this extent (liver ~60-75% of the cavity width)."""
    half = max(body.half_width, extent[0] * 0.68 + body.wall[1] + 10)
    grow = max(0.0, (extent[1] + 30) - ((body.ant - body.wall[0]) + (body.post - body.wall[2]))) / 2
    return replace(body, half_width=half, ant=body.ant + grow, post=body.post + grow)


def _scan_range(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray,
                ranges: Sequence[tuple[str, float]]) -> tuple[str, float, float]:
    """(kind, z_top, z_bottom) in mm of one scan around a liver spanning lo..hi."""
    names, weights = zip(*ranges)
    unknown = set(names) - {name for name, _ in SCAN_RANGES}
    if unknown:
        raise ConfigError(f"scan_ranges: unknown kinds {sorted(unknown)}; expected some of {[n for n, _ in SCAN_RANGES]}")
    kind = str(rng.choice(names, p=np.asarray(weights) / sum(weights)))
    top = max(hi[2], 0.0)
    z_top, z_bottom = top + rng.uniform(15, 70), lo[2] - (rng.uniform(15, 110) if rng.random() < 0.7
                                                          else rng.uniform(110, 220))
    if kind == "chest_abdomen":
        z_top = top + rng.uniform(150, 300)
    elif kind == "cut_liver":
        if rng.random() < 0.5:
            z_top = top - rng.uniform(10, 0.5 * (top - lo[2]))
        else:
            z_bottom = lo[2] + rng.uniform(10, 0.5 * (top - lo[2]))
    elif kind == "slab":
        width = rng.uniform(30, 90)
        z_bottom = rng.uniform(lo[2] + 10, max(lo[2] + 11, top - width - 10))
        z_top = z_bottom + width
    return kind, z_top, z_bottom


def _choose_grid(rng: np.random.Generator, body: Body, liver, shape, spacing,  # noqa: ANN001
                 ranges: Sequence[tuple[str, float]]) -> tuple[Grid, str]:
    """The scan: in-plane field of view on the body, z as :func:`_scan_range` draws it."""
    lo, hi = liver.bounds()
    fov_xy = max(rng.uniform(*FOV_MM), 2 * body.half_width + 20)
    centre = np.array([rng.uniform(-10, 10), (body.ant - body.post) / 2 - rng.uniform(0, 25), 0.0])
    kind, z_top, z_bottom = _scan_range(rng, lo, hi, ranges)
    centre[2] = (z_top + z_bottom) / 2
    fov = np.array([fov_xy, fov_xy, z_top - z_bottom])
    slice_mm = rng.uniform(*SLICE_MM)
    if shape is None and spacing is None:
        shape = (DEFAULT_INPLANE_VOXELS, DEFAULT_INPLANE_VOXELS, max(8, int(round(fov[2] / slice_mm))))
    if spacing is None:
        spacing = tuple(fov / np.asarray(shape))
    if shape is None:
        shape = tuple(int(v) for v in np.maximum(np.ceil(fov / np.asarray(spacing)), 8))
    origin = centre - (np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    return Grid(tuple(float(v) for v in origin), tuple(float(v) for v in spacing), tuple(shape)), kind


def _visible(tumour: Ellipsoid, labels: np.ndarray, grid: Grid, flips: list[int]) -> bool:
    """Whether a tumour's centre voxel ended up labelled tumour."""
    idx = np.round((np.asarray(tumour.center) - grid.origin) / grid.spacing).astype(int)
    if np.any(idx < 0) or np.any(idx >= grid.shape):
        return False
    for axis in flips:
        idx[axis] = grid.shape[axis] - 1 - idx[axis]
    return bool(labels[tuple(idx)] == 2)
