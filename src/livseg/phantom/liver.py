"""The phantom's liver: a procedural shape, or a real liver mask moved into the phantom.

Both end as a :class:`~livseg.phantom.anatomy.Field` (signed distance on a 2 mm grid, world mm,
RAS+: +x = patient right) whose right lateral edge touches the right abdominal wall and whose
top sits under the right hemidiaphragm dome (z = 0).

The procedural liver is a smooth union of ellipsoids in a liver-local frame: a large right lobe
under the dome, an inferior right-lobe tip of random size, a wedge-shaped left lobe that thins
towards the patient's left, and a caudate lobe wrapped around the inferior vena cava. A smooth
subtraction makes the visceral (posterior-inferior-medial) surface concave, a few random
low-frequency waves vary the outline, and the shape is clipped by the abdominal wall and the
diaphragm so it conforms to them as a real liver does. Its size is then scaled to a target volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from livseg.phantom.anatomy import (
    FIELD_STEP_MM,
    Body,
    Diaphragm,
    Ellipsoid,
    Field,
    lattice,
    rotation,
    smax,
    smin,
)

FIELD_MARGIN_MM = 24.0  # liver field reaches this far beyond the liver (gap queries, blur)
VOLUME_ML_RANGE = (1000.0, 2500.0)  # stated range of phantom liver volumes
VOLUME_MEDIAN_ML = 1630.0  # median of the 112 LiTS training livers (benchmarks/bench_phantom_realism.py)


@dataclass(frozen=True)
class LiverDesign:
    """Random parameters of one procedural liver, in mm of the liver-local frame."""

    right: Ellipsoid
    tip: Ellipsoid
    left: Ellipsoid
    taper: float
    caudate: Ellipsoid
    hollow: Ellipsoid
    waves: np.ndarray  # (k, 5): wave vector x, y, z (rad/mm), phase, amplitude (mm)

    @classmethod
    def draw(cls, rng: np.random.Generator, ivc_local: tuple[float, float]) -> LiverDesign:
        """Draw a liver; ``ivc_local`` is the IVC's (x, y) in the local frame (for the caudate)."""
        a, b, c = rng.uniform(55, 70), rng.uniform(105, 130), rng.uniform(80, 118)
        yr = rng.uniform(-25, -5)
        # long axis swung so the anterior part reaches medially and the posterior part stays
        # lateral (the kidney and spine take that room): an oblique medial border, as in CT
        right = Ellipsoid((-0.85 * a, yr, -0.72 * c), (a, b, c),
                          rotation(yaw=rng.uniform(0.15, 0.4), roll=rng.uniform(-0.15, 0.15)))
        f = rng.uniform(0.3, 1.1)  # size of the inferior tip drives the cranio-caudal extent
        tip = Ellipsoid((-0.55 * a + rng.uniform(-10, 15), yr + rng.uniform(0, 25), -c * (1.2 + 0.3 * f)),
                        (a * 0.55 * f + 15, b * 0.5 * f + 15, c * 0.6 * f + 10))
        al, bl, cl = rng.uniform(90, 140), rng.uniform(32, 50), rng.uniform(26, 40)
        left = Ellipsoid((-1.45 * a - 0.5 * al, yr + rng.uniform(22, 45), -c * rng.uniform(0.32, 0.52)),
                         (al, bl, cl), rotation(yaw=rng.uniform(-0.25, 0.15), pitch=rng.uniform(-0.2, 0.1)))
        caudate = Ellipsoid((ivc_local[0] + 6, ivc_local[1] + 16, -c * 0.55), (24, 20, 34))
        hollow = Ellipsoid((-a * rng.uniform(1.1, 1.4), yr - b * rng.uniform(0.6, 0.9), -c * rng.uniform(1.6, 1.9)),
                           (rng.uniform(45, 65),) * 3)
        k = 4
        direction = rng.normal(size=(k, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        wavelength = rng.uniform(70, 160, size=(k, 1))
        waves = np.hstack([direction * 2 * np.pi / wavelength, rng.uniform(0, 2 * np.pi, (k, 1)),
                           rng.uniform(2, 6, (k, 1))])
        return cls(right, tip, left, rng.uniform(0.3, 0.55), caudate, hollow, waves)

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """SDF of the unclipped liver in its local frame (origin at the right upper corner)."""
        d = smin(self.right.sdf(x, y, z), self.tip.sdf(x, y, z), 25.0)
        # wedge: the left lobe gets thinner towards the patient's left (more negative x)
        cx, cy, cz = self.left.center
        t = 1.0 - self.taper * np.clip((cx - x) / self.left.radii[0], 0.0, 1.2)
        wedge = self.left.sdf(x, cy + (y - cy) / t, cz + (z - cz) / t) * t
        d = smin(d, wedge, 22.0)
        d = smin(d, self.caudate.sdf(x, y, z), 12.0)
        d = smax(d, -self.hollow.sdf(x, y, z), 14.0)
        for kx, ky, kz, phase, amp in self.waves:
            d = d + amp * np.sin(kx * x + ky * y + kz * z + phase)
        return d


def _clip(d: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray, body: Body, diaphragm: Diaphragm,
          ivc: Ellipsoid | None, ivc_gap: float) -> np.ndarray:
    """Keep a liver SDF inside the abdominal wall, under the diaphragm and off the IVC."""
    d = np.maximum(d, body.cavity_sdf(x, y, z) + 1.0)
    d = np.maximum(d, z - (diaphragm.top(x, y) - diaphragm.thickness / 2 - 0.5))
    if ivc is not None:
        d = np.maximum(d, -(ivc.sdf(x, y, z) - ivc_gap))
    return d


def procedural_liver(rng: np.random.Generator, *, body: Body, diaphragm: Diaphragm, anchor: np.ndarray,
                     ivc: Ellipsoid, ivc_gap: float, target_ml: float) -> Field:
    """A random liver scaled (about ``anchor``) to ``target_ml`` and clipped to the body.

    Args:
        rng: random generator of the case.
        body, diaphragm: the trunk and the dome the liver must stay inside and under.
        anchor: world point (mm) of the liver's right upper corner; scaling keeps it fixed.
        ivc: the inferior vena cava, carved out of the liver with a ``ivc_gap`` mm margin.
        target_ml: wanted volume; reached within a few percent.

    Returns:
        The liver as a signed distance field on a 2 mm grid.
    """
    design = LiverDesign.draw(rng, (ivc.center[0] - anchor[0], ivc.center[1] - anchor[1]))

    def evaluate(scale: float, step: float, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        origin, (x, y, z) = lattice(lo, hi, step)
        d = design.sdf((x - anchor[0]) / scale, (y - anchor[1]) / scale, (z - anchor[2]) / scale) * scale
        return _clip(d, x, y, z, body, diaphragm, ivc, ivc_gap) < 0, origin

    scale = 1.0
    for attempt in range(7):  # clipping makes volume grow slower than scale**3: iterate
        coarse, origin = evaluate(scale, 4.0, anchor + scale * np.array([-330.0, -150.0, -270.0]),
                                  anchor + scale * np.array([20.0, 150.0, 20.0]))
        volume = np.count_nonzero(coarse) * 64.0 / 1000.0
        if abs(volume / target_ml - 1.0) < 0.02 or attempt == 6:
            break  # keep ``coarse`` and ``scale`` in step: its box bounds the fine grid below
        scale *= (target_ml / max(volume, 1.0)) ** (1 / 2.6)
    idx = np.argwhere(coarse)
    # the fine grid only around the liver, with room for neighbours' distance queries
    mask, origin = evaluate(scale, FIELD_STEP_MM, origin + idx.min(0) * 4.0 - FIELD_MARGIN_MM,
                            origin + idx.max(0) * 4.0 + FIELD_MARGIN_MM)
    return Field.from_mask(_largest_component(mask), origin, FIELD_STEP_MM)


def draw_volume_ml(rng: np.random.Generator) -> float:
    """A liver volume: log-normal around the LiTS median, kept inside the stated range."""
    low, high = VOLUME_ML_RANGE
    return float(np.clip(VOLUME_MEDIAN_ML * np.exp(rng.normal(0.0, 0.25)), low * 1.05, high * 0.97))


# ------------------------------------------------------------------------------- real masks


def mask_field(mask: np.ndarray, affine: np.ndarray) -> tuple[Field, bool]:
    """A real liver mask as a signed distance field in world mm, on the patient's right.

    LiTS headers are not reliable about left and right (cases 28-47 put the liver on the
    patient's left). Scans are centred on the patient, so a liver whose centroid lies on the
    left of the field-of-view centre is mirrored about that centre: left-right mirroring keeps
    a plausible liver, a liver on the wrong side never is.

    Args:
        mask: 3D array, nonzero = liver.
        affine: its voxel -> world (RAS mm) affine.

    Returns:
        (field, mirrored): the liver in world coordinates of its own scan, and whether it was
        mirrored.
    """
    inside = np.asarray(mask) != 0
    # bounding box and centroid from per-axis marginals: argwhere on a 512 x 512 x N mask is slow
    marginals = [inside.sum(axis=tuple(j for j in range(3) if j != i), dtype=np.int64) for i in range(3)]
    first = np.array([np.flatnonzero(m)[0] for m in marginals])
    last = np.array([np.flatnonzero(m)[-1] + 1 for m in marginals])
    mean_idx = np.array([(np.arange(m.size) * m).sum() / m.sum() for m in marginals])
    crop = inside[tuple(slice(a, b) for a, b in zip(first, last))].astype(np.float32)
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ first + affine[:3, 3]
    centre_x = (affine[:3, :3] @ ((np.array(inside.shape) - 1) / 2) + affine[:3, 3])[0]
    centroid_x = (affine[:3, :3] @ mean_idx + affine[:3, 3])[0]
    mirrored = bool(centroid_x < centre_x)
    corners = np.array([[i, j, k] for i in (0, crop.shape[0] - 1) for j in (0, crop.shape[1] - 1)
                        for k in (0, crop.shape[2] - 1)])
    world = corners @ crop_affine[:3, :3].T + crop_affine[:3, 3]
    flip = np.diag([-1.0 if mirrored else 1.0, 1.0, 1.0])
    world = world @ flip.T
    origin, axes = lattice(world.min(0) - FIELD_MARGIN_MM, world.max(0) + FIELD_MARGIN_MM, FIELD_STEP_MM)
    shape = tuple(a.size for a in axes)
    # field index -> world (mirrored frame) -> source world -> crop index, as one affine
    to_world = np.diag([FIELD_STEP_MM] * 3 + [1.0])
    to_world[:3, 3] = origin
    mirror = np.eye(4)
    mirror[:3, :3] = flip
    to_source = np.linalg.inv(crop_affine) @ mirror @ to_world
    sampled = ndimage.affine_transform(crop, to_source[:3, :3], offset=to_source[:3, 3], output_shape=shape,
                                       order=1, mode="constant", cval=0.0)
    return Field.from_mask(_largest_component(sampled > 0.5), origin, FIELD_STEP_MM), mirrored


def place_field(field: Field, *, right_x: float, top_z: float, centre_y: float) -> Field:
    """The same liver translated so its right edge, top and AP centre land where asked."""
    lo, hi = field.bounds()
    shift = np.array([right_x - hi[0], centre_y - (lo[1] + hi[1]) / 2, top_z - hi[2]])
    return Field(field.origin + shift, field.step, field.values)


def clip_field(field: Field, body: Body) -> tuple[Field, float]:
    """A placed real liver cut to the abdominal cavity; returns it and the fraction cut off."""
    x, y, z = field.coords()
    cavity = body.cavity_sdf(x, y, z)
    inside = field.values < 0
    lost = 1.0 - np.count_nonzero(inside & (cavity < 0)) / max(np.count_nonzero(inside), 1)
    if lost == 0.0:
        return field, 0.0
    # the intersection of two SDFs is their maximum: no new distance transform needed
    return Field(field.origin, field.step, np.maximum(field.values, cavity).astype(np.float32)), float(lost)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component (clipping can leave crumbs)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))
