"""Multi-organ models on the one training path: partial-label targets, init from a liver network,
fine-tuning on liver-only data (livseg.training with model.classes)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY_PATCHES
from livseg.config import ModelConfig
from livseg.data.organ_classes import CLASSES
from livseg.nn.checkpoint import load_checkpoint, save_checkpoint
from livseg.nn.model import UNet3D
from livseg.nn.partial_loss import UNLABELLED
from livseg.training.init import widen_head
from livseg.training.patches import PatchCase, PatchSampler
from livseg.training.train import train

MULTI = dataclasses.replace(TINY_PATCHES, model=ModelConfig(channels=(4, 8), out_channels=len(CLASSES),
                                                            classes=CLASSES))


def with_train(config, **changes):  # noqa: ANN001, ANN201
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


def test_sampler_targets_mark_what_a_case_does_not_label() -> None:
    shape = (16, 16, 8)
    share = np.zeros(shape, np.uint8)
    share[4:12, 4:12, 2:6] = 255
    other = np.zeros(shape, np.uint8)
    other[12:, :, :] = CLASSES.index("stomach")
    organ = PatchCase("organs", np.zeros(shape, np.float32), share, label_scale=255, other=other, classes=CLASSES)
    lits = PatchCase("lits", np.zeros(shape, np.float32), share, label_scale=255)  # background and liver only
    config = dataclasses.replace(with_train(MULTI, augment=dataclasses.replace(MULTI.train.augment, enabled=False)),
                                 patches=dataclasses.replace(MULTI.patches, foreground=1.0))
    sampler = PatchSampler([organ, lits], config, seed=0)
    batch = sampler.batch()
    label = batch["label"]
    assert label.shape == (2, len(CLASSES), *shape)
    for n in range(2):
        is_lits = bool((label[n, CLASSES.index("stomach")] == UNLABELLED).all())
        if is_lits:  # every neighbour channel is unlabelled; background + liver sum to 1
            assert all(bool((label[n, c] == UNLABELLED).all()) for c in range(2, len(CLASSES)))
            assert torch.allclose(label[n, :2].sum(0), torch.ones(shape))
        else:
            assert torch.allclose(label[n].sum(0), torch.ones(shape))
            assert float(label[n, CLASSES.index("stomach")].sum()) > 0


def test_widen_head_starts_a_multi_organ_model_from_a_liver_network(tmp_path: Path) -> None:
    torch.manual_seed(0)
    binary = UNet3D(TINY_PATCHES.model)
    path = save_checkpoint(tmp_path / "liver.pt", config=TINY_PATCHES, model_state=binary.state_dict())
    widened = widen_head(load_checkpoint(path), MULTI)
    assert widened.config.model == MULTI.model
    liver = CLASSES.index("liver")
    assert torch.equal(widened.model_state["head.weight"][liver], binary.state_dict()["head.weight"][0])
    assert torch.equal(widened.model_state["head.weight"][2], torch.zeros_like(binary.state_dict()["head.weight"][0]))
    # other architecture changes are not widening: left for check_init_config to refuse
    other = dataclasses.replace(MULTI, model=dataclasses.replace(MULTI.model, channels=(4, 16)))
    assert widen_head(load_checkpoint(path), other).config.model == TINY_PATCHES.model


def test_multi_organ_run_from_a_liver_network_and_fine_tuned_on_liver_only_data(
        tumour_cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import livseg.training.inputs as inputs
    from livseg.inference.segment import segment
    from livseg.data.io.volume import load_volume
    from livseg.training.phantoms import write_phantom_cache

    binary = train(tumour_cases, tmp_path / "liver", with_train(TINY_PATCHES, epochs=1, val_fraction=0.0),
                   device="cpu", progress=False)
    # organ-labelled phantoms mixed in (every class labelled), the LiTS-style cases label the liver only
    monkeypatch.setattr(inputs, "write_phantom_cache", functools.partial(write_phantom_cache, shape=(48, 48, 32)))
    config = dataclasses.replace(with_train(MULTI, epochs=1, val_fraction=0.4),
                                 patches=dataclasses.replace(MULTI.patches, phantoms=1))
    result = train(tumour_cases, tmp_path / "multi", config, init=binary.paths["best"], device="cpu", progress=False)
    assert 0.0 <= result.best_score <= 1.0  # validated on the CTs' own grids through segment()
    other = np.load(tmp_path / "multi" / "phantoms" / "phantom-0_other.npy")
    assert set(np.unique(other)) - {0} and other.max() < len(CLASSES)  # the phantom's neighbours are there
    best = load_checkpoint(result.paths["best"])
    assert best.config.model.classes == CLASSES and best.config.train.init == str(binary.paths["best"])
    ct = load_volume(tumour_cases / "volume-0.nii.gz")
    seg = segment(ct, str(result.paths["best"]), organs=True)
    assert seg.organs.shape == ct.shape and seg.legend["1"] == "liver"


def test_mark_unlabelled_refills_padding_with_background_and_marks_missing_classes() -> None:
    from livseg.training.patches import mark_unlabelled

    classes = ("background", "liver", "stomach")
    target = torch.zeros(2, 3, 2, 1, 1)
    # voxel 0: liver 0.5 + stomach 0.25, background lost to zero padding -> refilled to 0.25
    target[:, 1, 0], target[:, 2, 0] = 0.5, 0.25
    # voxel 1: all padding -> background 1
    marked = mark_unlabelled(target, [classes, ("background", "liver")], classes)
    assert marked[0, :, 0].flatten().tolist() == [0.25, 0.5, 0.25]
    assert marked[0, :, 1].flatten().tolist() == [1.0, 0.0, 0.0]
    assert bool((marked[1, 2] == UNLABELLED).all())  # the second case does not label the stomach
    assert marked[1, 0, 0].item() == 0.25 and marked[1, 1, 0].item() == 0.5
    assert target[0, 0].abs().sum() == 0  # the input is not changed


def test_organ_cases_round_trip_through_a_cache(tmp_path: Path) -> None:
    from livseg.config import to_dict
    from livseg.data.cache import MANIFEST_FILE, CachedDataset, open_cache, store_organ_case
    from livseg.data.io.files import write_json

    manifest = open_cache(tmp_path, to_dict(TINY_PATCHES.preprocess))
    share = np.zeros((4, 4, 2), np.uint8)
    share[:2] = 255  # 16 liver voxels
    share[2, 0, 0] = 51  # + 0.2 of one
    other = np.full(share.shape, CLASSES.index("spleen"), np.uint8)
    entry = store_organ_case(tmp_path, "c", np.zeros(share.shape, np.float16), share, other, CLASSES[:4],
                             source={"image": "x", "label": "x", "image_stamp": None, "label_stamp": None},
                             voxel_ml=0.5)
    assert entry["liver_ml"] == pytest.approx(16.2 * 0.5) and entry["classes"] == list(CLASSES[:4])
    manifest["cases"]["c"] = entry
    write_json(tmp_path / MANIFEST_FILE, manifest)
    cases = CachedDataset(tmp_path, ["c"])
    assert cases.classes == [tuple(CLASSES[:4])] and np.array_equal(cases.others[0], other)
    assert float(cases[0]["label"].max()) == 1.0  # the liver's share, divided by 255


def test_make_loss_of_a_multi_organ_model_is_the_partial_label_loss() -> None:
    from livseg.nn.losses import AdvancedComboLoss, make_loss
    from livseg.nn.partial_loss import PartialLabelLoss

    assert isinstance(make_loss(MULTI), PartialLabelLoss)
    assert isinstance(make_loss(TINY_PATCHES), AdvancedComboLoss)
