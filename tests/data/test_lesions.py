"""livseg.data.lesions: lesion components, RECIST diameters, volumes, centroids, small lesions.

Every expected value is worked out by hand next to its case (outline points are pixel centres
+- half a pixel towards the outside; the diameter is the longest distance between two of them).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import voxel_mask as _mask

from livseg.data.lesions import label_lesions, lesion_table, remove_small_lesions


@pytest.mark.parametrize(
    "voxels, spacing, expected",
    [
        ([(4, 4, 4)], (0.8, 0.8, 2.5), 0.8),  # one pixel: its side
        ([(slice(2, 5), 4, 4)], (1.0, 2.0, 1.0), 3.0),  # 3 px along x, edge to edge; a diagonal is only sqrt(2^2 + 2^2)
        ([(slice(2, 4), slice(2, 4), 4)], (1.0, 1.0, 1.0), math.sqrt(5)),  # 2x2: (-.5, 0) to (1.5, 1)
        ([(4, slice(1, 6), 4)], (0.9, 0.7, 3.0), 3.5),  # 5 px along y at 0.7 mm
        ([(4, 4, slice(0, 10))], (0.8, 0.8, 2.5), 0.8),  # long in z only: one pixel per axial slice
        ([(slice(2, 5), 4, 3), (4, 4, 4)], (1.0, 1.0, 1.0), 3.0),  # the largest slice wins
    ],
)
def test_recist_diameter(voxels: list, spacing: tuple, expected: float) -> None:
    mask = _mask((10, 10, 10), *voxels)
    for affine in (np.diag([*spacing, 1.0]), np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])):
        (lesion,) = lesion_table(mask, affine)
        assert lesion["diameter_mm"] == pytest.approx(expected, abs=1e-9)


def test_axial_means_superior_inferior_whatever_the_array_order() -> None:
    # array axis 0 runs along z (superior): a lesion long along axis 0 is short in the axial plane
    affine = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    mask = _mask((10, 10, 10), (slice(1, 9), 4, slice(3, 6)))  # 8 slices of a 1 x 3 px row (along world y)
    (lesion,) = lesion_table(mask, affine)
    assert lesion["diameter_mm"] == pytest.approx(3.0)


def test_volume_and_centroid_in_world_mm() -> None:
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    affine[:3, 3] = (10.0, 20.0, 30.0)
    mask = _mask((8, 8, 8), (slice(3, 5), slice(3, 5), slice(3, 5)))
    (lesion,) = lesion_table(mask, affine)
    assert lesion["voxels"] == 8 and lesion["volume_ml"] == pytest.approx(8 * 0.5 * 0.5 * 2 / 1000)
    assert lesion["centroid_mm"] == pytest.approx([10 + 3.5 * 0.5, 20 + 3.5 * 0.5, 30 + 3.5 * 2])


def test_lesions_are_26_connected_and_listed_largest_first() -> None:
    mask = _mask((10, 10, 10), (1, 1, 1), (2, 2, 2), (slice(5, 9), 7, 7))  # a corner-touching pair, a row
    labels, n = label_lesions(mask)
    assert n == 2 and labels[1, 1, 1] == labels[2, 2, 2]
    assert [row["voxels"] for row in lesion_table(mask, np.eye(4))] == [4, 2]
    assert lesion_table(np.zeros((3, 3, 3)), np.eye(4)) == []


def test_remove_small_lesions() -> None:
    mask = _mask((20, 5, 5), (slice(0, 3), 2, 2), (slice(8, 18), 2, 2))
    kept = remove_small_lesions(mask, voxel_mm3=1.0, min_mm3=5.0)
    assert kept[8:18, 2, 2].all() and not kept[0:3].any()
    assert np.array_equal(remove_small_lesions(mask, voxel_mm3=1.0, min_mm3=0.0), mask)
