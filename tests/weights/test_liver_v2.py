"""The shipped multi-organ model (src/livseg/weights/liver-v2.pt): lean, loadable, its legend, and
it tells a phantom's liver and stomach apart."""

from __future__ import annotations

import numpy as np
import torch

from livseg.data.io.volume import Volume
from livseg.data.organ_classes import CLASSES, phantom_lut, to_classes
from livseg.evaluation.metrics import dice
from livseg.inference.segment import load_model, segment
from livseg.nn.checkpoint import load_checkpoint
from livseg.phantom.generator import make_phantom
from livseg.weights import builtin_path, list_models, model_card

NAME = "liver-v2"
# measured on the shipped weights (2026-12-03, phantom seed 12347, drawn by no build): liver Dice
# 0.975, stomach Dice 0.18, 0.5 % of the true stomach called liver. The stomach is found poorly
# (seeds 12345-12347: stomach Dice 0.01-0.23, the model card says so) but is not called liver:
# "apart" is asserted on that, the Dice floors only guard against a broken model.
LIVER_MIN = 0.95
STOMACH_MIN = 0.15


def test_liver_v2_is_shipped_lean_with_its_card() -> None:
    assert NAME in list_models()
    with builtin_path(NAME) as path:
        assert path.stat().st_size <= 15 * 1024**2  # the limit
        payload = torch.load(path, map_location="cpu", weights_only=True)
        checkpoint = load_checkpoint(path)
    assert "optimizer" not in payload and "rng" not in payload  # prediction only
    assert all(v.dtype == torch.float16 for v in payload["model"].values() if v.is_floating_point())
    assert checkpoint.config.model.classes == CLASSES and checkpoint.config.model.out_channels == len(CLASSES)
    assert checkpoint.config.preprocess.spacing == (3.0, 3.0, 3.0)
    card = model_card(NAME)
    for needed in ("CC BY 4.0", "Wasserthal", "Apache-2.0", "MIT", "CC BY-NC-ND", "LiTS", "not for clinical use",
                   "build_liver_v2.py", "liver_v2_rule.py"):
        assert needed in card, needed


def test_liver_v2_segments_a_phantoms_liver_and_stomach_apart() -> None:
    phantom = make_phantom(12347, shape=(160, 160, 64), debug=True)  # a seed no build drew
    truth = to_classes(phantom.organs, phantom_lut(CLASSES))
    liver, stomach = CLASSES.index("liver"), CLASSES.index("stomach")
    assert np.count_nonzero(truth == stomach) > 10_000  # the phantom has a stomach to find
    result = segment(Volume(phantom.ct, phantom.affine), load_model(f"builtin:{NAME}", "cpu"), organs=True)
    assert result.organs is not None and result.organs.shape == phantom.labels.shape
    assert result.legend[str(stomach)] == "stomach"
    assert np.array_equal(result.organs == liver, result.mask > 0)  # the liver of the map is the mask
    assert dice(result.mask, phantom.labels > 0) >= LIVER_MIN
    assert dice(result.organs == stomach, truth == stomach) >= STOMACH_MIN
    # apart: almost none of the true stomach is called liver
    assert np.count_nonzero((result.mask > 0) & (truth == stomach)) <= 0.02 * np.count_nonzero(truth == stomach)
