"""livseg.data.region: the liver's region for stage 2, cut out at a fixed spacing and put back.

The geometry tests place things in world coordinates and check that they come back where they
were: a linear function of world x survives the forward cut exactly (linear interpolation is exact
on it), and a lesion drawn by a "perfect" stage 2 directly on the region grid (from the grid's own
affine) lands on the input grid where the lesion was, whatever the input's orientation.
"""

from __future__ import annotations

import numpy as np
import pytest

from livseg.data.io.volume import Volume
from livseg.data.preprocessing import to_ras
from livseg.data.region import (
    Region,
    crop_region,
    cut_liver_region,
    grow_box,
    liver_region,
    paste_region,
    region_shape,
    region_to_input_grid,
)
from livseg.evaluation.metrics import dice


@pytest.mark.parametrize(
    "crop, spacing, target, expected",
    [
        ((11, 5, 1), (0.5, 2.0, 3.0), (1.0, 1.0, 1.0), (6, 9, 1)),  # 5 mm -> 6 voxels; 8 mm -> 9; one slice stays one
        ((101, 101, 40), (0.7, 0.7, 2.5), (1.0, 1.0, 1.0), (71, 71, 99)),  # 70 mm, 97.5 mm (rounded to 98 gaps)
        ((2, 3, 5), (1.0, 1.0, 1.0), (3.0, 3.0, 3.0), (1, 2, 2)),  # 1/3 -> 0 gaps, 2/3 -> 1, 4/3 -> 1
    ],
)
def test_region_shape(crop, spacing, target, expected) -> None:
    assert region_shape(crop, spacing, target) == expected


@pytest.mark.parametrize(
    "lo, hi, expected",
    [
        ((2.0, 0.0, 0.5), (2.0, 0.0, 0.5), ((3, 5, 4), (12, 10, 11))),  # 2 mm at 1 mm -> 2; 0.5 mm -> 1 (rounded up)
        ((-1.5, 0, 0), (-1.5, 0, 0), ((6, 5, 5), (9, 10, 10))),  # inwards: 1.5 mm -> 1 voxel (rounded down)
        ((100, 0, 0), (100, 0, 0), ((0, 5, 5), (20, 10, 10))),  # clipped to the array
        ((-10, 0, 0), (-10, 0, 0), ((7, 5, 5), (8, 10, 10))),  # faces crossed: the middle voxel
    ],
)
def test_grow_box(lo, hi, expected) -> None:
    box = ((5, 5, 5), (10, 10, 10))
    assert grow_box(box, lo, hi, (1.0, 1.0, 1.0), (20, 20, 20)) == expected


def test_liver_region_and_its_affine() -> None:
    mask = np.zeros((30, 20, 10), dtype=bool)
    mask[10:20, 5:15, 3:7] = True
    region = liver_region(mask, (0.6, 1.0, 2.0), margin_mm=2.0, target_mm=(1.0, 1.0, 1.0))
    assert region is not None
    assert (region.start, region.stop) == ((6, 3, 2), (24, 17, 8))  # 2 mm = 3.3 -> 4, 2, 1 voxels
    assert region.shape == (11, 14, 11)  # spans 17 * 0.6 = 10.2 mm, 13 mm, 10 mm
    affine = np.diag([0.6, 1.0, 2.0, 1.0])
    grid = region.affine(affine)
    assert np.allclose(grid @ [0, 0, 0, 1], [3.6, 3.0, 4.0, 1])  # crop voxel 0 = region voxel 0
    assert np.allclose(grid @ [10, 13, 10, 1], [23 * 0.6, 16.0, 14.0, 1])  # and the last onto the last
    assert np.allclose(region.spacing((0.6, 1.0, 2.0)), (1.02, 1.0, 1.0))
    assert liver_region(np.zeros((4, 4, 4), bool), (1, 1, 1), margin_mm=1, target_mm=(1, 1, 1)) is None


SHAPE = (90, 80, 30)


def _affines() -> list[np.ndarray]:
    """LiTS-like (x, y flipped), plain, and an oblique one with swapped in-plane axes; each grid
    centred near the world origin, where the tests put the liver."""
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    linear = [np.diag([-0.8, -0.8, 2.5]), np.diag([1.2, 0.9, 3.0]),
              (rotation @ np.diag([0.9, 1.1, 2.5]))[:, [1, 0, 2]] * [1, -1, 1]]
    affines = []
    for m in linear:
        affine = np.eye(4)
        affine[:3, :3] = m
        affine[:3, 3] = np.array([1.0, 3.0, -2.0]) - m @ ((np.array(SHAPE) - 1) / 2)
        affines.append(affine)
    return affines


def _world(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """World RAS mm of every voxel centre, [3, X, Y, Z]."""
    index = np.indices(shape).reshape(3, -1).astype(np.float64)
    return (affine[:3, :3] @ index + affine[:3, 3:4]).reshape(3, *shape)


@pytest.mark.parametrize("affine", _affines(), ids=["lits", "plain", "oblique"])
def test_cut_region_samples_the_world_where_its_affine_says(affine: np.ndarray) -> None:
    shape = SHAPE
    world = _world(affine, shape)
    liver = ((world[0] - 0) ** 2 / 30**2 + (world[1] - 5) ** 2 / 25**2 + (world[2] - 0) ** 2 / 20**2) < 1
    ct = Volume(array=(world[0] * 0.5 + 20).astype(np.float32), affine=affine)  # HU linear in world x: 0.5 HU/mm
    cut = cut_liver_region(ct, liver, margin_mm=5.0, target_mm=(1.0, 1.0, 1.0), hu_min=-1000.0, hu_max=1000.0)
    assert cut is not None
    region_world = _world(cut.region.affine(cut.ras_affine), cut.region.shape)
    expected = (region_world[0] * 0.5 + 20 + 1000.0) / 2000.0  # the window maps [-1000, 1000] onto [0, 1]
    assert np.allclose(cut.image, expected, atol=1e-5)
    assert all(abs(s - 1.0) < 0.1 for s in cut.spacing)


@pytest.mark.parametrize("affine", _affines(), ids=["lits", "plain", "oblique"])
def test_a_lesion_placed_in_world_coordinates_comes_back_where_it_was(affine: np.ndarray) -> None:
    """crop -> resample -> region grid -> back-mapping with a perfect stage 2 (exact up to interpolation)."""
    shape = SHAPE
    world = _world(affine, shape)
    centre, radius = np.array([8.0, 2.0, 4.0]), 9.0
    liver = ((world[0] - 0) ** 2 / 30**2 + (world[1] - 5) ** 2 / 25**2 + (world[2] - 0) ** 2 / 20**2) < 1
    lesion = np.linalg.norm(world - centre[:, None, None, None], axis=0) < radius
    ct = Volume(array=np.zeros(shape, np.float32), affine=affine)
    cut = cut_liver_region(ct, liver, margin_mm=10.0, target_mm=(0.7, 0.7, 0.7), hu_min=-100.0, hu_max=400.0)
    assert cut is not None
    # the perfect stage 2: the lesion's signed distance on the region grid, as a soft probability
    region_world = _world(cut.region.affine(cut.ras_affine), cut.region.shape)
    distance = np.linalg.norm(region_world - centre[:, None, None, None], axis=0) - radius
    probability = 1.0 / (1.0 + np.exp(distance / 0.5))
    back = region_to_input_grid(probability, cut.region, ct)
    assert back.shape == shape
    found = back >= 0.5
    assert dice(found, lesion) > 0.95
    centroid = world[:, found].mean(axis=1)
    assert np.linalg.norm(centroid - world[:, lesion].mean(axis=1)) < 0.3  # mm
    assert np.linalg.norm(centroid - centre) < 0.5


def test_paste_region_fills_outside_and_keeps_channels() -> None:
    region = Region(start=(2, 3, 1), stop=(6, 5, 4), shape=(7, 3, 5), ras_shape=(8, 8, 6))
    values = np.ones((2, 7, 3, 5), np.float32) * np.array([0.25, 0.75], np.float32)[:, None, None, None]
    out = paste_region(values, region, fill=0.0)
    assert out.shape == (2, 8, 8, 6)
    assert np.all(out[0, 2:6, 3:5, 1:4] == 0.25) and np.all(out[1, 2:6, 3:5, 1:4] == 0.75)
    assert out.sum() == pytest.approx(4 * 2 * 3 * (0.25 + 0.75))


def test_labels_keep_their_values() -> None:
    labels = np.zeros((20, 20, 10), np.uint8)
    labels[5:15, 5:15, 2:8] = 1
    labels[8:11, 8:11, 4:6] = 2
    ras, _ = to_ras(labels, np.eye(4))
    region = liver_region(ras > 0, (1.0, 1.0, 1.0), margin_mm=2, target_mm=(0.5, 0.5, 0.5))
    cut = crop_region(ras, region, labels=True)
    assert cut.dtype == np.uint8 and set(np.unique(cut)) == {0, 1, 2}
