"""Painting a phantom's anatomy onto a voxel grid: clean HU, labels and an organ-id map.

Painter's algorithm in a fixed order (later wins): air and table, body wall layers, chest and
diaphragm, bowel, retroperitoneal and upper-abdominal organs, heart, skeleton, and the liver
last with its vessels and tumours, so the liver label always matches liver-coloured voxels.
Everything is vectorised; each organ is evaluated only inside its bounding box.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from livseg.phantom.anatomy import Body, Diaphragm, Field, Grid, capsule_sdf
from livseg.phantom.lesions import MarginalLesion, bubbles, paint_lesion, texture
from livseg.phantom.organs import ORGANS, Contrast, Layout

# HU of skeletal tissue: cortical and cancellous bone (300-1000 HU together), disc, CSF, cartilage
BONE = {"cortex": (600.0, 950.0), "marrow": (260.0, 380.0), "disc": 85.0, "csf": 12.0, "cartilage": 140.0}
GAS_HU = -1000.0


class Canvas:
    """The arrays being painted plus the grid and the region masks organs are confined to."""

    def __init__(self, grid: Grid, body: Body, diaphragm: Diaphragm, contrast: Contrast) -> None:
        self.grid = grid
        self.ct = np.full(grid.shape, -1000.0, dtype=np.float32)
        self.organs = np.zeros(grid.shape, dtype=np.uint8)
        self.x, self.y, self.z = (grid.axis(i).reshape([-1 if j == i else 1 for j in range(3)]) for i in range(3))
        self.depth = body.depth(self.x, self.y, self.z)
        self.wall = body.wall_depth(self.x, self.y).astype(np.float32)
        self.top = diaphragm.top(self.x, self.y)
        cavity = self.depth >= self.wall
        half = diaphragm.thickness / 2
        self.abdomen = cavity & (self.z < self.top - half)
        self.thorax = cavity & (self.z > self.top + half)
        self.sheet = cavity & ~self.abdomen & ~self.thorax
        self.contrast = contrast

    def paint(self, shape, hu, organ: str | None, region: np.ndarray | None = None,  # noqa: ANN001
              layers: tuple = ()) -> None:
        """Fill a shape with ``hu``; ``layers`` = ((depth mm, hu), ...) repaints deeper shells.

        A value may be a number or a function of the box's (x, y, z) coordinate arrays.
        """
        box = self.grid.box(*shape.bounds())
        if box is None:
            return
        sl, (x, y, z) = box
        d = shape.sdf(x, y, z)
        inside = d < 0
        if region is not None:
            inside &= region[sl]
        for depth, value in ((0.0, hu), *layers):
            m = inside & (d < -depth)
            value = value(x, y, z) if callable(value) else value
            self.ct[sl][m] = value if np.isscalar(value) else np.broadcast_to(value, d.shape)[m]
        if organ is not None:
            self.organs[sl][inside] = ORGANS[organ]


def render(grid: Grid, body: Body, diaphragm: Diaphragm, liver: Field, layout: Layout, contrast: Contrast,
           rng: np.random.Generator, lesions: tuple[MarginalLesion, ...] = ()
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Clean (noise-free, unblurred) HU, labels (0/1/2), organ ids on a canonical grid, and what
    was drawn (``stomach``: its content); ``lesions`` (already merged into ``liver``) are painted
    as tumour (2) last."""
    cv = Canvas(grid, body, diaphragm, contrast)
    c = contrast
    paint_body_wall(cv, body, rng)
    paint_chest(cv, body, rng)
    for part, kind in layout.bowel:
        cv.paint(part, c.wall, "bowel", cv.abdomen, ((2.5, bowel_content(rng, kind)),))
    mottled = colon_content(rng)
    for part in layout.colon:
        cv.paint(part, c.wall, "colon", cv.abdomen, ((2.5, mottled),))
    cv.paint(layout.colon[0], c.wall, "colon", cv.abdomen, ((2.5, GAS_HU),))  # gas rises to the flexure
    points, radius = layout.pancreas
    for a, b in zip(points[:-1], points[1:]):
        cv.paint(_Tube(a, b, radius, radius * 0.8), c.pancreas, "pancreas", cv.abdomen)
    wall_mm = rng.uniform(3, 6)  # drawn before the content: the order of draws fixes every later one
    content, stomach = stomach_content(rng, c, layout.stomach_gas_y)
    cv.paint(layout.stomach, c.wall, "stomach", cv.abdomen, ((wall_mm, content),))
    cv.paint(layout.spleen, c.spleen, "spleen", cv.abdomen)  # over the stomach: placed knowing that
    for name, kidney in zip(("kidney_right", "kidney_left"), layout.kidneys):
        paint_kidney(cv, kidney, name)
    if layout.gallbladder is not None:
        cv.paint(layout.gallbladder, c.gallbladder, "gallbladder", cv.abdomen)
    ax, ay, ar = layout.aorta
    cv.paint(_Tube(np.array([ax, ay, grid.axis(2)[0] - 50]), np.array([ax, ay, grid.axis(2)[-1] + 50]), ar, ar),
             c.blood, "aorta")
    ivc = layout.ivc
    ivc_top = layout.heart.center[2]
    cv.paint(_Clipped(ivc, ivc_top), c.ivc, "ivc")
    a, b, r = layout.portal
    cv.paint(_Tube(a, b, r, r), c.vessel, "portal_vein", cv.abdomen)
    cv.paint(layout.heart, c.myocardium, "heart", cv.thorax, ((9.0, c.blood),))
    _skeleton(cv, body, rng)
    labels = paint_liver(cv, liver, layout.vessels, layout.tumours, rng)
    paint_lesions(cv, labels, lesions, rng)
    return cv.ct, labels, cv.organs, {"stomach": stomach}


def bowel_content(rng: np.random.Generator, kind: str) -> float:
    """HU of a bowel loop's lumen: ``gas``, ``fluid``, ``stool`` or ``contrast`` (positive oral
    contrast); draws all four, so the number of draws does not depend on the kind."""
    return {"gas": GAS_HU, "fluid": rng.uniform(0, 25), "stool": rng.uniform(-350, -150),
            "contrast": rng.uniform(180, 320)}[kind]


def colon_content(rng: np.random.Generator):  # noqa: ANN201 (a painter)
    """The colon's lumen as a function of (x, y, z): faeces, soft matter with gas bubbles a few
    mm across (a fixed interference pattern)."""
    stool = rng.uniform(-150, 0)
    phase = rng.uniform(0, 2 * np.pi, 3)

    def mottled(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        bubbles = np.sin(x / 3.1 + phase[0]) * np.sin(y / 2.7 + phase[1]) * np.sin(z / 3.4 + phase[2]) > 0.25
        return np.where(bubbles, GAS_HU, stool).astype(np.float32)

    return mottled


def paint_kidney(cv: Canvas, kidney, name: str) -> None:  # noqa: ANN001 (any shape with center/radii)
    """A kidney in the nephrographic phase: bright cortex and medulla; fat and urine in the
    sinus, medially (``kidney`` needs ``center`` and ``radii`` besides ``sdf``/``bounds``)."""
    c = cv.contrast
    cv.paint(kidney, c.kidney, name, cv.abdomen, ((5.0, c.kidney_medulla),))
    sinus = kidney.moved(np.array([-np.sign(kidney.center[0]) * kidney.radii[0] * 0.7, 5.0, 0.0]))
    cv.paint(_Scaled(sinus, 0.45), c.fat + 30, None, cv.abdomen)


def paint_lesions(cv: Canvas, labels: np.ndarray, lesions: tuple[MarginalLesion, ...],
                  rng: np.random.Generator) -> None:
    """Paint large marginal lesions (already merged into the liver) as tumour (2), in place."""
    for lesion in lesions:
        box = cv.grid.box(*lesion.shape.bounds())
        if box is None:
            continue
        sl, coords = box
        d = lesion.shape.sdf(*coords)
        m = (d < 0) & (labels[sl] > 0)  # the part merged into the liver (inside the cavity)
        cv.ct[sl][m] = paint_lesion(lesion, d, coords, cv.contrast.liver, cv.contrast.phase, rng)[m]
        labels[sl][m] = 2
        cv.organs[sl][m] = ORGANS["tumour"]


# what fills the stomach, and how often: a full stomach of food at liver-like HU against the
# left lobe is the classic false positive of liver models
STOMACH_CONTENTS = (("fluid", 0.25), ("food", 0.4), ("oral_contrast", 0.2), ("gas", 0.15))


def stomach_content(rng: np.random.Generator, c: Contrast, gas_y: float):  # noqa: ANN201 (a painter)
    """HU of the stomach's lumen as a function of (x, y, z), gas always on top (supine: +y), and
    the kind of content drawn.

    ``fluid`` 0-30 HU; ``food``: a mottled mass at 20-90 HU, in half of the cases within 40 HU
    of the liver, with gas bubbles of a few mm; ``oral_contrast``: a dependent (posterior)
    layer of 150-600 HU under fluid or food; ``gas``: a collapsed stomach, almost all gas.
    """
    names, weights = zip(*STOMACH_CONTENTS)
    kind = str(rng.choice(names, p=np.asarray(weights) / sum(weights)))
    fluid = rng.uniform(0, 30)
    food = c.liver + rng.uniform(-40, 5) if rng.random() < 0.5 else rng.uniform(20, 90)
    mottle, gas_bubbles = texture(rng, rng.uniform(6, 15)), bubbles(rng, rng.uniform(3, 7))
    dense, layer = rng.uniform(150, 600), rng.uniform(15, 45)  # oral contrast and its depth (mm)
    below_food = rng.random() < 0.5
    gas_y = gas_y if kind != "gas" else gas_y - 1e4

    def paint(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
        if kind == "food" or (kind == "oral_contrast" and below_food):
            hu = food + 15.0 * mottle(x, y, z)
            hu = np.where(gas_bubbles(x, y, z), GAS_HU, hu)
        else:
            hu = np.broadcast_to(np.float32(fluid), shape)
        if kind == "oral_contrast":
            bottom = y.min() if np.ndim(y) else y
            hu = np.where(y < bottom + layer, dense + 20.0 * mottle(x, y, z), hu)
        return np.where(y >= gas_y, GAS_HU, hu).astype(np.float32)

    return paint, kind


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


def _skeleton(cv: Canvas, body: Body, rng: np.random.Generator) -> None:
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


def paint_liver(cv: Canvas, liver: Field, vessels: tuple, tumours: tuple, rng: np.random.Generator) -> np.ndarray:
    """Paint the liver, its vessels (``(a, b, r_a, r_b)`` tubes) and tumours (ellipsoids) last;
    returns the label map (0/1/2)."""
    c = cv.contrast
    labels = np.zeros(cv.grid.shape, dtype=np.uint8)
    lo, hi = liver.bounds()
    box = cv.grid.box(lo - 2, hi + 2)
    if box is None:
        return labels
    sl, (x, y, z) = box
    inside = liver.on_grid(cv.grid, sl) < 0
    ct = cv.ct[sl]
    # faint low-frequency parenchymal inhomogeneity (a few HU), as in real livers
    wobble = ndimage.zoom(rng.normal(0, 4, size=(6, 6, 6)), np.array(inside.shape) / 6, order=1, grid_mode=True,
                          mode="nearest")[: inside.shape[0], : inside.shape[1], : inside.shape[2]]
    ct[inside] = (c.liver + wobble)[inside]
    vessel = np.zeros(inside.shape, dtype=bool)
    for a, b, ra, rb in vessels:
        tube = _Tube(a, b, ra, rb)
        t_lo, t_hi = tube.bounds()
        tb = cv.grid.box(np.maximum(t_lo, lo - 2), np.minimum(t_hi, hi + 2))
        if tb is None:
            continue
        tsl, (tx, ty, tz) = tb
        rel = tuple(slice(t.start - s.start, t.stop - s.start) for t, s in zip(tsl, sl))
        if all(0 <= r.start < r.stop <= n for r, n in zip(rel, vessel.shape)):
            vessel[rel] |= tube.sdf(tx, ty, tz) < 0
    ct[vessel & inside] = c.vessel
    labels[sl][inside] = 1
    cv.organs[sl][inside] = ORGANS["liver"]
    for tumour in tumours:
        tb = cv.grid.box(*tumour.bounds())
        if tb is None:
            continue
        tsl, (tx, ty, tz) = tb
        d = tumour.sdf(tx, ty, tz)
        m = (d < 0) & (labels[tsl] > 0)
        hu = np.full(d.shape, c.liver - rng.uniform(20, 60), dtype=np.float32)
        hu[d < -min(tumour.radii) * 0.5] -= rng.uniform(0, 25)  # necrotic centre
        if rng.random() < 0.3:
            hu[d > -2.0] += rng.uniform(15, 40)  # enhancing rim
        cv.ct[tsl][m] = hu[m]
        labels[tsl][m] = 2
        cv.organs[tsl][m] = ORGANS["tumour"]
    return labels


class _Tube:
    """A tapered capsule with the Ellipsoid-like interface the canvas paints."""

    def __init__(self, a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> None:
        self.a, self.b, self.ra, self.rb = np.asarray(a, float), np.asarray(b, float), ra, rb

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return capsule_sdf(x, y, z, self.a, self.b, self.ra, self.rb)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = max(self.ra, self.rb)
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r


class _Scaled:
    """An ellipsoid shrunk about its centre."""

    def __init__(self, shape, factor: float) -> None:  # noqa: ANN001
        self.shape, self.factor = shape, factor

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        cx, cy, cz = self.shape.center
        f = self.factor
        return self.shape.sdf(cx + (x - cx) / f, cy + (y - cy) / f, cz + (z - cz) / f) * f

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.shape.bounds()
        c = (lo + hi) / 2
        return c - (hi - lo) / 2 * self.factor, c + (hi - lo) / 2 * self.factor


class _Clipped:
    """A vertical tube (long ellipsoid) cut off above ``top`` (the IVC ends in the heart)."""

    def __init__(self, shape, top: float) -> None:  # noqa: ANN001
        self.shape, self.top = shape, top

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.maximum(self.shape.sdf(x, y, z), z - self.top)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.shape.bounds()
        return lo, np.array([hi[0], hi[1], min(hi[2], self.top)])
