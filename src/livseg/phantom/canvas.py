"""The canvas a phantom is painted on: CT numbers, the organ-id map, the grid's coordinates and the
body's regions (abdomen, thorax, diaphragm sheet), shared by every painter."""

from __future__ import annotations

import numpy as np

from livseg.phantom.anatomy import Body, Diaphragm, Grid
from livseg.phantom.organs import ORGANS, Contrast

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
