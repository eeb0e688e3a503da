"""The multi-organ head and its partial-label loss (livseg.nn.partial_loss), hand-computed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from livseg.config import ModelConfig, RunConfig, validate_config
from livseg.data.organ_classes import CLASSES, legend
from livseg.errors import ConfigError
from livseg.nn.model import UNet3D
from livseg.nn.partial_loss import PartialLabelLoss, merged_log_probs, partial_label_loss

# two voxels, three classes (background, liver, stomach); logits = log of the probabilities
PROBS = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])  # voxel 1, voxel 2
LOGITS = PROBS.log().T.reshape(1, 3, 2, 1, 1)  # [N=1, C=3, X=2, Y=1, Z=1]
TARGET = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]).T.reshape(1, 3, 2, 1, 1)  # voxel 1 liver, voxel 2 background


@pytest.mark.parametrize(
    ("labels_stomach", "expected"),
    [
        # the case labels only the liver: voxel 2's background probability is 0.2 + 0.6 (stomach merged
        # in); CE = -(ln 0.3 + ln 0.8) / 2; Dice over the liver only: TP 0.3, sum p 0.5, sum t 1,
        # 1 - (0.6 + 1) / (1.5 + 1) = 0.36
        (False, -(math.log(0.3) + math.log(0.8)) / 2 + 0.36),
        # it labels the stomach too: CE = -(ln 0.3 + ln 0.2) / 2; Dice liver 0.36, stomach (absent,
        # 0.8 predicted) 1 - 1 / (0.8 + 1) = 0.4444; mean 0.40222
        (True, -(math.log(0.3) + math.log(0.2)) / 2 + (0.36 + (1 - 1 / 1.8)) / 2),
    ],
)
def test_partial_label_loss_hand_computed(labels_stomach: bool, expected: float) -> None:
    labelled = torch.tensor([[True, True, labels_stomach]])
    loss = partial_label_loss(LOGITS, TARGET, labelled)
    assert float(loss) == pytest.approx(expected, abs=1e-5)
    assert float(PartialLabelLoss()(LOGITS, TARGET, labelled)) == pytest.approx(expected, abs=1e-5)


def test_unlabelled_class_gets_no_gradient_towards_background() -> None:
    """A liver-only case: raising the stomach's logit on its background voxel costs nothing ..."""
    logits = LOGITS.clone().requires_grad_(True)
    partial_label_loss(logits, TARGET, torch.tensor([[True, True, False]]), dice_weight=0.0).backward()
    # voxel 2 is background, q = p_bg + p_stomach = 0.8: d(-ln q)/dl_k = p_k for the liver and
    # -p_k (1 - q) / q for background and stomach; the CE averages over 2 voxels
    grad = logits.grad[0, :, 1, 0, 0]
    assert float(grad[1]) == pytest.approx(0.2 / 2, abs=1e-6)  # liver pushed down
    assert float(grad[0]) == pytest.approx(-0.2 * 0.2 / 0.8 / 2, abs=1e-6)
    assert float(grad[2]) == pytest.approx(-0.6 * 0.2 / 0.8 / 2, abs=1e-6)  # stomach pushed *up* with background
    # ... while a case that labels the stomach pushes it down there
    logits.grad = None
    partial_label_loss(logits, TARGET, torch.tensor([[True, True, True]]), dice_weight=0.0).backward()
    assert float(logits.grad[0, 2, 1, 0, 0]) > 0


def test_merged_log_probs_and_batch_mixing() -> None:
    labelled = torch.tensor([[True, True, False], [True, True, True]])
    logits = torch.cat([LOGITS, LOGITS])
    merged = merged_log_probs(logits, labelled)
    assert torch.allclose(merged[0, 0, 1].exp(), torch.tensor(0.8))
    assert torch.isinf(merged[0, 2]).all() and torch.allclose(merged[1, 2].exp(), PROBS[:, 2].reshape(2, 1, 1))
    # batch Dice counts the stomach of the second case only: total = mean of the two single-case CEs
    # plus Dice(liver over both) and Dice(stomach over case 2)
    loss = partial_label_loss(logits, torch.cat([TARGET, TARGET]), labelled)
    ce = (-(math.log(0.3) + math.log(0.8)) / 2 - (math.log(0.3) + math.log(0.2)) / 2) / 2
    dice_liver = 1 - (2 * 0.6 + 1) / (1.0 + 2.0 + 1)
    assert float(loss) == pytest.approx(ce + (dice_liver + (1 - 1 / 1.8)) / 2, abs=1e-5)


def test_partial_label_loss_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="background"):
        partial_label_loss(LOGITS, TARGET, torch.tensor([[False, True, True]]))
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        partial_label_loss(LOGITS, TARGET, torch.tensor([True, True, True]))
    with pytest.raises(ValueError):
        PartialLabelLoss(smooth=0.0)


def test_multi_class_head_shapes_and_legend() -> None:
    config = ModelConfig(channels=(4, 8, 16), out_channels=len(CLASSES), classes=CLASSES, dropout=0.0)
    validate_config(RunConfig(model=config, preprocess=RunConfig().preprocess))
    model = UNet3D(config).eval()
    logits = model(torch.zeros(2, 1, 16, 8, 12))
    assert logits.shape == (2, len(CLASSES), 16, 8, 12)
    probs = torch.softmax(logits, 1)
    assert torch.allclose(probs.sum(1), torch.ones(2, 16, 8, 12), atol=1e-5)
    assert legend() == {"0": "background", "1": "liver", "2": "stomach", "3": "spleen", "4": "kidney",
                        "5": "gallbladder", "6": "bowel", "7": "heart", "8": "vessels"}
    assert legend(config.classes) == legend()
    # classes must match the head, start with background and hold the liver
    for bad in (ModelConfig(out_channels=3, classes=("background", "liver")),
                ModelConfig(out_channels=2, classes=("liver", "background")),
                ModelConfig(out_channels=2, classes=("background", "stomach"))):
        with pytest.raises(ConfigError, match="model.classes"):
            validate_config(RunConfig(model=bad))
    assert np.all(np.isfinite(logits.detach().numpy()))


def test_expand_head_keeps_the_liver_networks_prediction() -> None:
    from livseg.nn.heads import expand_head

    torch.manual_seed(0)
    binary = UNet3D(ModelConfig(channels=(4, 8), dropout=0.0)).eval()
    config = ModelConfig(channels=(4, 8), dropout=0.0, out_channels=3, classes=("background", "liver", "stomach"))
    multi = UNet3D(config).eval()
    multi.load_state_dict(expand_head(binary.state_dict(), config.classes, other_bias=-30.0))
    x = torch.randn(1, 1, 8, 8, 4)
    with torch.no_grad():
        sigmoid = torch.sigmoid(binary(x))[0, 0]
        softmax = torch.softmax(multi(x), 1)[0]
    # with the stomach at e^-30 the two-class softmax is the sigmoid
    assert torch.allclose(softmax[1], sigmoid, atol=1e-6)
    assert torch.allclose(softmax[0], 1 - sigmoid, atol=1e-6)
    with pytest.raises(ValueError, match="one-output"):
        expand_head(multi.state_dict(), config.classes)


def test_unlabelled_classes_can_travel_in_the_target() -> None:
    from livseg.nn.partial_loss import UNLABELLED, split_target

    marked = TARGET.clone()
    marked[:, 2] = UNLABELLED  # the stomach channel of a liver-only case
    target, labelled = split_target(marked)
    assert labelled.tolist() == [[True, True, False]] and float(target.min()) == 0.0
    assert float(PartialLabelLoss()(LOGITS, marked)) == pytest.approx(
        float(partial_label_loss(LOGITS, TARGET, torch.tensor([[True, True, False]]))), abs=1e-6)
