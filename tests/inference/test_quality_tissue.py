"""wrapped_dark_share: dark tissue that the liver wraps around, on hand-made CTs with hand-counted voxels."""

from __future__ import annotations

import numpy as np
import pytest

from livseg.inference.quality import quality_signals
from livseg.inference.quality_model import QualityModel, assess
from livseg.inference.quality_tissue import sides_reached, wrapped_dark_share

SPACING = (3.0, 3.0, 3.0)
LIVER_HU, TUMOUR_HU, FAT_HU = 120.0, 50.0, -100.0


def sides_by_brute_force(mask: np.ndarray, reach: int) -> np.ndarray:
    out = np.zeros(mask.shape, np.uint8)
    for index in np.ndindex(mask.shape):
        for axis in range(3):
            for step in (-1, 1):
                for k in range(1, reach + 1):
                    j = list(index)
                    j[axis] += step * k
                    if 0 <= j[axis] < mask.shape[axis] and mask[tuple(j)]:
                        out[index] += 1
                        break
    return out


@pytest.mark.parametrize("reach", [1, 2, 5])
def test_sides_reached_against_brute_force(reach: int) -> None:
    mask = np.random.default_rng(reach).random((9, 7, 6)) < 0.08
    np.testing.assert_array_equal(sides_reached(mask, (reach,) * 3), sides_by_brute_force(mask, reach))


def test_sides_reached_by_hand() -> None:
    mask = np.zeros((7, 1, 1), bool)
    mask[0] = mask[6] = True  # two voxels 6 apart along axis 0
    # index 3 lies 3 from both ends; the ends see nothing within 3 (themselves not counted)
    assert sides_reached(mask, (3, 3, 3))[:, 0, 0].tolist() == [0, 1, 1, 2, 1, 1, 0]
    assert sides_reached(mask, (6, 1, 1))[:, 0, 0].tolist() == [1, 2, 2, 2, 2, 2, 1]


def liver_with_a_notch(fill_hu: float, shape: tuple[int, int, int] = (28, 28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """A 20^3 liver (HU 120) in fat, with a 4 x 4 x 5 notch cut into its top face and filled with
    ``fill_hu``: the mask wraps the notch on five sides (all but the open top)."""
    hu = np.full(shape, FAT_HU, np.float32)
    mask = np.zeros(shape, bool)
    mask[4:24, 4:24, 4:24] = True
    hu[mask] = LIVER_HU
    notch = (slice(12, 16), slice(12, 16), slice(19, 24))
    mask[notch] = False
    hu[notch] = fill_hu
    return mask, hu


def test_a_tumour_left_out_of_the_mask() -> None:
    mask, hu = liver_with_a_notch(TUMOUR_HU)  # liver 120: darker than 120 - 0.1 * 220 = 98 counts
    assert wrapped_dark_share(mask, hu, SPACING) == pytest.approx(80 / (8000 - 80))


@pytest.mark.parametrize("fill_hu", [FAT_HU, -20.0, LIVER_HU, 99.0])
def test_fat_and_liver_coloured_tissue_in_the_notch_do_not_count(fill_hu: float) -> None:
    # -20 HU is not soft tissue (the bound is exclusive); 99 HU is not darker than 98
    mask, hu = liver_with_a_notch(fill_hu)
    assert wrapped_dark_share(mask, hu, SPACING) == 0.0


def test_a_tumour_inside_the_mask_does_not_count() -> None:
    mask, hu = liver_with_a_notch(TUMOUR_HU)
    mask[12:16, 12:16, 19:24] = True  # the network kept the tumour: no bite
    assert wrapped_dark_share(mask, hu, SPACING) == 0.0


def test_the_rule_follows_a_shifted_hu_scale() -> None:
    mask, hu = liver_with_a_notch(TUMOUR_HU)
    shifted = np.where(hu > FAT_HU, hu + 60.0, hu)  # a scanner 60 HU off (fat stays clipped at the floor)
    assert wrapped_dark_share(mask, shifted, SPACING) == pytest.approx(80 / 7920)


def test_dark_tissue_beside_the_liver_is_not_wrapped() -> None:
    mask, hu = liver_with_a_notch(LIVER_HU)
    hu[24:27, 4:24, 4:24] = TUMOUR_HU  # a muscle along one face: reached from one side only
    assert wrapped_dark_share(mask, hu, SPACING) == 0.0


def test_reach_is_in_millimetres() -> None:
    mask, hu = liver_with_a_notch(TUMOUR_HU)
    # 9 mm is 3 voxels on a 3 mm grid: along x (and y) the notch's outer voxels 12 and 15 see only
    # their own side's liver, 13 and 14 both; below, slices 19-21 see the liver, 22-23 do not; above
    # nothing. Four sides or more: 12 of 16 columns in slices 19-21, the 4 central ones in 22-23
    assert wrapped_dark_share(mask, hu, SPACING, reach_mm=9.0) == pytest.approx((12 * 3 + 4 * 2) / 7920)
    # 9 mm is 9 voxels on a 1 mm grid: every notch voxel sees the liver on five sides
    assert wrapped_dark_share(mask, hu, (1.0, 1.0, 1.0), reach_mm=9.0) == pytest.approx(80 / 7920)


def test_empty_mask_and_no_ct() -> None:
    mask, hu = liver_with_a_notch(TUMOUR_HU)
    assert wrapped_dark_share(np.zeros_like(mask), hu, SPACING) is None
    p = mask.astype(np.float32) * 0.95
    assert quality_signals(p, SPACING)["wrapped_dark_share"] is None  # no CT given
    assert quality_signals(p, SPACING, hu=hu)["wrapped_dark_share"] == pytest.approx(80 / 7920)


def test_a_wrapped_tumour_is_named_when_beyond_every_good_mask() -> None:
    model = QualityModel(name="test", intercept=-3.0, features=(), review_below=0.9, shape_reference={},
                         fitted="by hand", flag_above={"wrapped_dark_share": 0.04})
    block = assess({"volume_ml": 1500.0, "wrapped_dark_share": 0.1}, model)
    assert block["review"] is True
    assert block["reasons"][1] == ("dark tissue that the liver wraps around lies outside the mask (a tumour left "
                                   "out?): 10.0% of the mask's volume (no good mask above 4.0% of the mask's volume)")
    assert assess({"volume_ml": 1500.0, "wrapped_dark_share": 0.04}, model)["review"] is False
