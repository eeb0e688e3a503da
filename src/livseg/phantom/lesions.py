"""Large lesions at the liver's margin: the tumours, cysts and necrotic masses a liver model misses.

A model trained on livers with small lesions well inside them learns "liver = liver-coloured
tissue"; a 300-700 mL hypodense tumour that bulges out of the liver's contour then gets left
out, although LiTS (and every clinical use) counts tumour as liver. Here, in about a third of
the cases, one or two large lesions (radius 20-60 mm, 35-900 mL) are centred near the liver's
surface, so that part of each lies outside the original outline. They are merged into the
liver's distance field (:func:`merge_lesions`), so the neighbours are placed around the bulge
and it is labelled tumour (2) where it lies: counted as liver by stage 1.

Kinds (:func:`paint_lesion`): ``solid`` (hypodense, heterogeneous, sometimes an enhancing
rim; hyperdense in the arterial phase, as hepatocellular carcinoma), ``necrotic`` (a solid rim
around a near-water centre) and ``cyst`` (water, sharp, thin wall).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livseg.phantom.anatomy import Body, Diaphragm, Ellipsoid, Field, lattice, rotation

__all__ = ["MarginalLesion", "bubbles", "draw_marginal_lesions", "merge_lesions", "paint_lesion", "texture"]

KINDS = (("solid", 0.45), ("necrotic", 0.35), ("cyst", 0.2))
P_ANY = 0.35  # share of cases with at least one large marginal lesion
P_SECOND = 0.25  # of those, share with a second one


@dataclass(frozen=True)
class MarginalLesion:
    """One large lesion: its ellipsoid (world mm), kind and wall/rim thickness (mm)."""

    shape: Ellipsoid
    kind: str
    rim_mm: float


def draw_marginal_lesions(rng: np.random.Generator, liver: Field) -> tuple[MarginalLesion, ...]:
    """0-2 large lesions centred within a fraction of their radius of the liver's surface.

    The centre lies on the surface moved inwards by -0.1 to 0.6 radii, so between about a
    third and the whole of each lesion is outside the liver's outline before merging.
    """
    if rng.random() >= P_ANY:
        return ()
    count = 2 if rng.random() < P_SECOND else 1
    surface = np.argwhere(np.abs(liver.values) < liver.step * 0.75)
    if not len(surface):
        return ()
    names, weights = zip(*KINDS)
    lesions = []
    for _ in range(count):
        r = float(rng.uniform(20, 60))
        point = liver.origin + surface[rng.integers(len(surface))] * liver.step
        inward = -liver.gradient_at(point[None])[0]
        centre = point + inward * r * rng.uniform(-0.1, 0.6)
        radii = tuple(r * rng.uniform(0.8, 1.15, 3))
        kind = str(rng.choice(names, p=np.asarray(weights) / sum(weights)))
        rim = float(rng.uniform(1.0, 2.0) if kind == "cyst" else rng.uniform(3.0, 10.0))
        lesions.append(MarginalLesion(Ellipsoid(tuple(centre), radii, rotation(*rng.uniform(-np.pi, np.pi, 3))),
                                      kind, rim))
    return tuple(lesions)


def merge_lesions(liver: Field, lesions: tuple[MarginalLesion, ...], body: Body,
                  diaphragm: Diaphragm | None) -> Field:
    """The liver's field with the lesions added, kept inside the abdominal cavity and under the
    diaphragm; the grid grows to hold them (a new exact distance transform)."""
    if not lesions:
        return liver
    step = liver.step
    old_lo = liver.origin
    old_hi = liver.origin + (np.asarray(liver.values.shape) - 1) * step
    lo, hi = old_lo.copy(), old_hi.copy()
    for lesion in lesions:
        l_lo, l_hi = lesion.shape.bounds()
        lo, hi = np.minimum(lo, l_lo - 24.0), np.maximum(hi, l_hi + 24.0)
    # a lattice that contains the old grid point for point, so the old liver copies in exactly
    lo = old_lo - np.ceil((old_lo - lo) / step) * step
    origin, (x, y, z) = lattice(lo, hi, step)
    extra = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape), np.inf, dtype=np.float32)
    for lesion in lesions:
        extra = np.minimum(extra, lesion.shape.sdf(x, y, z))
    extra = np.maximum(extra, body.cavity_sdf(x, y, z) + 1.0)
    if diaphragm is not None:
        extra = np.maximum(extra, z - (diaphragm.top(x, y) - diaphragm.thickness / 2 - 0.5))
    # the old liver on the new lattice (its grid is a sub-block of it, same step)
    offset = np.rint((liver.origin - origin) / step).astype(int)
    inside = np.zeros(extra.shape, dtype=bool)
    block = tuple(slice(o, o + n) for o, n in zip(offset, liver.values.shape))
    inside[block] = liver.values < 0
    return Field.from_mask(inside | (extra < 0), origin, step)


def texture(rng: np.random.Generator, scale_mm: float, n: int = 4):  # noqa: ANN201 (a function)
    """A smooth random pattern ``f(x, y, z)`` in about [-1, 1] with features of ``scale_mm``:
    a product-free sum of ``n`` plane waves of random direction, wavelength and phase."""
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    k = direction * (2 * np.pi / (scale_mm * rng.uniform(0.7, 1.5, (n, 1))))
    phase = rng.uniform(0, 2 * np.pi, n)
    norm = np.sqrt(n / 2.0)

    def f(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        total = 0.0
        for (kx, ky, kz), p in zip(k, phase):
            total = total + np.sin(kx * x + ky * y + kz * z + p)
        return (total / norm).astype(np.float32)

    return f


def bubbles(rng: np.random.Generator, size_mm: float):  # noqa: ANN201 (a function)
    """A random pattern ``f(x, y, z) -> bool`` of isolated blobs about ``size_mm`` across
    (gas bubbles in food or faeces): a product of three plane waves in orthogonal random
    directions, kept where it is high."""
    axes, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    k = axes.T * (np.pi / size_mm)
    phase = rng.uniform(0, 2 * np.pi, 3)

    def f(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        product = 1.0
        for (kx, ky, kz), p in zip(k, phase):
            product = product * np.sin(kx * x + ky * y + kz * z + p)
        return product > 0.45

    return f


def paint_lesion(lesion: MarginalLesion, d: np.ndarray, coords: list[np.ndarray], liver_hu: float, phase: str,
                 rng: np.random.Generator) -> np.ndarray:
    """HU of a lesion's voxels given their signed distance ``d`` to its surface (mm, < 0 inside).

    Args:
        lesion: the lesion.
        d: its SDF on the box being painted.
        coords: the box's broadcastable world coordinates (x, y, z).
        liver_hu: the parenchyma's HU in this case.
        phase: the contrast phase (see :class:`livseg.phantom.organs.Contrast`).
        rng: the case's generator.
    """
    tex = texture(rng, rng.uniform(6, 14))(*coords)
    if lesion.kind == "cyst":
        hu = np.full(d.shape, rng.uniform(0, 20), dtype=np.float32) + 2 * tex
        hu[d > -lesion.rim_mm] = liver_hu - rng.uniform(0, 20)  # thin wall
        return hu
    if phase == "arterial" and rng.random() < 0.5:
        solid = liver_hu + rng.uniform(20, 60)  # hypervascular (HCC-like) in the arterial phase
    else:
        solid = liver_hu - rng.uniform(20, 60)
    hu = (solid + rng.uniform(5, 15) * tex).astype(np.float32)
    if lesion.kind == "necrotic":
        core = d < -lesion.rim_mm
        hu[core] = (rng.uniform(8, 30) + 6 * tex)[core]
    elif rng.random() < 0.4:
        hu[d > -lesion.rim_mm * 0.5] += rng.uniform(15, 40)  # enhancing rim
    return hu
