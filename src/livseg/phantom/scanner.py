"""What the scanner adds to a phantom's clean CT numbers: blur, noise, kernel, streaks.

:func:`scan` applies, in order:

1. the reconstruction kernel: ``smooth`` (soft tissue, blur 0.7-1.2 mm, coarse noise),
   ``standard`` (0.4-0.8 mm) or ``sharp`` (0.3-0.5 mm, fine noise, an edge-enhancing
   overshoot as bone and lung kernels have), plus the slice profile (0.35 of the slice spacing);
2. metal streaks (about one case in eight): a small metal object (clip, coil, spinal
   hardware, port) at 2500-3000 HU with bright and dark rays fanning out from it over its few
   centimetres of slices, fading with distance;
3. beam hardening (about one in four): dark bands of -20 to -60 HU along lines between dense
   structures (the spine and a lateral rib), in every slice;
4. quantum noise: 6-45 HU (log-uniform, more in larger bodies), correlated over the kernel's
   noise grain.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from livseg.phantom.anatomy import Body, Grid

__all__ = ["KERNELS", "scan"]

KERNELS = (("smooth", 0.3), ("standard", 0.5), ("sharp", 0.2))
HU_RANGE = (-1024.0, 3071.0)


def scan(ct: np.ndarray, grid: Grid, body: Body, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The scanned CT (float32, clipped to the int16 range files use) and what was applied."""
    names, weights = zip(*KERNELS)
    kernel = str(rng.choice(names, p=np.asarray(weights) / sum(weights)))
    blur, grain = {"smooth": ((0.7, 1.2), (1.0, 1.5)), "standard": ((0.4, 0.8), (0.6, 1.0)),
                   "sharp": ((0.3, 0.5), (0.35, 0.6))}[kernel]
    blur_mm = [rng.uniform(*blur)] * 2 + [0.35 * grid.spacing[2]]
    out = ndimage.gaussian_filter(ct, [b / s for b, s in zip(blur_mm, grid.spacing)], truncate=3.0)
    if kernel == "sharp":
        # edge enhancement: overshoot at boundaries (unsharp mask over ~1.5 mm)
        coarse = ndimage.gaussian_filter(out, [1.5 / s for s in grid.spacing[:2]] + [0.0], truncate=3.0)
        out += rng.uniform(0.2, 0.6) * (out - coarse)
    facts: dict = {"kernel": kernel, "blur_mm": [round(b, 2) for b in blur_mm]}
    if rng.random() < 0.125:
        facts["metal"] = _metal(out, grid, body, rng)
    if rng.random() < 0.25:
        facts["beam_hardening_hu"] = _beam_hardening(out, grid, body, rng)
    size = (2 * body.half_width + body.ant + body.post) / 2  # ~ 330 mm average
    noise_hu = float(np.exp(rng.uniform(np.log(6), np.log(45))) * np.clip(size / 330, 0.8, 1.6))
    noise = rng.standard_normal(out.shape, dtype=np.float32)
    corr_mm = rng.uniform(*grain)
    ndimage.gaussian_filter(noise, [max(corr_mm / s, 0.5) for s in grid.spacing[:2]] + [0.5], output=noise)
    noise *= noise_hu / float(noise.std())
    out += noise
    np.clip(out, *HU_RANGE, out=out)
    facts["noise_hu"] = round(noise_hu, 1)
    return out.astype(np.float32, copy=False), facts


def _plane(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    return grid.axis(0)[:, None], grid.axis(1)[None, :]


def _metal(ct: np.ndarray, grid: Grid, body: Body, rng: np.random.Generator) -> str:
    """A metal object and its streaks, painted in place; returns where it is."""
    where = str(rng.choice(["spine", "liver", "wall"]))
    if where == "spine":
        source = np.array([rng.uniform(-15, 15), body.spine_y + rng.uniform(-5, 10)])
    elif where == "liver":  # surgical clips near the liver hilum / gallbladder bed
        source = np.array([rng.uniform(20, 90), rng.uniform(-20, 40)])
    else:  # a port or pacemaker lead in the wall
        angle = rng.uniform(0.3, 2.8)
        source = np.array([np.cos(angle), np.sin(angle)]) * (body.half_width - 20) * np.array([1.0, 0.75])
    z = grid.axis(2)
    zc = rng.uniform(z[0], z[-1])
    half = rng.uniform(8, 30)
    slices = np.flatnonzero(np.abs(z - zc) <= half)
    if not len(slices):
        return where
    x, y = _plane(grid)
    dx, dy = x - source[0], y - source[1]
    r = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx)
    rays = np.zeros(r.shape, dtype=np.float32)
    for angle in rng.uniform(0, np.pi, int(rng.integers(4, 12))):
        # distance to the line through the source at this angle; rays alternate bright and dark
        across = np.abs(np.sin(theta - angle)) * r
        rays += rng.choice([-1.0, 1.0]) * rng.uniform(80, 400) * np.exp(-0.5 * (across / rng.uniform(1.0, 3.0)) ** 2)
    rays *= (1.0 / (1.0 + r / 60.0)).astype(np.float32)
    blob = r < rng.uniform(2.0, 5.0)
    for k in slices:
        fade = float(np.exp(-0.5 * ((z[k] - zc) / half) ** 2))
        ct[:, :, k] += rays * fade
        ct[:, :, k][blob] = rng.uniform(2500, 3000)
    return where


def _beam_hardening(ct: np.ndarray, grid: Grid, body: Body, rng: np.random.Generator) -> float:
    """Dark bands between the spine and a lateral rib, in every slice; returns their depth (HU)."""
    x, y = _plane(grid)
    a = np.array([0.0, body.spine_y])
    side = rng.choice([-1.0, 1.0])
    b = np.array([side * body.half_width * 0.85, rng.uniform(-40, 40)])
    ab = b - a
    t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1]) / float(ab @ ab), 0, 1)
    dist = np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2)
    depth = float(rng.uniform(20, 60))
    band = (-depth * np.exp(-0.5 * (dist / rng.uniform(3, 8)) ** 2)).astype(np.float32)
    ct += band[:, :, None]
    return round(depth, 1)
