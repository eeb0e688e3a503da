"""Where the phantom's other organs go, and what each tissue's CT number is in one case.

The neighbours that make liver segmentation hard in real CT (spleen, stomach, heart, right
kidney, inferior vena cava, gallbladder, colon) are drawn at their anatomical place and then
slid towards the liver until they sit a chosen 0-4 mm from it (:func:`place_near`), so each one
touches or nearly touches the liver in every case. Their CT numbers are drawn relative to the
liver's, so that intensity alone never separates the liver: shape, position and context must.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livseg.phantom.anatomy import Body, Diaphragm, Ellipsoid, Field, rotation, smin

# organ ids of the debug map (Phantom.organs); 0 = background tissue (fat, muscle, air ...)
ORGANS: dict[str, int] = {
    "liver": 1, "tumour": 2, "spleen": 3, "stomach": 4, "heart": 5, "kidney_right": 6, "kidney_left": 7,
    "ivc": 8, "aorta": 9, "gallbladder": 10, "colon": 11, "bowel": 12, "pancreas": 13, "portal_vein": 14,
    "lung": 15, "bone": 16,
}
NEIGHBOURS = ("spleen", "stomach", "heart", "kidney_right", "ivc")  # always near the liver


@dataclass(frozen=True)
class Blob:
    """A smooth union of ellipsoids (stomach, colon segments)."""

    parts: tuple[Ellipsoid, ...]
    k: float = 15.0

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed distance (mm, approximate)."""
        d = self.parts[0].sdf(x, y, z)
        for part in self.parts[1:]:
            d = smin(d, part.sdf(x, y, z), self.k)
        return d

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (lo, hi) in world mm."""
        boxes = [p.bounds() for p in self.parts]
        return np.min([b[0] for b in boxes], 0), np.max([b[1] for b in boxes], 0)

    def surface(self, n: int = 400) -> np.ndarray:
        """Points on the outer surface, (m, 3)."""
        pts = np.concatenate([p.surface(n // len(self.parts)) for p in self.parts])
        return pts[self.sdf(pts[:, 0], pts[:, 1], pts[:, 2]) > -1.5]

    def moved(self, shift: np.ndarray) -> Blob:
        """The same blob translated by ``shift`` mm."""
        return Blob(tuple(p.moved(shift) for p in self.parts), self.k)


def place_near(shape, liver: Field, gap: float, *, in_plane: bool = False,  # noqa: ANN001, ANN201
               max_shift: float = 90.0, hidden_by=None):  # noqa: ANN001
    """Slide a shape towards (or away from) the liver until its closest point is ``gap`` mm off.

    Args:
        shape: an Ellipsoid or Blob.
        liver: the liver's signed distance field.
        gap: wanted smallest distance between the surfaces (mm); 0 = touching.
        in_plane: move only in x and y (vertical tubes such as the IVC).
        max_shift: never move further than this in total (mm): stays anatomical.
        hidden_by: a shape painted over this one later; its covered surface does not count.

    Returns:
        The moved shape.
    """
    total = np.zeros(3)
    for _ in range(8):
        pts = shape.surface()
        if hidden_by is not None:
            visible = hidden_by.sdf(pts[:, 0], pts[:, 1], pts[:, 2]) > 1.0
            pts = pts[visible] if visible.sum() > 10 else pts
        d = liver.at(pts)
        i = int(np.argmin(d))
        if abs(d[i] - gap) < 0.4:
            break
        direction = liver.gradient_at(pts[i : i + 1])[0]  # points away from the liver
        if in_plane:
            direction[2] = 0.0
            direction /= np.linalg.norm(direction) + 1e-9
        step = -direction * (d[i] - gap)
        if np.linalg.norm(total + step) > max_shift:
            break
        total += step
        shape = shape.moved(step)
    return shape


# contrast phases and how often each is drawn: most liver CT is portal venous; LiTS and the
# clinic also have unenhanced, late arterial and delayed scans
PHASES = (("native", 0.15), ("arterial", 0.2), ("portal", 0.5), ("delayed", 0.15))


@dataclass(frozen=True)
class Contrast:
    """CT numbers (HU) of one case in one contrast phase. The liver's is drawn first; most
    others follow it, so that intensity alone never separates the liver."""

    liver: float
    vessel: float  # intrahepatic vessels: darker without contrast, brighter in portal phase
    blood: float  # aorta and heart chambers
    ivc: float
    spleen: float
    kidney: float
    muscle: float
    fat: float
    wall: float  # stomach and bowel wall
    pancreas: float
    myocardium: float
    gallbladder: float
    lung: float
    phase: str = "portal"
    kidney_medulla: float = 0.0  # arterial phase: dark medulla inside the bright cortex

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Contrast:
        """A random phase and the CT numbers of every tissue in it (typical adult values).

        native: liver 45-70 HU, vessels and blood darker than the liver; arterial: liver barely
        enhanced (60-90), aorta 200-380, bright renal cortex and pancreas, spleen brighter than
        the liver; portal venous: liver 90-150, portal and hepatic veins 20-70 HU above it;
        delayed: everything converging, liver 70-105.
        """
        names, weights = zip(*PHASES)
        phase = str(rng.choice(names, p=np.asarray(weights) / sum(weights)))
        u = rng.uniform
        if phase == "native":
            liver = u(45, 70)
            vessel, blood, ivc = liver - u(10, 30), u(35, 50), u(35, 50)
            spleen, kidney, pancreas, myocardium = liver - u(3, 15), u(25, 40), u(30, 50), u(35, 50)
        elif phase == "arterial":
            liver = u(60, 90)
            vessel, blood, ivc = liver + u(-15, 35), u(200, 380), u(60, 130)
            spleen, kidney, pancreas, myocardium = liver + u(5, 60), u(150, 260), u(90, 140), u(80, 130)
        elif phase == "portal":
            liver = u(90, 150)
            vessel, blood, ivc = liver + u(20, 70), u(140, 230), liver + u(-15, 30)
            spleen, kidney, pancreas, myocardium = liver + u(-10, 20), u(150, 230), liver - u(0, 30), u(90, 140)
        else:
            liver = u(70, 105)
            vessel, blood, ivc = liver + u(-5, 20), u(90, 140), u(90, 130)
            spleen, kidney, pancreas, myocardium = liver + u(-10, 10), u(110, 200), liver - u(5, 30), u(70, 110)
        medulla = kidney - u(60, 120) if phase == "arterial" else kidney - u(0, 25)
        return cls(
            liver=liver, vessel=vessel, blood=blood, ivc=ivc, spleen=spleen, kidney=kidney,
            muscle=u(40, 60), fat=u(-115, -85), wall=max(30.0, liver + u(-35, 5)),
            pancreas=max(30.0, pancreas), myocardium=max(35.0, myocardium),
            gallbladder=u(0, 25), lung=u(-880, -820), phase=phase, kidney_medulla=medulla,
        )


@dataclass(frozen=True)
class Layout:
    """Every organ of one case in world mm (see :data:`ORGANS`)."""

    spleen: Ellipsoid
    stomach: Blob
    stomach_gas_y: float  # air-fluid level: gas above this y (patient supine, anterior is up)
    heart: Ellipsoid
    kidneys: tuple[Ellipsoid, Ellipsoid]
    ivc: Ellipsoid
    aorta: tuple[float, float, float]  # x, y, radius of a vertical tube
    gallbladder: Ellipsoid | None
    colon: tuple[Ellipsoid, ...]
    bowel: tuple[tuple[Ellipsoid, str], ...]
    pancreas: tuple[np.ndarray, float]  # polyline (n, 3) and radius
    vessels: tuple[tuple[np.ndarray, np.ndarray, float, float], ...]  # a, b, r_a, r_b
    portal: tuple[np.ndarray, np.ndarray, float]
    tumours: tuple[Ellipsoid, ...]
    gaps: dict[str, float]


def draw_layout(rng: np.random.Generator, body: Body, diaphragm: Diaphragm, liver: Field,
                ivc: Ellipsoid) -> Layout:
    """Place every organ around a liver (see the module docstring)."""
    lo, hi = liver.bounds()
    ext = hi - lo
    inner = body.inner_half_width()
    gaps = {name: float(rng.uniform(0.0, 3.0)) for name in ("spleen", "stomach", "kidney_right", "ivc")}

    ivc = place_near(ivc, liver, gaps["ivc"], in_plane=True, max_shift=40)
    aorta = (-rng.uniform(8, 18), body.spine_y + body.spine_r + rng.uniform(9, 14), rng.uniform(10, 14))

    # spleen: posterolateral on the left, long axis along the wall; slides to the liver's left tip
    angle = rng.uniform(3.3, 3.75)  # polar angle from +x (right): pi = left, 3pi/2 = posterior
    a = rng.uniform(22, 32)
    centre = np.array([np.cos(angle), np.sin(angle)]) * (inner - a - 5)
    spleen = Ellipsoid((centre[0], centre[1], hi[2] - rng.uniform(40, 60)),
                       (a, rng.uniform(45, 65), rng.uniform(45, 60)), rotation(yaw=angle - np.pi))
    spleen = place_near(spleen, liver, gaps["spleen"], max_shift=150)

    # stomach: fundus under the left dome, body curving anteriorly and down towards the midline
    gas = rng.uniform(0.15, 0.6)
    full = rng.uniform(0.8, 1.45)  # empty to distended after a meal (0.2-1.5 L)
    fundus = Ellipsoid((-inner * rng.uniform(0.35, 0.5), body.spine_y + rng.uniform(45, 65),
                        hi[2] - rng.uniform(35, 50)),
                       tuple(full * np.array([rng.uniform(32, 42), rng.uniform(32, 42), rng.uniform(35, 45)])))
    antrum = Ellipsoid((-inner * rng.uniform(0.1, 0.25), rng.uniform(20, 45), fundus.center[2] - rng.uniform(45, 65)),
                       tuple(full * np.array([rng.uniform(25, 35), rng.uniform(30, 40), rng.uniform(45, 60)])),
                       rotation(yaw=rng.uniform(-0.5, 0.5), roll=rng.uniform(-0.6, -0.2)))
    stomach = place_near(Blob((fundus, antrum), 25.0), liver, gaps["stomach"], max_shift=80, hidden_by=spleen)
    s_lo, s_hi = stomach.bounds()
    gas_y = s_hi[1] - gas * (s_hi[1] - s_lo[1])

    # heart: on the diaphragm's central tendon, apex to the left, anterior and down, and over a
    # part of the liver that reaches the diaphragm (only the diaphragm separates them there)
    hr = (rng.uniform(55, 70), rng.uniform(45, 55), rng.uniform(45, 58))
    hxy = np.array([-rng.uniform(15, 40), rng.uniform(10, 35)])
    contact = _diaphragm_contact(liver, diaphragm)
    if len(contact):
        nearest = contact[np.argmin(np.linalg.norm(contact - hxy, axis=1))]
        reach = 0.45 * min(hr[:2])
        offset = np.linalg.norm(nearest - hxy)
        if offset > reach:
            hxy = nearest + (hxy - nearest) * reach / offset
    hz = float(diaphragm.top(hxy[:1], hxy[1:])[0]) + hr[2] * 0.55
    heart = Ellipsoid((hxy[0], hxy[1], hz), hr, rotation(yaw=-rng.uniform(0.3, 0.7), pitch=rng.uniform(0.1, 0.4)))

    # kidneys: beside the spine, upper pole tilted medially; the right one rises into the liver's
    # hepatorenal impression, the left one is a little higher
    kidneys = []
    for side in (1, -1):
        kr = (rng.uniform(24, 30), rng.uniform(20, 26), rng.uniform(48, 60))
        kc = (side * (body.spine_r + rng.uniform(38, 50)), body.spine_y + rng.uniform(0, 15),
              lo[2] + ext[2] * 0.25 + (rng.uniform(10, 25) if side < 0 else -rng.uniform(0, 20)))
        tilt = rotation(yaw=side * rng.uniform(0.3, 0.6), roll=side * rng.uniform(0.1, 0.3))
        kidneys.append(Ellipsoid(kc, kr, tilt))
    kidneys[0] = place_near(kidneys[0], liver, gaps["kidney_right"], max_shift=70)

    gallbladder = None
    if rng.random() < 0.75:
        gb = Ellipsoid((hi[0] - ext[0] * rng.uniform(0.3, 0.45), lo[1] + ext[1] * rng.uniform(0.6, 0.8),
                        lo[2] + ext[2] * rng.uniform(0.15, 0.3)),
                       (rng.uniform(13, 19), rng.uniform(13, 19), rng.uniform(28, 42)),
                       rotation(roll=rng.uniform(0.3, 0.8)))
        gallbladder = place_near(gb, liver, rng.uniform(0, 1.5), max_shift=60)

    # colon: hepatic flexure under the right lobe, transverse colon in front, descending on the left
    flexure = Ellipsoid((inner * rng.uniform(0.45, 0.65), rng.uniform(-5, 30), lo[2] - 10),
                        (rng.uniform(20, 28), rng.uniform(20, 28), rng.uniform(35, 50)),
                        rotation(pitch=rng.uniform(0.3, 0.9)))
    flexure = place_near(flexure, liver, rng.uniform(0, 4), max_shift=50)
    colon = (flexure,
             Ellipsoid((rng.uniform(-30, 30), body.ant - body.wall[0] - 30, lo[2] - rng.uniform(15, 40)),
                       (rng.uniform(70, 110), 22, 22), rotation(yaw=rng.uniform(-0.2, 0.2))),
             Ellipsoid((-inner * 0.75, rng.uniform(-30, 0), lo[2] - 30), (22, 22, 90)))

    bowel = []
    kinds = ("gas", "fluid", "fluid", "stool", "contrast" if rng.random() < 0.3 else "fluid")
    for _ in range(int(rng.integers(40, 60))):
        r = rng.uniform(0.05, 0.8) ** 0.5 * inner * 0.85
        t = rng.uniform(0, 2 * np.pi)
        c = (r * np.cos(t), r * np.sin(t) * 0.8 + 10, rng.uniform(lo[2] - 150, lo[2] + ext[2] * 0.55))
        radii = tuple(rng.uniform(10, 22, size=3) * np.array([1.0, 1.0, rng.uniform(1, 2.5)]))
        bowel.append((Ellipsoid(c, radii, rotation(*rng.uniform(-1.5, 1.5, 3))), str(rng.choice(kinds))))

    # pancreas: head by the duodenum right of midline, body over the aorta, tail to the spleen
    pz = lo[2] + ext[2] * rng.uniform(0.1, 0.3)
    pancreas = (np.array([[ivc.center[0] + 10, ivc.center[1] + 25, pz - 25], [0.0, aorta[1] + 30, pz],
                          [spleen.center[0] * 0.7, spleen.center[1] + 35, pz + 15]]), rng.uniform(9, 13))

    vessels, portal = vessel_tree(rng, liver, ivc)
    return Layout(spleen, stomach, gas_y, heart, (kidneys[0], kidneys[1]), ivc, aorta, gallbladder, colon,
                  tuple(bowel), pancreas, vessels, portal, draw_tumours(rng, liver), gaps)


def _diaphragm_contact(liver: Field, diaphragm: Diaphragm) -> np.ndarray:
    """(x, y) of liver columns whose top lies against the diaphragm, (n, 2) mm."""
    inside = liver.values < 0
    has = inside.any(2)
    x, y, _ = liver.coords()
    top = liver.origin[2] + (inside.shape[2] - 1 - np.argmax(inside[:, :, ::-1], axis=2)) * liver.step
    sheet = diaphragm.top(x[:, :, 0], y[:, :, 0]) - diaphragm.thickness / 2
    ij = np.argwhere(has & (top >= sheet - 1.5 - liver.step))
    return liver.origin[:2] + ij * liver.step


def vessel_tree(rng: np.random.Generator, liver: Field, ivc: Ellipsoid):  # noqa: ANN202
    """Portal and hepatic veins as tapered tubes, placed by fractions of the liver's box.

    Every branch point is then pulled at least 8 mm inside the liver along the distance field,
    so the tree lies in the parenchyma whatever the liver's shape (procedural or real).
    """
    lo, hi = liver.bounds()
    ext = hi - lo

    def at(fx: float, fy: float, fz: float) -> np.ndarray:
        # fx from the right edge towards the left; jitter keeps trees from looking stamped
        p = np.array([hi[0] - fx * ext[0], lo[1] + fy * ext[1], lo[2] + fz * ext[2]]) + rng.normal(0, 6, 3)
        for _ in range(3):
            d = float(liver.at(p[None])[0])
            if d < -8.0:
                break
            p = p - liver.gradient_at(p[None])[0] * (d + 10.0)
        return p

    hilum = at(0.5, 0.5, 0.35)
    right, left = at(0.3, 0.45, 0.5), at(0.72, 0.62, 0.6)
    top = np.array([ivc.center[0], ivc.center[1] + 5, hi[2] - 18])
    tree = [(hilum, right, 7.5, 5.5), (hilum, left, 6.5, 4.5)]
    for fractions in ((0.12, 0.75, 0.45), (0.12, 0.2, 0.35), (0.25, 0.4, 0.12), (0.2, 0.55, 0.75)):
        tree.append((right, at(*fractions), 4.5, 1.8))
    for fractions in ((0.92, 0.7, 0.6), (0.72, 0.88, 0.45), (0.6, 0.8, 0.75)):
        tree.append((left, at(*fractions), 4.0, 1.8))
    for fractions in ((0.1, 0.45, 0.4), (0.45, 0.85, 0.35), (0.78, 0.75, 0.7)):  # hepatic veins to the IVC
        tree.append((top, at(*fractions), 6.0, 2.0))
    portal = (hilum, hilum + np.array([-25.0, -5.0, -45.0]), 7.5)
    return tuple(tree), portal


def draw_tumours(rng: np.random.Generator, liver: Field) -> tuple[Ellipsoid, ...]:
    """0-4 hypodense lesions wholly inside the liver (centres drawn among deep enough points)."""
    count = int(rng.choice(5, p=[0.2, 0.3, 0.2, 0.15, 0.15]))
    tumours = []
    for _ in range(count):
        r = float(np.clip(np.exp(rng.normal(np.log(11), 0.5)), 4, 35))
        for _ in range(6):
            candidates = np.argwhere(liver.values < -(r * 1.25 + 3))
            if len(candidates):
                break
            r *= 0.7
        else:
            continue
        centre = liver.origin + candidates[rng.integers(len(candidates))] * liver.step
        radii = tuple(r * rng.uniform(0.8, 1.2, 3))
        tumours.append(Ellipsoid(tuple(centre), radii, rotation(*rng.uniform(-np.pi, np.pi, 3))))
    return tuple(tumours)
