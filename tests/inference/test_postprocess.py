"""Post-processing: largest connected component and hole filling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from livseg.inference.postprocess import clean_mask, count_components, fill_holes, largest_component


def liver_block() -> np.ndarray:
    mask = np.zeros((30, 28, 20), dtype=np.uint8)
    mask[5:20, 6:22, 4:16] = 1
    return mask


def test_postprocess_removes_blob_and_fills_hole() -> None:
    mask = liver_block()
    mask[10:13, 11:14, 8:11] = 0  # enclosed hole
    mask[24:27, 2:5, 2:5] = 1  # separate false-positive blob
    cleaned, n_before = clean_mask(mask)
    assert n_before == 2
    assert cleaned.dtype == np.uint8
    np.testing.assert_array_equal(cleaned, liver_block())


def test_diagonal_contact_is_a_separate_component() -> None:
    # 6-connectivity: a blob touching the liver only at a corner is not part of it
    mask = liver_block()
    mask[20, 22, 16] = 1
    assert count_components(mask) == 2
    np.testing.assert_array_equal(largest_component(mask), liver_block().astype(bool))


def test_empty_mask() -> None:
    empty = np.zeros((5, 6, 7), dtype=np.uint8)
    cleaned, n_before = clean_mask(empty)
    assert n_before == 0 and not cleaned.any() and cleaned.shape == empty.shape


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_holes_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((24, 22, 18)) < 0.6)
    expected = ndimage.binary_fill_holes(mask, structure=ndimage.generate_binary_structure(3, 1))
    np.testing.assert_array_equal(fill_holes(mask), expected)


def test_hole_touching_array_border_is_not_filled() -> None:
    mask = np.ones((6, 6, 6), dtype=bool)
    mask[2:4, 2:4, 0:3] = False  # open to the z = 0 face of the array
    np.testing.assert_array_equal(fill_holes(mask), mask)


def test_axial_filling_closes_a_vessel_open_in_3d() -> None:
    mask = liver_block().astype(bool)
    mask[11:13, 12:14, :] = False  # a vessel running through the liver along z, open at both ends
    assert not fill_holes(mask)[12, 13, 10]  # not a 3D hole
    assert fill_holes(mask, axial=True)[12, 13, 10]
    assert not fill_holes(mask, axial=True)[12, 13, 2]  # outside the liver's slices: untouched


def test_refuses_non_3d() -> None:
    with pytest.raises(ValueError, match="3D"):
        clean_mask(np.ones((4, 4), dtype=np.uint8))
