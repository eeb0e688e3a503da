"""A real multi-organ label map as phantom anatomy: structure groups, elastic variation, organ
shapes as distance fields, and a body and diaphragm fitted around them.

Used by :mod:`livseg.phantom.real_anatomy`. The label map (TotalSegmentator's 117 structures,
or any map with a value -> name table) is reduced to the groups the renderer paints
(:data:`GROUPS`), put in RAS order, varied by a random affine and a smooth random displacement
(:func:`deform`), and each group becomes a :class:`MaskShape` (a signed distance field with the
``sdf``/``bounds``/``moved`` interface of the generator's primitives, so the same painter
draws it). A label map has no skin or fat, so the trunk is the generator's :class:`Body`, its
size along z fitted so that every labelled structure lies inside the muscle wall
(:func:`fit_body`); the diaphragm is the sheet between the abdominal organs and the lungs and
heart, column by column (:func:`fit_diaphragm`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import nibabel as nib
import numpy as np
from scipy import ndimage

from livseg.phantom.anatomy import Body, Diaphragm, Field

__all__ = ["GROUPS", "MapDiaphragm", "MaskShape", "ProfiledBody", "cropped_in_plane", "deform", "fit_body", "fit_diaphragm",
           "group_map", "to_ras"]

# what the renderer paints, and which structures (names, or name prefixes ending in "_") make it up
GROUPS: dict[str, tuple[str, ...]] = {
    "liver": ("liver",), "spleen": ("spleen",), "stomach": ("stomach",), "gallbladder": ("gallbladder",),
    "kidney_right": ("kidney_right", "kidney_cyst_right"), "kidney_left": ("kidney_left", "kidney_cyst_left"),
    "pancreas": ("pancreas",), "bowel": ("small_bowel", "duodenum"), "colon": ("colon",),
    "heart": ("heart", "atrial_appendage_left"), "aorta": ("aorta",), "ivc": ("inferior_vena_cava",),
    "portal_vein": ("portal_vein_and_splenic_vein",),
    "arteries": ("iliac_artery_", "brachiocephalic_trunk", "subclavian_artery_", "common_carotid_artery_",
                 "pulmonary_vein"),
    "veins": ("iliac_vena_", "brachiocephalic_vein_", "superior_vena_cava"),
    "lung": ("lung_",),
    "bone": ("vertebrae_", "rib_", "sacrum", "hip_", "femur_", "sternum"),
    "limb_bone": ("scapula_", "clavicula_", "humerus_", "skull"),  # may lie outside the trunk: not fitted
    "cartilage": ("costal_cartilages",),
    "muscle": ("autochthon_", "iliopsoas_", "gluteus_"),
    "soft": ("adrenal_gland_", "prostate", "thyroid_gland", "esophagus", "spinal_cord"),
    "bladder": ("urinary_bladder",),
    "air": ("trachea",),
}
GROUP_IDS = {name: k for k, name in enumerate(GROUPS, start=1)}
ABDOMINAL = ("liver", "spleen", "stomach", "gallbladder", "kidney_right", "kidney_left", "pancreas", "bowel", "colon")


def group_map(labels: np.ndarray, names: dict[int, str]) -> np.ndarray:
    """A structure label map as group ids (``GROUP_IDS``; 0 = nothing the renderer paints)."""
    lut = np.zeros(max(256, int(labels.max()) + 1), dtype=np.uint8)
    for value, name in names.items():
        for group, members in GROUPS.items():
            if any(name == m or (m.endswith("_") and name.startswith(m)) for m in members):
                lut[value] = GROUP_IDS[group]
    return lut[labels]


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The array re-indexed so its axes run along +x, +y, +z (exact), and the matching affine."""
    ornt = nib.orientations.io_orientation(affine)
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return array, affine
    out = nib.orientations.apply_orientation(array, ornt)
    return np.ascontiguousarray(out), affine @ nib.orientations.inv_ornt_aff(ornt, array.shape)


def deform(groups: np.ndarray, spacing: float, rng: np.random.Generator, *, amplitude_mm: float,
           out_step: float | None = None, scale: float = 0.08, rotate_deg: tuple[float, float, float] = (4.0, 4.0, 8.0),
           control_mm: float = 50.0) -> np.ndarray:
    """The label map moved by a random affine and a smooth random displacement (nearest neighbour).

    The output voxel at world point p takes the label at ``M (p - c) + c + u(p)``: ``M`` a
    rotation (up to ``rotate_deg`` about x, y, z) times a per-axis scaling in ``[1 - scale, 1 +
    scale]`` about the grid centre ``c``, ``u`` a displacement drawn on a ``control_mm`` lattice
    (Gaussian, sd ``amplitude_mm``) and interpolated cubically, so organs bend and slide against
    each other by a few millimetres while their contacts stay anatomical. The output covers the
    same box at ``out_step`` mm (default: ``spacing``), voxel centres aligned at the first corner.
    """
    out_step = float(out_step or spacing)
    extent = np.asarray(groups.shape) * spacing
    shape = np.maximum(np.round(extent / out_step).astype(int), 1)
    angles = np.radians(rng.uniform(-1, 1, 3) * np.asarray(rotate_deg))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rot = (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
           @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
    matrix = rot @ np.diag(rng.uniform(1 - scale, 1 + scale, 3))
    centre = (shape - 1) / 2 * out_step  # mm from the first voxel centre
    coarse = np.maximum(np.ceil(extent / control_mm).astype(int) + 1, 2)
    points = np.indices(tuple(shape), dtype=np.float32).reshape(3, -1) * np.float32(out_step)
    moved = (matrix @ (points - centre[:, None]) + centre[:, None]).astype(np.float32)
    for axis in range(3):
        lattice = rng.normal(0.0, amplitude_mm, size=tuple(coarse)).astype(np.float32)
        moved[axis] += ndimage.zoom(lattice, shape / coarse, order=3, grid_mode=True, mode="nearest")[
            : shape[0], : shape[1], : shape[2]].reshape(-1)
    moved /= np.float32(spacing)  # mm -> source voxel index
    out = ndimage.map_coordinates(groups, moved, order=0, mode="constant", cval=0)
    return out.reshape(tuple(shape))


@dataclass(frozen=True)
class MaskShape:
    """A labelled structure as a shape the phantom painter draws: its signed distance field
    (mm, negative inside), with the centre and half-extents the kidney painter asks for."""

    field: Field

    @classmethod
    def from_mask(cls, mask: np.ndarray, origin: np.ndarray, step: float, margin_mm: float = 12.0,
                  box: tuple[slice, ...] | None = None) -> MaskShape:
        """The distance field of a boolean mask on an isotropic grid, cropped to its box (``box``:
        the mask's bounding slices when known, e.g. from ``ndimage.find_objects``) plus a margin."""
        if box is None:
            idx = np.argwhere(mask)
            box = tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(0), idx.max(0)))
        pad = int(np.ceil(margin_mm / step))
        lo = np.array([b.start for b in box]) - pad
        hi = np.array([b.stop for b in box]) + pad
        crop = np.zeros(hi - lo, dtype=bool)
        src = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, mask.shape))
        dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, lo))
        crop[dst] = mask[src]
        return cls(Field.from_mask(crop, np.asarray(origin) + lo * step, step))

    @property
    def center(self) -> np.ndarray:
        """Centroid of the inside (world mm)."""
        idx = np.argwhere(self.field.values < 0)
        return self.field.origin + idx.mean(0) * self.field.step

    @property
    def radii(self) -> np.ndarray:
        """Half the extent of the inside along x, y, z (mm)."""
        lo, hi = self.field.bounds()
        return (hi - lo) / 2 + self.field.step / 2

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (lo, hi) of the inside, world mm."""
        return self.field.bounds()

    def moved(self, shift: np.ndarray) -> MaskShape:
        """The same shape translated by ``shift`` mm."""
        return MaskShape(Field(self.field.origin + np.asarray(shift), self.field.step, self.field.values))

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed distance at broadcastable coordinates (linear interpolation; edge value beyond
        the field, which lies outside the shape by at least the crop margin)."""
        f = self.field
        axes = [np.asarray(a, dtype=np.float64) for a in (x, y, z)]
        shape = np.broadcast_shapes(*(a.shape for a in axes))
        if all(a.ndim == 3 and a.size == a.shape[i] for i, a in enumerate(axes)):
            # axis-aligned sampling (the painter's boxes): separable, one affine_transform
            lines = [a.reshape(-1) for a in axes]
            if all(len(v) < 2 or np.allclose(np.diff(v), v[1] - v[0], atol=1e-3) for v in lines):
                start = np.array([(v[0] - o) / f.step for v, o in zip(lines, f.origin)])
                steps = np.array([(v[1] - v[0]) / f.step if len(v) > 1 else 1.0 for v in lines])
                return ndimage.affine_transform(f.values, steps, offset=start, output_shape=shape, order=1,
                                                mode="nearest")
        idx = [np.broadcast_to((a - o) / f.step, shape).reshape(-1) for a, o in zip(axes, f.origin)]
        return ndimage.map_coordinates(f.values, idx, order=1, mode="nearest").reshape(shape)


@dataclass(frozen=True)
class ProfiledBody(Body):
    """The generator's trunk with a size factor that follows a measured profile along z."""

    profile_z: tuple[float, ...] = ()
    profile_scale: tuple[float, ...] = ()

    def scale(self, z: np.ndarray) -> np.ndarray:
        """Size factor at z: the fitted profile (constant beyond its ends)."""
        return np.interp(z, self.profile_z, self.profile_scale).astype(np.float32)


def fit_body(body: Body, groups: np.ndarray, coords: tuple[np.ndarray, np.ndarray, np.ndarray],
             margin_mm: float = 3.0) -> ProfiledBody:
    """A trunk around real anatomy: the drawn body's wall, shape and habitus, sized per slice.

    Args:
        body: a drawn :class:`Body` (fat, muscle, super-ellipse power: the habitus).
        groups: the group map; every labelled voxel but the shoulder girdle, arms and skull
            (``limb_bone``) must lie inside the muscle wall.
        coords: world x, y, z axes (1-D, mm) of the group map, x = y = 0 on the trunk's axis.
        margin_mm: room left between them and the wall.

    Returns:
        The body, its outline at each z the smallest that holds every such voxel of that
        slice ``margin_mm`` inside the wall (smoothed along z, never below 0.55 of the base size).
    """
    x, y, z = coords
    idx = np.argwhere((groups > 0) & (groups != GROUP_IDS["limb_bone"]))
    px, py, pz = x[idx[:, 0]], y[idx[:, 1]], idx[:, 2]
    half = max(float(np.abs(px).max()) + body.wall[1], 80.0)
    ant, post = max(float(py.max()) + body.wall[0], 60.0), max(float(-py.min()) + body.wall[2], 60.0)
    base = replace(body, half_width=half, ant=ant, post=post, taper=0.0)
    r = np.maximum(np.hypot(px, py), 1e-3)
    b = np.where(py >= 0, ant, post)
    rho = ((np.abs(px) / half) ** base.power + (np.abs(py) / b) ** base.power) ** (1 / base.power)
    outline = r / np.maximum(rho, 1e-6)  # the skin's distance from the axis along each voxel's ray at scale 1
    need = (r + base.wall_depth(px, py) + margin_mm) / outline
    per_slice = np.full(groups.shape[2], np.nan)
    np.fmax.at(per_slice, pz, need)
    known = np.flatnonzero(np.isfinite(per_slice))
    per_slice = np.interp(np.arange(len(per_slice)), known, per_slice[known])
    smooth = ndimage.gaussian_filter1d(ndimage.maximum_filter1d(per_slice, 9), 4.0)
    profile = np.maximum(np.maximum(smooth, per_slice), 0.55)
    return ProfiledBody(**{f: getattr(base, f) for f in Body.__dataclass_fields__},
                        profile_z=tuple(float(v) for v in z), profile_scale=tuple(float(v) for v in profile))


@dataclass(frozen=True)
class MapDiaphragm(Diaphragm):
    """A diaphragm whose mid-sheet is a measured height map (no domes)."""

    height: np.ndarray | None = field(default=None, repr=False)
    height_origin: np.ndarray | None = None
    height_step: float = 1.5

    def top(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """z (mm) of the sheet's middle above each (x, y), bilinear in the height map."""
        xx, yy = np.broadcast_arrays(x, y)
        idx = np.stack([(xx - self.height_origin[0]) / self.height_step, (yy - self.height_origin[1]) / self.height_step])
        return ndimage.map_coordinates(self.height, idx.reshape(2, -1), order=1, mode="nearest").reshape(
            xx.shape).astype(np.float32)


def fit_diaphragm(groups: np.ndarray, coords: tuple[np.ndarray, np.ndarray, np.ndarray], step: float,
                  thickness: float) -> MapDiaphragm:
    """The sheet between the abdominal organs below and the lungs and heart above, per column.

    The sheet is measured where a column holds lung or heart: midway between their lowest voxel
    and the highest abdominal organ below it, or just under them. Every other column takes the
    nearest measured column's height (the map has no lung or heart at all: the sheet lies above
    it, all abdomen); the map is smoothed, and never lies lower than just above the highest
    abdominal organ of its column.
    """
    x, y, z = coords
    abdominal = np.isin(groups, [GROUP_IDS[g] for g in ABDOMINAL])
    chest = np.isin(groups, [GROUP_IDS["lung"], GROUP_IDS["heart"]])
    nz = groups.shape[2]
    has_abd, has_chest = abdominal.any(2), chest.any(2)
    abd_top = z[0] + (nz - 1 - np.argmax(abdominal[:, :, ::-1], axis=2)) * step
    chest_bottom = z[0] + np.argmax(chest, axis=2) * step
    floor = np.where(has_abd, abd_top + thickness / 2 + 1.0, -np.inf)
    if not has_chest.any():
        sheet = np.full(has_abd.shape, z[-1] + 50.0)
    else:
        sheet = np.full(has_abd.shape, np.nan)
        sheet[has_chest] = chest_bottom[has_chest] - thickness / 2 - 1.0
        both = has_abd & has_chest
        sheet[both] = np.maximum((abd_top[both] + chest_bottom[both]) / 2, floor[both])
        nearest = ndimage.distance_transform_edt(~has_chest, return_distances=False, return_indices=True)
        sheet = sheet[tuple(nearest)]
    sheet = np.maximum(ndimage.gaussian_filter(sheet, 3.0), floor)
    return MapDiaphragm(right=(0.0, 0.0, 1.0), left=(0.0, 0.0, 1.0, 0.0), thickness=thickness,
                        height=sheet.astype(np.float32), height_origin=np.array([x[0], y[0]]), height_step=step)


def cropped_in_plane(groups: np.ndarray, share: float = 0.01) -> bool:
    """Whether a label map was cut in-plane (a scan with a small field of view): more than
    ``share`` of an x or y border face is labelled."""
    faces = (groups[0], groups[-1], groups[:, 0], groups[:, -1])
    return any(np.count_nonzero(f) > share * f.size for f in faces)
