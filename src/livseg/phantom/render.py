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
from livseg.phantom.body_wall import paint_body_wall, paint_chest, paint_skeleton
from livseg.phantom.canvas import GAS_HU, Canvas
from livseg.phantom.lesions import MarginalLesion, bubbles, paint_lesion, texture
from livseg.phantom.organs import ORGANS, Contrast, Layout


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
    paint_skeleton(cv, body, rng)
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
