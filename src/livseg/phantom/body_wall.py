"""Painting the body around the organs: table, skin, fat and muscle wall with ribs and arms, the
chest (lungs, mediastinum) and the skeleton (spine, pelvis). Used by the procedural generator and
by the phantoms rendered on real label maps."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from livseg.phantom.anatomy import Body
from livseg.phantom.canvas import BONE, Canvas
from livseg.phantom.organs import ORGANS


def paint_body_wall(cv: Canvas, body: Body, rng: np.random.Generator, *, ribs: bool = True) -> None:
    """Table, skin, subcutaneous fat, muscle wall and the visceral fat filling the cavity, and
    (``ribs``) ribs drawn in the muscle ring (off where a real label map brings its own)."""
    c = cv.contrast
    x, y = cv.x[:, :, 0], cv.y[:, :, 0]
    table_y = -body.post - rng.uniform(3, 25) + x * x / 1600.0
    for offset in (0.0, 14.0):  # carbon-fibre table: two thin bright shells around a foam core
        shell = (np.abs(y - (table_y - offset)) < 1.2) & (np.abs(x) < body.half_width * 1.15)
        cv.ct[shell] = 150.0
    if rng.random() < 0.25:
        _arms(cv, body, rng)
    d = cv.depth
    fat_end = cv.wall - body.muscle
    cv.ct[d >= 0] = rng.uniform(20, 60)  # skin
    cv.ct[(d >= 2.0) & (d < fat_end)] = c.fat
    cv.ct[(d >= fat_end) & (d < cv.wall)] = c.muscle
    cv.ct[cv.abdomen | cv.sheet] = c.fat + rng.uniform(0, 20)  # visceral fat a little denser
    cv.ct[cv.sheet] = c.muscle  # the diaphragm itself: muscle, like the wall
    if ribs:
        _ribs(cv, body, rng)


def _ribs(cv: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Ribs crossing the wall obliquely (bone and cartilage painted into the muscle ring)."""
    x, y = cv.x[:, :, 0], cv.y[:, :, 0]
    d = cv.depth
    fat_end = cv.wall - body.muscle
    # ribs cross the wall obliquely: posterior ends high, anterior ends low, cartilage in front.
    # Only voxels of the muscle ring can hold a rib, so the sums run over those alone.
    ring = np.nonzero((d > fat_end + 1) & (d < cv.wall + 1))
    theta = np.arctan2(y, x)[ring[0], ring[1]]
    z, dr = cv.grid.axis(2)[ring[2]], d[ring]
    pitch, drop, height = rng.uniform(30, 38), rng.uniform(60, 95), rng.uniform(7, 11)
    u = (z + drop * (1 + np.sin(theta)) / 2 - rng.uniform(40, 70)) / pitch
    frac = np.abs(u - np.round(u)) * pitch
    # oval cross-sections centred in the muscle layer, about 9 mm deep radially
    oval = (frac / (height / 2)) ** 2 + ((dr - (cv.wall[ring[0], ring[1], 0] - body.muscle / 2)) / 4.5) ** 2
    costal = z > -200 + 110 * (1 + np.sin(theta)) / 2
    rib = (oval < 1) & costal & (np.abs(np.cos(theta)) >= 0.3) & (np.round(u) <= 0) & (np.round(u) > -12)
    front = np.sin(theta) > 0.55
    hu = np.where(oval > 0.45, rng.uniform(*BONE["cortex"]), rng.uniform(*BONE["marrow"]))
    hu = np.where(front, BONE["cartilage"], hu).astype(np.float32)
    ribs = tuple(i[rib] for i in ring)
    cv.ct[ribs] = hu[rib]
    bone = tuple(i[rib & ~front] for i in ring)
    cv.organs[bone] = ORGANS["bone"]


def _arms(cv: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Arms down beside the trunk (most scans have them raised out of the field of view): skin,
    fat and muscle around a humerus, a few centimetres lateral to the body."""
    c = cv.contrast
    x, y = cv.x[:, :, 0], cv.y[:, :, 0]
    radius, gap, fat = rng.uniform(38, 55), rng.uniform(5, 60), rng.uniform(5, 20)
    for side in (1.0, -1.0):
        cx, cy = side * (body.half_width + gap + radius), rng.uniform(-20, 30)
        r = np.sqrt(((x - cx) / radius) ** 2 + ((y - cy) / (radius * 1.1)) ** 2) * radius
        cv.ct[r < radius] = rng.uniform(20, 60)
        cv.ct[r < radius - 2] = c.fat
        cv.ct[r < radius - 2 - fat] = c.muscle
        bone = r < 11
        cv.ct[bone] = rng.uniform(*BONE["cortex"])
        cv.ct[r < 6] = rng.uniform(*BONE["marrow"])
        cv.organs[bone] = ORGANS["bone"]


def paint_chest(cv: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Lungs above the diaphragm, with vessel dots, and the mediastinal fat."""
    if not cv.thorax.any():
        return
    c = cv.contrast
    ks = np.flatnonzero(cv.thorax.any((0, 1)))
    zs = slice(ks[0], ks[-1] + 1)  # the chest is only the top slices: filter just those
    thorax = cv.thorax[:, :, zs]
    vessels = rng.standard_normal(thorax.shape, dtype=np.float32)
    ndimage.gaussian_filter(vessels, [1.2 / s for s in cv.grid.spacing], output=vessels)
    lung_hu = np.where(vessels > np.quantile(vessels[::4, ::4, ::2], 0.96), -150.0, c.lung).astype(np.float32)
    cv.ct[:, :, zs][thorax] = lung_hu[thorax]
    cv.organs[:, :, zs][thorax] = ORGANS["lung"]
    # mediastinal fat: an oval between the lungs around the heart, great vessels and spine
    mediastinum = cv.thorax & ((((cv.x + 20) / 55) ** 2 + ((cv.y - body.spine_y - 40) / 75) ** 2) < 1)
    cv.ct[mediastinum] = c.fat
    cv.organs[mediastinum] = 0


def paint_skeleton(cv: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Vertebrae (cortex, marrow, discs, canal, arch, processes) and the muscles beside them."""
    c = cv.contrast
    x, y, z = cv.x[:, :, 0], cv.y[:, :, 0], cv.z[0, 0, :]
    sy, sr = body.spine_y, body.spine_r
    canal_y = sy - sr - 9.0
    vert = ((x / (sr * 1.15)) ** 2 + ((y - sy) / sr) ** 2) < 1
    rim = vert & ~(((x / (sr * 1.15 - 2.5)) ** 2 + ((y - sy) / (sr - 2.5)) ** 2) < 1)
    canal = (x / 9) ** 2 + ((y - canal_y) / 8) ** 2 < 1
    arch = ((x / 14) ** 2 + ((y - canal_y) / 13) ** 2 < 1) & ~canal
    # laminae meet behind the canal in a V, the spinous process runs on backwards
    lamina = (np.abs(np.abs(x) - (canal_y - 6 - y) * 0.9) < 3.0) & (y < canal_y - 6) & (y > canal_y - 20)
    spinous = (np.abs(x) < 3.0) & (y < canal_y - 14) & (y > canal_y - 34)
    transverse = (np.abs(x) < 30) & (np.abs(x) > 10) & (np.abs(y - canal_y - 2 + np.abs(x) * 0.15) < 3.0)
    period, disc_h = rng.uniform(30, 38), rng.uniform(7, 10)
    phase = np.mod(z - rng.uniform(0, period), period)
    disc = phase < disc_h
    process = (phase > disc_h + 6) & (phase < disc_h + 15)

    def put(mask2d: np.ndarray, zmask: np.ndarray, hu: float, organ: int | None) -> None:
        m = mask2d[:, :, None] & zmask[None, None, :]
        cv.ct[m] = hu
        if organ is not None:
            cv.organs[m] = organ

    everywhere = np.ones_like(disc)
    bone = ORGANS["bone"]
    put(vert, ~disc, rng.uniform(*BONE["marrow"]), bone)
    put(rim, ~disc, rng.uniform(*BONE["cortex"]), bone)
    put(vert, disc, BONE["disc"], 0)
    put(arch, ~disc, rng.uniform(*BONE["cortex"]) * 0.8, bone)
    put(lamina | spinous, process, rng.uniform(*BONE["cortex"]) * 0.8, bone)
    put(transverse & ~vert & ~canal, process, rng.uniform(*BONE["cortex"]) * 0.7, bone)
    put(canal, everywhere, BONE["csf"], 0)
    # psoas muscles grow from nothing below the kidneys' upper poles
    psoas_r = np.clip((-80 - z) / 5, 0, 22)
    box = cv.grid.box(np.array([-sr - 60, sy - 40, -1e4]), np.array([sr + 60, sy + 40, 1e4]))
    if box is not None:
        sl, (bx, by, _) = box
        r = psoas_r[sl[2]][None, None, :]
        m = (((np.abs(bx) - sr - 14) ** 2 + (by - sy + 5) ** 2) < r**2) & cv.abdomen[sl]
        cv.ct[sl][m] = c.muscle
        cv.organs[sl][m] = 0
