"""Geometry of the synthetic abdomen: shape primitives, the body, the diaphragm and the liver.

Everything is built in world millimetres, RAS+ (the NIfTI convention): +x points to the
patient's **right**, +y anterior, +z superior. The body axis is x = y = 0, and z = 0 is the top
of the right hemidiaphragm dome, so the liver hangs below z = 0 on the +x side.

Shapes are signed distance functions (SDFs, negative inside) evaluated with numpy broadcasting
on axis-aligned coordinate arrays, so no Python loop ever runs over voxels. Only the body and
the diaphragm are needed on the whole grid; organs are evaluated inside their own bounding box.
The liver is kept as a sampled SDF on a 2 mm grid (:class:`Field`): one representation for
procedural livers and for real masks, and cheap to query anywhere when neighbours are placed
at a chosen distance from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FIELD_STEP_MM = 2.0  # liver SDF grid: fine enough for 1.2-1.8 mm output voxels, EDT stays fast
EPS = 1e-6


# ------------------------------------------------------------------------------------ primitives


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix (rows = the shape's own axes in world) from angles in radians."""
    cz, sz = np.cos(yaw), np.sin(yaw)
    cy, sy = np.cos(pitch), np.sin(pitch)
    cx, sx = np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return (rz @ ry @ rx).T


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid given by centre (mm), semi-axes (mm) and a rotation (rows = its axes)."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    rot: np.ndarray | None = None

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Approximate signed distance (Quilez's bound k0 (k0 - 1) / k1), exact near the surface."""
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        if self.rot is not None:
            r = self.rot
            dx, dy, dz = (r[0, 0] * dx + r[0, 1] * dy + r[0, 2] * dz,
                          r[1, 0] * dx + r[1, 1] * dy + r[1, 2] * dz,
                          r[2, 0] * dx + r[2, 1] * dy + r[2, 2] * dz)
        a, b, c = self.radii
        k0 = np.sqrt((dx / a) ** 2 + (dy / b) ** 2 + (dz / c) ** 2)
        k1 = np.sqrt((dx / a**2) ** 2 + (dy / b**2) ** 2 + (dz / c**2) ** 2)
        return k0 * (k0 - 1.0) / (k1 + EPS)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (lo, hi) in world mm."""
        rot = np.eye(3) if self.rot is None else self.rot
        half = np.sqrt(((rot.T * np.asarray(self.radii)) ** 2).sum(axis=1))
        c = np.asarray(self.center)
        return c - half, c + half

    def surface(self, n: int = 400) -> np.ndarray:
        """About ``n`` points on the surface (Fibonacci sphere mapped onto the ellipsoid), (n, 3)."""
        k = np.arange(n) + 0.5
        phi = np.arccos(1 - 2 * k / n)
        theta = np.pi * (1 + 5**0.5) * k
        unit = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)
        local = unit * np.asarray(self.radii)
        rot = np.eye(3) if self.rot is None else self.rot
        return local @ rot + np.asarray(self.center)

    def moved(self, shift: np.ndarray) -> Ellipsoid:
        """The same ellipsoid translated by ``shift`` mm."""
        return Ellipsoid(tuple(np.asarray(self.center) + shift), self.radii, self.rot)  # type: ignore[arg-type]


def capsule_sdf(x: np.ndarray, y: np.ndarray, z: np.ndarray, a: np.ndarray, b: np.ndarray,
                ra: float, rb: float) -> np.ndarray:
    """Signed distance to a tube from ``a`` (radius ``ra``) to ``b`` (radius ``rb``), mm."""
    ab = np.asarray(b, dtype=np.float64) - a
    px, py, pz = x - a[0], y - a[1], z - a[2]
    h = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / float(ab @ ab), 0.0, 1.0)
    return np.sqrt((px - h * ab[0]) ** 2 + (py - h * ab[1]) ** 2 + (pz - h * ab[2]) ** 2) - (ra + h * (rb - ra))


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two SDFs; ``k`` (mm) is the width of the blend (polynomial smooth min)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth intersection (smooth maximum) of two SDFs."""
    return -smin(-a, -b, k)


# ------------------------------------------------------------------------------------ grids


@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel grid in canonical orientation (array axes along +x, +y, +z)."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]

    def axis(self, i: int) -> np.ndarray:
        """World coordinates (mm) of the voxel centres along array axis ``i``, float32."""
        return (self.origin[i] + self.spacing[i] * np.arange(self.shape[i])).astype(np.float32)

    def box(self, lo: np.ndarray, hi: np.ndarray):  # noqa: ANN201 (tuple of slices and arrays)
        """Index slices and broadcastable coordinates (x[:,None,None], ...) of a world box.

        Returns None when the box misses the grid.
        """
        slices, coords = [], []
        for i in range(3):
            a = int(np.floor((lo[i] - self.origin[i]) / self.spacing[i]))
            b = int(np.ceil((hi[i] - self.origin[i]) / self.spacing[i])) + 1
            a, b = max(a, 0), min(b, self.shape[i])
            if a >= b:
                return None
            slices.append(slice(a, b))
            c = self.axis(i)[a:b]
            coords.append(c.reshape([-1 if j == i else 1 for j in range(3)]))
        return tuple(slices), coords

    def affine(self) -> np.ndarray:
        """Voxel index -> world mm."""
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = self.origin
        return aff


@dataclass(frozen=True)
class Field:
    """A sampled signed distance function (mm, negative inside) on an isotropic grid."""

    origin: np.ndarray
    step: float
    values: np.ndarray

    @classmethod
    def from_mask(cls, mask: np.ndarray, origin: np.ndarray, step: float) -> Field:
        """Signed Euclidean distance of a boolean mask, the surface half a voxel out."""
        inside = ndimage.distance_transform_edt(mask)
        outside = ndimage.distance_transform_edt(~mask)
        values = (np.where(mask, 0.5 - inside, outside - 0.5) * step).astype(np.float32)
        return cls(np.asarray(origin, dtype=np.float64), float(step), values)

    def at(self, points: np.ndarray) -> np.ndarray:
        """SDF at world points (n, 3); off the grid: edge value plus the distance to the grid.

        The extension over-estimates far distances but points the right way, which is all that
        sliding a far-away organ towards the liver needs.
        """
        idx = (np.asarray(points) - self.origin) / self.step
        inside = np.clip(idx, 0, np.array(self.values.shape) - 1)
        beyond = np.linalg.norm(idx - inside, axis=1) * self.step
        return ndimage.map_coordinates(self.values, inside.T, order=1, mode="nearest") + beyond

    def gradient_at(self, points: np.ndarray) -> np.ndarray:
        """Unit direction in which the SDF grows fastest at each point, (n, 3) (central differences)."""
        points = np.asarray(points, dtype=np.float64)
        h = self.step
        g = np.stack([self.at(points + h * e) - self.at(points - h * e) for e in np.eye(3)], axis=1)
        return g / (np.linalg.norm(g, axis=1, keepdims=True) + EPS)

    def on_grid(self, grid: Grid, slices: tuple[slice, ...]) -> np.ndarray:
        """The SDF resampled (trilinear) onto a box of an output grid."""
        start = np.array([grid.origin[i] + s.start * grid.spacing[i] for i, s in enumerate(slices)])
        scale = np.asarray(grid.spacing) / self.step
        shape = tuple(s.stop - s.start for s in slices)
        return ndimage.affine_transform(self.values, scale, offset=(start - self.origin) / self.step,
                                        output_shape=shape, order=1, mode="nearest")

    def coords(self) -> list[np.ndarray]:
        """Broadcastable world coordinate axes (x[:,None,None], ...) of the grid points."""
        return [(self.origin[i] + self.step * np.arange(n)).astype(np.float32).reshape(
            [-1 if j == i else 1 for j in range(3)]) for i, n in enumerate(self.values.shape)]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World box (lo, hi) of the inside (SDF < 0)."""
        idx = np.argwhere(self.values < 0)
        return self.origin + idx.min(0) * self.step, self.origin + idx.max(0) * self.step

    def volume_ml(self) -> float:
        """Volume of the inside in millilitres."""
        return float(np.count_nonzero(self.values < 0)) * self.step**3 / 1000.0


def lattice(lo: np.ndarray, hi: np.ndarray, step: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Origin and broadcastable coordinate axes of an isotropic lattice covering a box."""
    n = np.ceil((np.asarray(hi) - lo) / step).astype(int) + 1
    axes = [(lo[i] + step * np.arange(n[i])).astype(np.float32).reshape([-1 if j == i else 1 for j in range(3)])
            for i in range(3)]
    return np.asarray(lo, dtype=np.float64), axes


# ------------------------------------------------------------------------------------ body


@dataclass(frozen=True)
class Body:
    """The trunk: a super-ellipse cross-section whose size drifts slowly along z.

    Attributes:
        half_width: lateral semi-axis of the skin outline at z = 0 (mm).
        ant, post: anterior and posterior semi-axes (mm); the back is flatter (lying on a table).
        power: super-ellipse exponent (2 = ellipse, larger = squarer).
        taper: relative change of size per 100 mm of z.
        fat: subcutaneous fat thickness (mm) anteriorly, laterally and posteriorly.
        muscle: abdominal wall muscle thickness (mm).
        para: depth of the paraspinal muscle mass behind the spine (mm); part of the back wall.
        spine_r: radius of the vertebral body (mm).
    """

    half_width: float
    ant: float
    post: float
    power: float
    taper: float
    fat: tuple[float, float, float]
    muscle: float
    para: float
    spine_r: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Body:
        """A random adult abdomen, thin to obese: a habitus h ~ N(0, 0.8) (clipped to -1.5..2.5,
        the heavy tail obese) grows the trunk by 18 mm per unit laterally and 12 mm front and back,
        and scales the subcutaneous fat by exp(0.55 h): 3-15 mm thin, up to 90 mm obese (skin
        width about 250-480 mm, AP depth 190-380 mm)."""
        h = float(np.clip(rng.normal(0.0, 0.8), -1.5, 2.5))
        half_width = rng.uniform(150, 195) + 18.0 * h
        ant, post = rng.uniform(125, 160) + 12.0 * h, rng.uniform(110, 140) + 12.0 * h
        grow = float(np.exp(0.55 * h))
        fat = tuple(min(90.0, f * grow) for f in (rng.uniform(8, 30), rng.uniform(8, 28), rng.uniform(6, 20)))
        return cls(half_width, ant, post, rng.uniform(2.2, 2.8), rng.uniform(-0.04, 0.04),
                   fat, rng.uniform(9, 15), rng.uniform(35, 50), rng.uniform(17, 22))  # type: ignore[arg-type]

    @property
    def spine_y(self) -> float:
        """y of the vertebral body centre: just in front of the paraspinal muscles."""
        return -self.post + self.wall[2] + self.para + 0.25 * self.spine_r

    @property
    def wall(self) -> tuple[float, float, float]:
        """Skin + fat + muscle thickness anteriorly, laterally, posteriorly (mm)."""
        return tuple(2.0 + f + self.muscle for f in self.fat)  # type: ignore[return-value]

    def inner_half_width(self) -> float:
        """Lateral semi-axis of the abdominal cavity at z = 0."""
        return self.half_width - self.wall[1]

    def scale(self, z: np.ndarray) -> np.ndarray:
        """Size factor along z (the trunk narrows or widens slowly)."""
        return (1.0 + self.taper * z / 100.0).astype(np.float32)

    def depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Depth below the skin along the ray from the body axis (mm; negative outside)."""
        b = np.where(y >= 0, self.ant, self.post).astype(np.float32)
        rho2d = ((np.abs(x) / self.half_width) ** self.power + (np.abs(y) / b) ** self.power) ** (1 / self.power)
        r = np.sqrt(x * x + y * y)
        # the super-ellipse norm is 1-homogeneous: the outline radius along the ray is r / rho
        return r * (self.scale(z) / np.maximum(rho2d, EPS) - 1.0)

    def wall_depth(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Thickness of skin + fat + muscle at each in-plane position, by angle (mm)."""
        ant, lat, post = self.wall
        theta = np.arctan2(y, x)  # 0 = patient right, pi/2 = anterior
        front = np.where(np.sin(theta) >= 0, ant, post)
        wall = lat + (front - lat) * np.abs(np.sin(theta)) ** 1.5
        # the paraspinal muscles thicken the back wall on both sides of the spine
        return wall + np.where(y < 0, self.para * np.exp(-((x / 55.0) ** 4)), 0.0)

    def cavity_sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Approximate SDF of the abdominal/thoracic cavity inside the muscle wall."""
        return self.wall_depth(x, y) - self.depth(x, y, z)


@dataclass(frozen=True)
class Diaphragm:
    """The diaphragm as a muscle sheet around the height map z = top(x, y): two domes, right higher.

    Below the sheet is the abdomen, above it the chest. ``lift`` drapes the sheet over a real
    liver whose top does not follow the default domes.
    """

    right: tuple[float, float, float]  # dome peak x, y and curvature radius (mm)
    left: tuple[float, float, float, float]  # peak x, y, curvature radius, peak z
    thickness: float
    back: float = 110.0  # curvature radius of the extra fall towards the back (mm): the
    # posterior costophrenic recesses reach far lower than the domes, behind the liver
    lift: np.ndarray | None = None  # optional height map raising it over a real liver's top
    lift_origin: np.ndarray | None = None
    lift_step: float = FIELD_STEP_MM

    def top(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """z (mm) of the middle of the diaphragm sheet above each (x, y)."""
        xr, yr, rr = self.right
        xl, yl, rl, zl = self.left
        dome_r = -((x - xr) ** 2 + (y - yr) ** 2) / (2 * rr)
        dome_l = zl - ((x - xl) ** 2 + (y - yl) ** 2) / (2 * rl)
        z = smax(dome_r, dome_l, 30.0) - np.maximum(yr - y, 0.0) ** 2 / (2 * self.back)
        if self.lift is not None:
            xx, yy = np.broadcast_arrays(x, y)
            idx = np.stack([(xx - self.lift_origin[0]) / self.lift_step, (yy - self.lift_origin[1]) / self.lift_step])
            lift = ndimage.map_coordinates(self.lift, idx.reshape(2, -1), order=1, mode="nearest").reshape(xx.shape)
            z = smax(z, lift, 15.0)
        return z.astype(np.float32)


def lift_for_liver(field: Field, thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """Height map (x, y) of a diaphragm's mid-sheet draped just over a liver's top surface."""
    inside = field.values < 0
    nz = inside.shape[2]
    has = inside.any(2)
    top = field.origin[2] + (nz - 1 - np.argmax(inside[:, :, ::-1], axis=2)) * field.step + thickness / 2 + 0.5
    top = np.where(has, top, top[has].min() - 60.0)  # off the footprint: well below, the domes rule
    top = ndimage.grey_dilation(top, size=3)
    # a smooth sheet, never below the liver itself
    return np.maximum(ndimage.gaussian_filter(top, 2.0), top).astype(np.float32), field.origin[:2].copy()
