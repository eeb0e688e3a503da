"""Phantoms rendered on real anatomy: organ shapes and contacts from a real multi-organ label map,
everything else from livseg's phantom generator.

The procedural phantoms place each neighbour a few mm from the liver, but their stomach, bowel
and spleen are ellipsoids. A label map of a real person (the TotalSegmentator dataset's subjects
in ``../shared/data/real/totalseg-subjects``) has the real arrangement: the stomach wrapped over
the left lobe, the duodenum and colon under the right lobe, the spleen at the left lobe's tip,
the heart on the dome. :func:`make_anatomy_phantom` keeps that arrangement and draws the rest
as :func:`livseg.phantom.generator.make_phantom` does, with the same painters
(:mod:`livseg.phantom.render`): a contrast phase and every tissue's CT number
(:class:`~livseg.phantom.organs.Contrast`), the stomach's content (food at liver density, oral
contrast, gas), bowel contents and faeces, kidney cortex and sinus, the liver's vessel tree,
small and large marginal tumours, the body wall (skin, fat by habitus, muscle), lungs, and the
scanner (kernel, blur, metal, beam hardening, noise: :func:`~livseg.phantom.scanner.scan`).
Variety comes from a random affine and a smooth elastic displacement of the label map
(:func:`livseg.phantom.labelmap.deform`) and from the field of view and slice spacing.

Structures the label map lacks are simply absent (a subject without gallbladder has none). The
organ-id map (``debug=True``) uses the generator's ids (:data:`livseg.phantom.organs.ORGANS`);
vessels other than the aorta, inferior vena cava and portal/splenic vein, muscles, bladder and
glands are painted but count as background, as in TotalSegmentator-labelled CT.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
from scipy import ndimage

from livseg.data.organ_classes import read_name_table
from livseg.errors import ConfigError, InputFileNotFoundError
from livseg.phantom.anatomy import Body, Ellipsoid, Grid
from livseg.phantom.body_wall import paint_body_wall, paint_chest
from livseg.phantom.canvas import BONE, GAS_HU, Canvas
from livseg.phantom.generator import FOV_MM, SLICE_MM, DEFAULT_INPLANE_VOXELS, Phantom
from livseg.phantom.labelmap import GROUP_IDS, GROUPS, MaskShape, cropped_in_plane, deform, fit_body, fit_diaphragm, \
    group_map, to_ras
from livseg.phantom.lesions import draw_marginal_lesions, merge_lesions
from livseg.phantom.liver import clip_field
from livseg.phantom.organs import Contrast, draw_tumours, vessel_tree
from livseg.phantom.render import bowel_content, colon_content, paint_kidney, paint_lesions, paint_liver, stomach_content
from livseg.phantom.scanner import scan

log = logging.getLogger(__name__)

__all__ = ["Anatomy", "load_anatomy", "make_anatomy_phantom"]

BOWEL_KINDS = ("gas", "fluid", "fluid", "stool", "fluid")  # as the generator's loops (one in 3: contrast)


class Anatomy(SimpleNamespace):
    """A label map ready to render: ``labels`` (uint8 group ids, :data:`~livseg.phantom.labelmap.GROUP_IDS`,
    RAS order), ``affine`` (voxel -> mm), ``step`` (mm, isotropic) and ``name``."""


def load_anatomy(path: str | os.PathLike[str], names: str | os.PathLike[str] | dict[int, str]) -> Anatomy:
    """Read a multi-organ label map (NIfTI, isotropic voxels) for :func:`make_anatomy_phantom`.

    Args:
        path: the label map.
        names: its value -> structure name table (a ``classes.csv``/``structures.csv`` path or a dict).

    Raises:
        InputFileNotFoundError: no such file.
        ConfigError: the voxels are not isotropic, or the map has no liver.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"label map not found: {str(path)!r}")
    table = names if isinstance(names, dict) else read_name_table(names)
    image = nib.load(str(path))
    labels, affine = to_ras(np.asarray(image.dataobj).astype(np.uint8), image.affine)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not np.allclose(spacing, spacing[0], rtol=1e-3):
        raise ConfigError(f"{path}: voxels are {np.round(spacing, 3).tolist()} mm; expected isotropic voxels "
                          "(resample the label map first)")
    groups = group_map(labels, table)
    if not np.any(groups == GROUP_IDS["liver"]):
        raise ConfigError(f"{path}: no voxel is labelled liver; expected a multi-organ map with a liver")
    return Anatomy(labels=groups, affine=affine, step=float(spacing[0]), name=path.name.split(".")[0])


def make_anatomy_phantom(anatomy: Anatomy, seed: int, *, deform_mm: float = 4.0, debug: bool = False,
                         slab_probability: float = 0.25, step_mm: float = 2.5) -> Phantom:
    """One synthetic CT on a real anatomy.

    Args:
        anatomy: from :func:`load_anatomy`.
        seed: the case; the same seed and anatomy give identical arrays.
        deform_mm: standard deviation of the elastic displacement (0: the affine only).
        debug: also return the organ-id map (:attr:`Phantom.organs`).
        slab_probability: share of scans that cover only part of the labelled range (120-250 mm
            through the liver), else all of it.
        step_mm: voxel size of the deformed label map and of every organ's distance field (the
            painter interpolates the fields linearly, so boundaries stay smooth on finer grids;
            2.5 mm keeps a phantom at 10-25 s for livseg's 3 mm model).

    Returns:
        The phantom (canonical RAS grid, 256 x 256 in-plane or the label map's own field of
        view where it was cut in-plane, 1.5-5 mm slices) with labels
        0/1/2 (liver, tumour) and its facts (source anatomy, phase, stomach content, ...).
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    cropped = cropped_in_plane(anatomy.labels)
    groups = _scan_crop(anatomy.labels, anatomy.step, rng, slab_probability)
    groups = deform(groups, anatomy.step, rng, amplitude_mm=deform_mm, out_step=step_mm,
                    **({} if deform_mm > 0 else {"scale": 0.0, "rotate_deg": (0.0, 0.0, 0.0)}))
    step = step_mm
    coords = _centred_axes(groups, step)
    body = Body.draw(rng)
    body = fit_body(body, groups, coords)
    diaphragm = fit_diaphragm(groups, coords, step, thickness=rng.uniform(3, 5))
    contrast = Contrast.draw(rng)
    origin = np.array([a[0] for a in coords])
    boxes = ndimage.find_objects(groups)
    shapes = {name: MaskShape.from_mask(groups == gid, origin, step, box=boxes[gid - 1])
              for name, gid in GROUP_IDS.items() if gid <= len(boxes) and boxes[gid - 1] is not None}
    liver, _ = clip_field(shapes.pop("liver").field, body)
    lesions = draw_marginal_lesions(rng, liver)
    liver = merge_lesions(liver, lesions, body, diaphragm)
    ivc = shapes.get("ivc") or Ellipsoid(tuple(liver.bounds()[0] + 20.0), (12.0, 10.0, 100.0))
    vessels, _ = vessel_tree(rng, liver, ivc)
    tumours = draw_tumours(rng, liver)
    grid = _grid(rng, body, coords, cropped)
    cv = Canvas(grid, body, diaphragm, contrast)
    paint_body_wall(cv, body, rng, ribs=False)
    paint_chest(cv, body, rng)
    if "lung" in shapes:  # the chest outside the real lungs is mediastinum (fat) until painted
        lung = shapes["lung"].sdf(cv.x, cv.y, cv.z) < 0
        cv.ct[cv.thorax & ~lung] = contrast.fat
        cv.organs[cv.thorax & ~lung] = 0
    stomach = _paint_organs(cv, shapes, rng)
    labels = paint_liver(cv, liver, vessels, tumours, rng)
    paint_lesions(cv, labels, lesions, rng)
    ct, scanner = scan(cv.ct, grid, body, rng)
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    facts = {
        "seed": int(seed), "anatomy": anatomy.name, "liver_source": "label map", "shape": list(grid.shape),
        "spacing_mm": [round(s, 4) for s in grid.spacing], "phase": contrast.phase,
        "contrast_hu": round(contrast.liver, 1), "stomach": stomach, **scanner,
        "liver_volume_ml": round(float(np.count_nonzero(labels)) * voxel_ml, 1),
        "tumour_volume_ml": round(float(np.count_nonzero(labels == 2)) * voxel_ml, 1),
        "marginal_lesions": len(lesions), "structures": sorted(shapes),
    }
    log.debug("anatomy phantom %s seed %d: %s in %.1f s", anatomy.name, seed, facts, time.perf_counter() - started)
    return Phantom(ct=ct, labels=labels, affine=grid.affine(), facts=facts, organs=cv.organs if debug else None)


def _scan_crop(groups: np.ndarray, step: float, rng: np.random.Generator, slab_probability: float) -> np.ndarray:
    """The slices a scan covers: the labelled range (trimmed by 0-20 mm at each end), or (with
    ``slab_probability``) a slab of 120-250 mm through the liver."""
    z_any = np.flatnonzero(groups.any((0, 1)))
    z_liver = np.flatnonzero((groups == GROUP_IDS["liver"]).any((0, 1)))
    lo, hi = int(z_any[0]), int(z_any[-1]) + 1
    trim = int(round(rng.uniform(0, 20) / step)), int(round(rng.uniform(0, 20) / step))
    lo, hi = lo + trim[0], max(hi - trim[1], lo + trim[0] + 8)
    if rng.random() < slab_probability:
        width = int(round(rng.uniform(120, 250) / step))
        centre = int(rng.integers(z_liver[0], z_liver[-1] + 1))
        lo, hi = max(lo, centre - width // 2), min(hi, centre + width // 2)
    return np.ascontiguousarray(groups[:, :, lo:hi])


def _centred_axes(groups: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World axes (mm) with the trunk's axis at x = y = 0 (the middle of the labelled extent in
    x and y) and z = 0 at the liver's top."""
    labelled = groups > 0
    xs, ys = np.flatnonzero(labelled.any((1, 2))), np.flatnonzero(labelled.any((0, 2)))
    zs = np.flatnonzero((groups == GROUP_IDS["liver"]).any((0, 1)))
    cx, cy = (xs[0] + xs[-1]) / 2, (ys[0] + ys[-1]) / 2
    return tuple((np.arange(n) - c) * step for n, c in zip(groups.shape, (cx, cy, zs[-1])))  # type: ignore[return-value]


def _grid(rng: np.random.Generator, body: Body, coords: tuple[np.ndarray, ...], cropped: bool) -> Grid:
    """The scan: 256 x 256 in-plane over a 330-450 mm field of view (at least the body), or, for a
    label map cut in-plane (a small field of view), over the label map's own in-plane extent at
    0.7-1.5 mm; 1.5-5 mm slices over the cropped label map's z-range."""
    x, y, z = coords
    slice_mm = rng.uniform(*SLICE_MM)
    if cropped:
        pixel = rng.uniform(0.7, 1.5)
        extent = np.array([x[-1] - x[0], y[-1] - y[0]])
        n_xy = np.maximum(np.round(extent / pixel).astype(int), 8)
        spacing = (pixel, pixel, slice_mm)
        centre = np.array([(x[0] + x[-1]) / 2, (y[0] + y[-1]) / 2, (z[0] + z[-1]) / 2])
    else:
        fov = max(rng.uniform(*FOV_MM), 2 * body.half_width * float(np.max(body.profile_scale)) + 20)
        n_xy = np.array([DEFAULT_INPLANE_VOXELS] * 2)
        spacing = (fov / n_xy[0], fov / n_xy[1], slice_mm)
        centre = np.array([rng.uniform(-10, 10), (body.ant - body.post) / 2 - rng.uniform(0, 25), (z[0] + z[-1]) / 2])
    shape = (int(n_xy[0]), int(n_xy[1]), max(8, int((z[-1] - z[0]) // slice_mm)))
    origin = centre - (np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    return Grid(tuple(float(v) for v in origin), tuple(float(v) for v in spacing), shape)


def _pieces(shape: MaskShape, rng: np.random.Generator, per_litre: float, step: float) -> list[MaskShape]:
    """A long organ (bowel, colon) cut into loops: each voxel goes to the nearest of a few random
    seed points inside it, so each piece gets its own content and a wall where pieces meet."""
    inside = shape.field.values < 0
    idx = np.argwhere(inside)
    volume_l = len(idx) * step**3 / 1e6
    k = int(np.clip(round(volume_l * per_litre), 1, 40))
    seeds = idx[rng.choice(len(idx), size=k, replace=False)]
    from scipy.spatial import cKDTree

    owner = np.zeros(inside.shape, dtype=np.int32)
    owner[tuple(idx.T)] = cKDTree(seeds).query(idx)[1] + 1
    boxes = ndimage.find_objects(owner)
    return [MaskShape.from_mask(owner == j + 1, shape.field.origin, step, margin_mm=8.0, box=box)
            for j, box in enumerate(boxes) if box is not None]


def _paint_organs(cv: Canvas, shapes: dict[str, MaskShape], rng: np.random.Generator) -> str:
    """Every structure but the liver, in the generator's painting order; returns the stomach's content."""
    c = cv.contrast
    step = next(iter(shapes.values())).field.step
    inside_body = cv.depth >= 0
    kinds = BOWEL_KINDS[:4] + (("contrast",) if rng.random() < 0.3 else ("fluid",))
    if "bowel" in shapes:
        for part in _pieces(shapes["bowel"], rng, per_litre=25.0, step=step):
            cv.paint(part, c.wall, "bowel", cv.abdomen, ((2.5, bowel_content(rng, str(rng.choice(kinds)))),))
    if "colon" in shapes:
        mottled = colon_content(rng)
        for part in _pieces(shapes["colon"], rng, per_litre=8.0, step=step):
            cv.paint(part, c.wall, "colon", cv.abdomen, ((2.5, mottled if rng.random() < 0.7 else GAS_HU),))
    if "pancreas" in shapes:
        cv.paint(shapes["pancreas"], c.pancreas, "pancreas", cv.abdomen)
    content = "absent"
    if "stomach" in shapes:
        lo, hi = shapes["stomach"].bounds()
        wall_mm = rng.uniform(3, 6)
        painter, content = stomach_content(rng, c, hi[1] - rng.uniform(0.15, 0.6) * (hi[1] - lo[1]))
        cv.paint(shapes["stomach"], c.wall, "stomach", cv.abdomen, ((wall_mm, painter),))
    if "spleen" in shapes:
        cv.paint(shapes["spleen"], c.spleen, "spleen", cv.abdomen)
    for name in ("kidney_right", "kidney_left"):
        if name in shapes:
            paint_kidney(cv, shapes[name], name)
    if "gallbladder" in shapes:
        cv.paint(shapes["gallbladder"], c.gallbladder, "gallbladder", cv.abdomen)
    for name, hu, organ in (("bladder", rng.uniform(0, 20), None), ("soft", c.muscle, None),
                            ("aorta", c.blood, "aorta"), ("arteries", c.blood, None), ("ivc", c.ivc, "ivc"),
                            ("veins", c.ivc, None), ("portal_vein", c.vessel, "portal_vein"),
                            ("air", GAS_HU, None), ("muscle", c.muscle, None)):
        if name in shapes:
            cv.paint(shapes[name], hu, organ, inside_body)
    if "heart" in shapes:
        cv.paint(shapes["heart"], c.myocardium, "heart", inside_body, ((9.0, c.blood),))
    if "cartilage" in shapes:
        cv.paint(shapes["cartilage"], BONE["cartilage"], None, inside_body)
    cortex, marrow = rng.uniform(*BONE["cortex"]), rng.uniform(*BONE["marrow"])
    for name in ("bone", "limb_bone"):
        if name in shapes:
            cv.paint(shapes[name], cortex, "bone", inside_body, ((1.5, marrow),))
    return content


def anatomy_names() -> Sequence[str]:
    """The groups a label map is reduced to (for documentation and tests)."""
    return tuple(GROUPS)
