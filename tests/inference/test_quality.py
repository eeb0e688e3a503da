"""The quality estimate: each signal on hand-made probability maps, the review rule, the stats block."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import write_case

from livseg.data.io.volume import load_volume
from livseg.inference.quality import (binary_entropy, quality_signals, shape_descriptors, shape_distance,
                                      surface_area_mm2, varied_probabilities, volume_excess)
from livseg.inference.quality_model import QUALITY_FILE, Feature, QualityModel, assess, load_quality_model
from livseg.inference.segment import load_model, segment

SPACING = (3.0, 3.0, 3.0)


def cube(p_inside: float = 0.95, shape: tuple[int, int, int] = (20, 20, 20), lo: int = 5, n: int = 10) -> np.ndarray:
    """A 10^3-voxel cube of probability ``p_inside`` in a background of 0."""
    p = np.zeros(shape, dtype=np.float32)
    p[lo:lo + n, lo:lo + n, lo:lo + n] = p_inside
    return p


# ------------------------------------------------------------------------------------ the signals


def test_binary_entropy_by_hand() -> None:
    np.testing.assert_allclose(binary_entropy(np.array([0.0, 0.5, 1.0, 0.8])),
                               [0.0, 1.0, 0.0, -(0.8 * math.log2(0.8) + 0.2 * math.log2(0.2))], atol=1e-5)


def test_surface_area_of_a_box() -> None:
    mask = np.zeros((8, 8, 8), bool)
    mask[1:4, 1:3, 1:6] = True  # 3 x 2 x 5 voxels of 1 x 2 x 3 mm
    # faces: 2 x (2*5) across axis 0 (area 2*3), 2 x (3*5) across axis 1 (1*3), 2 x (3*2) across axis 2 (1*2)
    assert surface_area_mm2(mask, (1.0, 2.0, 3.0)) == pytest.approx(20 * 6 + 30 * 3 + 12 * 2)
    edge = np.ones((2, 2, 2), bool)  # the array border counts as background
    assert surface_area_mm2(edge, (1.0, 1.0, 1.0)) == 24


def test_a_sharp_confident_cube() -> None:
    s = quality_signals(cube(0.95), SPACING)
    assert s["volume_ml"] == pytest.approx(1000 * 27 / 1000) and s["volume_excess"] == 0
    assert s["uncertain_share"] == 0 and s["boundary_band_mm"] == 0
    assert s["entropy_inside"] == pytest.approx(float(binary_entropy(np.array(0.95))), rel=1e-5)
    assert s["removed_share"] == 0 and s["cut_by_scan"] == 0
    assert s["variation_disagreement"] is None  # not asked for


def test_a_band_of_doubt_around_the_cube() -> None:
    p = cube(0.95)
    shell = np.zeros_like(p, dtype=bool)
    shell[4:16, 4:16, 4:16] = True
    p[shell & (p == 0)] = 0.3  # 12^3 - 10^3 = 728 uncertain voxels, outside the mask
    s = quality_signals(p, SPACING)
    assert s["uncertain_share"] == pytest.approx(728 / 1000)
    # their volume over the cube's surface: 728 * 27 mm^3 / (6 * 100 faces * 9 mm^2)
    assert s["boundary_band_mm"] == pytest.approx(728 * 27 / 5400)
    assert s["volume_ml"] == pytest.approx(27.0)


def test_uncertain_means_strictly_between_0_1_and_0_9() -> None:
    p = cube(0.95)  # 0.95 itself is certain
    p[0, 0, 0], p[0, 0, 2], p[19, 19, 19], p[19, 19, 17] = 0.08, 0.12, 0.88, 0.92  # apart from the cube
    assert quality_signals(p, SPACING)["uncertain_share"] == pytest.approx(2 / 1000)  # 0.12 and 0.88 only


def test_entropy_inside_and_on_the_surface() -> None:
    p = cube(0.6)
    p[6:14, 6:14, 6:14] = 1.0  # certain core; the 10^3 - 8^3 = 488 surface voxels at 0.6
    s = quality_signals(p, SPACING)
    h = float(binary_entropy(np.array(0.6)))
    assert s["entropy_surface"] == pytest.approx(h, rel=1e-5)
    assert s["entropy_inside"] == pytest.approx(488 * h / 1000, rel=1e-4)
    assert s["uncertain_share"] == pytest.approx(0.488)


def test_removed_share_and_threshold() -> None:
    p = cube(0.95)
    p[0:2, 0:2, 0:2] = 0.7  # a separate 8-voxel blob: post-processing drops it
    s = quality_signals(p, SPACING)
    assert s["removed_share"] == pytest.approx(8 / 1008)
    assert quality_signals(p, SPACING, threshold=0.8)["removed_share"] == 0  # below that threshold it is not liver


def test_variation_disagreement_by_hand() -> None:
    p = cube(0.95)
    varied = np.roll(p, 1, axis=0)  # the mask moved one voxel: 900 of 1000 voxels shared
    s = quality_signals(p, SPACING, varied=varied)
    assert s["variation_disagreement"] == pytest.approx(1 - 2 * 900 / 2000)
    assert quality_signals(p, SPACING, varied=p)["variation_disagreement"] == 0


def test_cut_by_scan_and_empty_mask() -> None:
    assert quality_signals(cube(0.95, lo=0), SPACING)["cut_by_scan"] == 1.0
    empty = quality_signals(np.full((10, 10, 10), 0.2, np.float32), SPACING)
    assert empty["volume_ml"] == 0 and empty["uncertain_share"] is None and empty["shape_distance"] is None


def test_shape_descriptors_of_a_box_and_an_l() -> None:
    box = np.zeros((20, 20, 20), bool)
    box[2:12, 2:7, 2:6] = True  # 10 x 5 x 4 voxels
    d = shape_descriptors(box, SPACING)
    assert d == pytest.approx({"extent_ap_over_lr": 0.5, "extent_si_over_lr": 0.4, "left_share": 0.4,
                               "fill_axial": 1.0, "fill_box": 1.0})
    ell = np.zeros((20, 20, 20), bool)
    ell[0:10, 0:2, 0:2] = True  # a bar along x ...
    ell[8:10, 0:10, 0:2] = True  # ... and one along y at its right end: an L of 20 + 16 voxels
    d = shape_descriptors(ell, SPACING)
    assert d["fill_axial"] == pytest.approx(36 / 100) and d["fill_box"] == pytest.approx(72 / 200)
    # leftmost 4 columns hold 4 * 2 = 8 voxels per slice, rightmost 4: 2 * 2 + 2 * 10 = 24; the smaller end counts
    assert d["left_share"] == pytest.approx(16 / 72)
    assert shape_descriptors(np.zeros((4, 4, 4), bool), SPACING) is None


def test_volume_excess_by_hand() -> None:
    assert volume_excess(3000.0, 2500.0) == pytest.approx(0.2)
    assert volume_excess(2000.0, 2500.0) == 0.0
    assert quality_signals(cube(0.95), SPACING, large_ml=20.0)["volume_excess"] == pytest.approx(27 / 20 - 1)


def test_shape_distance_by_hand() -> None:
    reference = {"a": {"median": 1.0, "mad": 1 / 1.4826}, "b": {"median": 0.0, "mad": 2 / 1.4826}}
    assert shape_distance({"a": 4.0, "b": -2.0}, reference) == pytest.approx(math.sqrt((9 + 1) / 2))
    assert shape_distance({"a": 4.0, "b": -2.0}, reference, ["b"]) == pytest.approx(1.0)


def test_varied_probabilities_crops_and_maps_back() -> None:
    image = cube(0.95, shape=(40, 40, 40), lo=15)
    seen = []

    def forward(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        return x

    same = varied_probabilities(forward, image, image > 0.5, zoom=1.0, margin=3)
    assert seen == [(16, 16, 16)]  # the 10^3 box and 3 voxels each side
    np.testing.assert_allclose(same, image)
    bigger = varied_probabilities(forward, image, image > 0.5, zoom=1.25, margin=2)
    assert seen[-1] == (18, 18, 18)  # 14 * 1.25 = 17.5 -> 18
    assert bigger[image == 0.95].min() > 0.5 and bigger[:10].max() == 0  # 0 outside the crop
    assert varied_probabilities(forward, image, np.zeros_like(image, bool)) is None


# ------------------------------------------------------------------------------------ the review rule


MODEL = QualityModel(
    name="test", intercept=-3.0, review_below=0.9, shape_reference={}, fitted="by hand",
    features=(Feature("entropy_inside", 1.0, log_offset=0.0, neutral=0.05, limit=0.1),
              Feature("removed_share", 4.0, log_offset=None, neutral=0.0, limit=0.05)),
)


def test_predicted_dice_by_hand() -> None:
    signals = {"entropy_inside": 0.1, "removed_share": 0.2, "volume_ml": 1500.0}
    # 1 - exp(-3 + log(0.1) + 4 * 0.2) = 1 - 0.1 * exp(-2.2)
    assert MODEL.predict_dice(signals) == pytest.approx(1 - 0.1 * math.exp(-2.2))
    assert MODEL.predict_dice({"entropy_inside": None, "volume_ml": 1.0}) == pytest.approx(1 - 0.05 * math.exp(-3))
    assert MODEL.predict_dice({"entropy_inside": 100.0, "removed_share": 10.0}) == 0.0  # clipped


@pytest.mark.parametrize("entropy, removed, review, n_reasons", [
    (0.06, 0.0, False, 0),   # 1 - 0.06 e^-3 = 0.997
    (0.9, 0.0, False, 0),    # 1 - 0.9 e^-3 = 0.955 >= 0.9: not flagged although entropy is over its limit
    (2.5, 0.0, True, 2),     # 0.876: flagged; entropy named
    (2.5, 0.2, True, 3),     # 1 - 2.5 e^-2.2 = 0.723: both named
    (0.09, 0.8, True, 2),    # 1 - 0.09 e^0.2 = 0.890: flagged by the removed share alone
])
def test_review_threshold_and_reasons(entropy: float, removed: float, review: bool, n_reasons: int) -> None:
    block = assess({"entropy_inside": entropy, "removed_share": removed, "volume_ml": 1500.0}, MODEL)
    assert block["review"] is review
    assert len(block["reasons"]) == n_reasons
    if review:
        assert block["reasons"][0].startswith("predicted Dice") and block["reasons"][0].endswith("is below 0.9")
    assert (block["predicted_dice"] < 0.9) is review


def test_a_signal_beyond_every_good_mask_flags_whatever_the_prediction() -> None:
    strict = QualityModel(**{**vars(MODEL), "flag_above": {"variation_disagreement": 0.05, "entropy_inside": 1.0}})
    calm = {"entropy_inside": 0.06, "removed_share": 0.0, "volume_ml": 1500.0}  # predicted 0.997
    assert assess({**calm, "variation_disagreement": 0.05}, strict)["review"] is False  # at the bound: not beyond
    block = assess({**calm, "variation_disagreement": 0.2}, strict)
    assert block["review"] is True and block["predicted_dice"] > 0.99
    assert block["reasons"][0].startswith("predicted Dice 0.9970, but a signal lies beyond every good mask")
    assert block["reasons"][1] == ("the mask changes when the CT is seen at a coarser scale: 20.0% of it differs "
                                   "(no good mask above 5.0% of it differs)")
    assert len(block["reasons"]) == 2
    # flagged by the prediction: entropy over its 95 % limit and beyond every good mask is named once
    both = assess({"entropy_inside": 2.5, "removed_share": 0.0, "volume_ml": 1500.0, "variation_disagreement": 0.0},
                  strict)
    assert both["reasons"][0].startswith("predicted Dice 0.8755 is below") and len(both["reasons"]) == 2
    assert "no good mask above" in both["reasons"][1]


def test_a_prediction_on_the_threshold_is_not_flagged_one_just_under_it_is() -> None:
    signals = {"entropy_inside": 0.1, "removed_share": 0.0, "volume_ml": 1500.0}
    predicted = MODEL.predict_dice(signals)  # 1 - 0.1 e^-3 = 0.99502, stored and compared as 0.995
    assert assess(signals, MODEL)["predicted_dice"] == 0.995
    assert assess(signals, QualityModel(**{**vars(MODEL), "review_below": 0.995}))["review"] is False
    assert assess(signals, QualityModel(**{**vars(MODEL), "review_below": predicted}))["review"] is True  # 0.995 < 0.99502
    block = assess(signals, QualityModel(**{**vars(MODEL), "review_below": 0.9951}))
    assert block["review"] is True and block["reasons"][0] == "predicted Dice 0.9950 is below 0.9951"


def test_an_empty_mask_is_always_reviewed() -> None:
    block = assess({"entropy_inside": None, "removed_share": 0.0, "volume_ml": 0.0}, MODEL)
    assert block["review"] is True and block["reasons"] == ["the mask is empty: no liver found"]


# ------------------------------------------------------------------------------------ the stats block


def test_shipped_quality_model_is_complete() -> None:
    model = load_quality_model()
    assert model.name == "quality-v3" and 0.5 < model.review_below < 1.0 and model.features
    names = set(quality_signals(cube(0.95), SPACING))
    assert {f.signal for f in model.features} <= names
    assert model.flag_above and set(model.flag_above) <= names  # beyond every good mask: known signals only
    assert set(model.shape_reference) == set(shape_descriptors(cube(0.95) > 0.5, SPACING))
    assert "calibrate_quality.py" in json.loads(QUALITY_FILE.read_text())["fitted"]  # says how it was fitted


def test_segment_writes_the_quality_block(checkpoint: Path, tmp_path: Path) -> None:
    write_case(tmp_path, 0, shape=(30, 22, 13))
    volume = load_volume(tmp_path / "volume-0.nii.gz")
    result = segment(volume, load_model(checkpoint, "cpu"))
    block = result.stats["quality"]
    assert set(block) == {"model", "signals", "predicted_dice", "review_below", "review", "reasons"}
    assert isinstance(block["review"], bool) and isinstance(block["reasons"], list)
    assert all(isinstance(r, str) for r in block["reasons"]) and (block["review"] == bool(block["reasons"]))
    assert 0.0 <= block["predicted_dice"] <= 1.0
    assert set(block["signals"]) == set(quality_signals(cube(0.95), SPACING))
    assert block["signals"]["shape_distance"] is None  # the test checkpoint's grid is not RAS
    assert json.loads(json.dumps(block)) == block  # plain JSON types only
    assert "quality" in result.timings
    assert "quality" not in segment(volume, load_model(checkpoint, "cpu"), quality=False).stats


def test_the_reason_shows_the_predicted_dice_the_block_stores() -> None:
    # 0.944496 is stored as 0.9445; the words must say the stored number (a PACS test caught the
    # words saying 0.944 of a block storing 0.9445, whose own 3-decimal text is 0.945)
    model = QualityModel(name="test", intercept=math.log(1 - 0.944496), features=(), review_below=1.0,
                         shape_reference={}, fitted="by hand")
    block = assess({"volume_ml": 1500.0}, model)
    assert block["predicted_dice"] == 0.9445
    assert block["reasons"] == ["predicted Dice 0.9445 is below 1"]
