"""Losses: hand-computed values on 2x2x2 patches, empty patches, gradients, MONAI agreement.

The patches use logits whose sigmoids are exact quarters: 0 -> 0.5, ln 3 -> 0.75, -ln 3 -> 0.25.
Expected values below were worked out by hand from TP, FP, FN (written next to each case) and
are kept as exact fractions.
"""

from __future__ import annotations

import math

import pytest
import torch

from livseg.config import LossConfig, get_preset
from livseg.errors import ConfigError
from livseg.nn.losses import (
    FOCAL_CLAMP,
    AdvancedComboLoss,
    RegionLoss,
    bce_loss,
    dice_loss,
    focal_tversky_loss,
    make_loss,
    region_targets,
    tversky_index,
)

L3 = math.log(3.0)
LN43 = math.log(4.0 / 3.0)  # -ln 0.75: BCE of a voxel 0.25 away from its label


def _patch(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 2, 2)


# MIXED: target 1 1 1 1 0 0 0 0, p = .75 .75 .5 .25 | .5 .25 .25 .25
#   TP = 2.25, sum p = 3.5, FP = 1.25, sum t = 4, FN = 1.75
#   BCE: five voxels cost ln 4/3, two (p = .5) cost ln 2, one (p = .25 on liver) costs ln 4,
#   so the mean is (5 ln 4/3 + 4 ln 2) / 8
MIXED = (_patch([L3, L3, 0, -L3, 0, -L3, -L3, -L3]), _patch([1, 1, 1, 1, 0, 0, 0, 0]))
# EMPTY target, p = .25 everywhere: TP = 0, FP = 2, FN = 0
EMPTY = (_patch([-L3] * 8), _patch([0] * 8))
# FULL target, p = .75 everywhere: TP = 6, FP = 0, FN = 2
FULL = (_patch([L3] * 8), _patch([1] * 8))
CASES = {"mixed": MIXED, "empty": EMPTY, "full": FULL}


@pytest.mark.parametrize(
    ("case", "smooth", "expected"),
    [
        ("mixed", 1.0, 1 - 5.5 / 8.5),  # 1 - (2*2.25 + 1) / (3.5 + 4 + 1) = 6/17
        ("mixed", 0.0, 0.4),  # 1 - 4.5 / 7.5
        ("empty", 1.0, 2 / 3),  # 1 - 1 / (2 + 1): false positives cost on an empty patch
        ("full", 1.0, 2 / 15),  # 1 - 13 / 15
    ],
)
def test_dice_loss_hand_values(case: str, smooth: float, expected: float) -> None:
    logits, target = CASES[case]
    assert dice_loss(logits, target, smooth=smooth).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("mixed", (5 * LN43 + 4 * math.log(2.0)) / 8),
        ("empty", LN43),
        ("full", LN43),
    ],
)
def test_bce_loss_hand_values(case: str, expected: float) -> None:
    logits, target = CASES[case]
    assert bce_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("case", "alpha", "beta", "smooth", "expected"),
    [
        ("mixed", 0.7, 0.3, 1.0, 65 / 97),  # 3.25 / (2.25 + 0.7*1.75 + 0.3*1.25 + 1) = 3.25/4.85
        ("mixed", 0.3, 0.7, 1.0, 65 / 93),  # 3.25 / (2.25 + 0.525 + 0.875 + 1): alpha weighs FN
        ("mixed", 0.7, 0.3, 0.0, 45 / 77),  # 2.25 / 3.85
        ("empty", 0.7, 0.3, 1.0, 5 / 8),  # 1 / (0.3*2 + 1)
        ("full", 0.7, 0.3, 1.0, 5 / 6),  # 7 / (6 + 0.7*2 + 1)
    ],
)
def test_tversky_index_hand_values(case: str, alpha: float, beta: float, smooth: float, expected: float) -> None:
    logits, target = CASES[case]
    ti = tversky_index(torch.sigmoid(logits), target, alpha=alpha, beta=beta, smooth=smooth)
    assert ti.shape == (1,)
    assert ti.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("case", "gamma", "expected"),
    [
        ("mixed", 0.75, (32 / 97) ** 0.75),
        ("mixed", 1.0, 32 / 97),
        ("mixed", 2.0, (32 / 97) ** 2),
        ("empty", 0.75, (3 / 8) ** 0.75),
        ("full", 0.75, (1 / 6) ** 0.75),
    ],
)
def test_focal_tversky_hand_values(case: str, gamma: float, expected: float) -> None:
    logits, target = CASES[case]
    loss = focal_tversky_loss(logits, target, alpha=0.7, beta=0.3, gamma=gamma, smooth=1.0)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("mixed", 0.3 * 6 / 17 + 0.3 * (5 * LN43 + 4 * math.log(2.0)) / 8 + 0.4 * (32 / 97) ** 0.75),
        ("empty", 0.3 * 2 / 3 + 0.3 * LN43 + 0.4 * (3 / 8) ** 0.75),
        ("full", 0.3 * 2 / 15 + 0.3 * LN43 + 0.4 * (1 / 6) ** 0.75),
    ],
)
def test_combo_loss_hand_values(case: str, expected: float) -> None:
    logits, target = CASES[case]
    loss_fn = AdvancedComboLoss()
    assert loss_fn(logits, target).item() == pytest.approx(expected, abs=1e-6)
    parts = loss_fn.components(logits, target)
    assert set(parts) == {"dice", "bce", "focal_tversky", "total"}
    assert parts["total"].item() == pytest.approx(expected, abs=1e-6)


def test_batch_is_reduced_per_sample() -> None:
    logits = torch.cat([MIXED[0], EMPTY[0]])
    target = torch.cat([MIXED[1], EMPTY[1]])
    # Pooled over the batch the Dice loss would be 1 - 5.5 / 10.5; per sample it is:
    assert dice_loss(logits, target).item() == pytest.approx((6 / 17 + 2 / 3) / 2, abs=1e-6)
    expected_ft = ((32 / 97) ** 0.75 + (3 / 8) ** 0.75) / 2
    assert focal_tversky_loss(logits, target).item() == pytest.approx(expected_ft, abs=1e-6)
    ti = tversky_index(torch.sigmoid(logits), target)
    torch.testing.assert_close(ti, torch.tensor([65 / 97, 5 / 8]))


def test_perfect_prediction_is_the_minimum() -> None:
    torch.manual_seed(0)
    target = (torch.rand(2, 1, 4, 4, 4) > 0.5).float()
    target[1] = 0  # an empty patch too
    loss_fn = AdvancedComboLoss()
    perfect = loss_fn((target * 2 - 1) * 30, target)
    # Only the focal clamp floor remains: 0.4 * 1e-7 ** 0.75.
    assert perfect.item() == pytest.approx(0.4 * FOCAL_CLAMP**0.75, abs=1e-6)
    for _ in range(5):
        assert loss_fn(torch.randn_like(target) * 3, target) > perfect


@pytest.mark.parametrize("logit", [-30.0, -2.0, 0.0])
def test_empty_patch_is_finite_and_false_positives_still_cost(logit: float) -> None:
    logits = torch.full((1, 1, 2, 2, 2), logit, requires_grad=True)
    target = torch.zeros(1, 1, 2, 2, 2)
    parts = AdvancedComboLoss().components(logits, target)
    parts["total"].backward()
    assert all(torch.isfinite(v) for v in parts.values())
    assert torch.isfinite(logits.grad).all()
    if logit > -30:
        assert parts["dice"] > 0 and parts["focal_tversky"] > 0
        assert (logits.grad > 0).all()  # every voxel is pushed towards background


def test_focal_gradient_is_finite_at_and_below_the_clamp() -> None:
    target = _patch([1, 1, 1, 1, 0, 0, 0, 0])
    logits = ((target * 2 - 1) * 100).requires_grad_()  # sigmoid is exactly 1 / ~0: 1 - TI ~ 0
    loss = focal_tversky_loss(logits, target, gamma=0.75)
    loss.backward()
    assert loss.item() == pytest.approx(FOCAL_CLAMP**0.75)
    assert torch.isfinite(logits.grad).all()
    # Just above the clamp the slope of x ** 0.75 is large but finite (0.75 * x ** -0.25).
    logits = (target * 2 - 1).mul(8.0).requires_grad_()
    focal_tversky_loss(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_bce_is_stable_for_large_logits() -> None:
    target = _patch([1, 0, 1, 0, 1, 0, 1, 0])
    assert bce_loss((target * 2 - 1) * 200, target).item() == pytest.approx(0.0, abs=1e-12)
    assert bce_loss((1 - target * 2) * 200, target).item() == pytest.approx(200.0)


def test_half_precision_logits_are_summed_in_float32() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 4, 4, 4)
    target = (torch.rand(1, 1, 4, 4, 4) > 0.5).float()
    loss_fn = AdvancedComboLoss()
    low = loss_fn(logits.bfloat16(), target.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(loss_fn(logits.bfloat16().float(), target).item(), abs=1e-6)


def test_agrees_with_monai() -> None:
    monai_losses = pytest.importorskip("monai.losses")
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 5, 4, 3) * 2
    target = (torch.rand(3, 1, 5, 4, 3) > 0.6).float()
    target[2] = 0  # one empty patch
    for smooth in (1.0, 1e-5):
        monai_dice = monai_losses.DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth, batch=False)
        torch.testing.assert_close(
            dice_loss(logits, target, smooth=smooth), monai_dice(logits, target), rtol=0, atol=1e-5
        )
        # MONAI's alpha weighs false positives and beta false negatives: swap.
        monai_tversky = monai_losses.TverskyLoss(
            sigmoid=True, alpha=0.3, beta=0.7, smooth_nr=smooth, smooth_dr=smooth, batch=False
        )
        ours = focal_tversky_loss(logits, target, alpha=0.7, beta=0.3, gamma=1.0, smooth=smooth)
        torch.testing.assert_close(ours, monai_tversky(logits, target), rtol=0, atol=1e-5)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="differs from target shape"):
        AdvancedComboLoss()(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 2, 2, 2))


@pytest.mark.parametrize(
    "config",
    [LossConfig(smooth=0.0), LossConfig(gamma=0.0), LossConfig(alpha=-0.1), LossConfig(bce_weight=-1.0)],
)
def test_bad_config_is_refused(config: LossConfig) -> None:
    with pytest.raises(ConfigError):
        AdvancedComboLoss(config)


# ------------------------------------------------------------------------ stage 2: nested regions


def test_region_targets_nest_tumour_inside_liver() -> None:
    label = torch.tensor([0, 1, 2, 2, 1, 0, 0, 2], dtype=torch.float32).reshape(1, 1, 2, 2, 2)
    target = region_targets(label)
    assert target.shape == (1, 2, 2, 2, 2)
    assert target[0, 0].flatten().tolist() == [0, 1, 1, 1, 1, 0, 0, 1]  # liver-or-tumour
    assert target[0, 1].flatten().tolist() == [0, 0, 1, 1, 0, 0, 0, 1]  # tumour
    assert torch.all(target[:, 1] <= target[:, 0])


@pytest.mark.parametrize("weight", [0.0, 1.0, 2.0])
def test_region_loss_is_the_weighted_mean_of_the_two_channel_losses(weight: float) -> None:
    # channel 0 gets MIXED (its target is the liver-or-tumour region), channel 1 EMPTY (no tumour):
    # the label map is 1 where MIXED's target is 1, else 0
    logits = torch.cat([MIXED[0], EMPTY[0]], dim=1)
    label = MIXED[1].clone()
    combo = AdvancedComboLoss()
    expected = (float(combo(*MIXED)) + weight * float(combo(*EMPTY))) / (1 + weight)
    assert float(RegionLoss(LossConfig(), tumour_weight=weight)(logits, label)) == pytest.approx(expected, rel=1e-6)


def test_region_loss_tumour_channel_sees_tumour_labels() -> None:
    # label 2 where MIXED's target is 1: both channels have MIXED's target
    logits = torch.cat([MIXED[0], MIXED[0]], dim=1)
    loss = RegionLoss(LossConfig(), tumour_weight=3.0)(logits, MIXED[1] * 2)
    assert float(loss) == pytest.approx(float(AdvancedComboLoss()(*MIXED)), rel=1e-6)


def test_region_loss_batch_dice_scores_the_tumour_channel_over_the_batch() -> None:
    # sample 0: tumour where MIXED's target is 1; sample 1: no tumour, p = .25 (EMPTY). Per sample the
    # empty one costs its own Dice 1 - 1/3; over the batch it only adds 2 to sum p (1 - 5.5/10.5)
    logits = torch.cat([torch.cat([MIXED[0], MIXED[0]], dim=1), torch.cat([EMPTY[0], EMPTY[0]], dim=1)])
    label = torch.cat([MIXED[1] * 2, EMPTY[1]])
    combo = AdvancedComboLoss()
    liver = (float(combo(*MIXED)) + float(combo(*EMPTY))) / 2  # per sample, with or without batch_dice
    joined = float(combo(torch.cat([MIXED[0], EMPTY[0]], dim=-1), torch.cat([MIXED[1], EMPTY[1]], dim=-1)))
    per_sample = float(RegionLoss(LossConfig(), tumour_weight=2.0)(logits, label))
    batch = float(RegionLoss(LossConfig(), tumour_weight=2.0, batch_dice=True)(logits, label))
    assert per_sample == pytest.approx((liver + 2.0 * liver) / 3.0, rel=1e-6)
    assert batch == pytest.approx((liver + 2.0 * joined) / 3.0, rel=1e-6)
    assert float(dice_loss(torch.cat([MIXED[0], EMPTY[0]], dim=-1), torch.cat([MIXED[1], EMPTY[1]], dim=-1))) \
        == pytest.approx(1 - 5.5 / 10.5, rel=1e-6)
    # what it is for: a false-positive voxel of the tumour-free patch is pushed down less hard
    grads = []
    for batch_dice in (False, True):
        x = logits.clone().requires_grad_(True)
        RegionLoss(LossConfig(), tumour_weight=2.0, batch_dice=batch_dice)(x, label).backward()
        grads.append(float(x.grad[1, 1].abs().sum()))
    assert grads[1] < grads[0]


def test_region_loss_refuses_bad_shapes_and_weights() -> None:
    with pytest.raises(ValueError, match=r"logits \[N, 2, ...\]"):
        RegionLoss()(MIXED[0], MIXED[1])
    with pytest.raises(ConfigError, match="tumour_weight"):
        RegionLoss(tumour_weight=-1.0)


def test_make_loss_follows_the_stage() -> None:
    assert isinstance(make_loss(get_preset("paper")), AdvancedComboLoss)
    loss = make_loss(get_preset("tumour"))
    assert isinstance(loss, RegionLoss) and loss.tumour_weight == get_preset("tumour").region.tumour_weight
    assert loss.batch_dice == get_preset("tumour").region.batch_dice
