"""Augmentation: reproducible for a seed, image and label moved together, labels stay binary, and
the torch implementation equal (to float precision) to the scipy one it replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from livseg.config import AugmentConfig
from livseg.data.augmentation import augment, augment_batch, draw_params
from livseg.evaluation.metrics import dice

SHAPE = (24, 20, 12)
SPATIAL_ONLY = AugmentConfig(
    enabled=True, flip_prob=0.5, rotate_deg=15.0, scale_range=0.15, prob=1.0,
    intensity_shift=0.0, intensity_scale=0.0, noise_std=0.0,
)
OFF = AugmentConfig(
    enabled=True, flip_prob=0.0, rotate_deg=0.0, scale_range=0.0, prob=0.0,
    intensity_shift=0.0, intensity_scale=0.0, noise_std=0.0,
)


def cube_pair(offset: tuple[int, int, int] = (4, 3, 2)) -> tuple[np.ndarray, np.ndarray]:
    """An off-centre labelled box whose CT intensity is exactly the label (1 inside, 0 outside)."""
    label = np.zeros(SHAPE, dtype=np.float32)
    x, y, z = offset
    label[x : x + 10, y : y + 8, z : z + 6] = 1
    return label.copy(), label


def test_same_seed_same_output_and_different_seed_differs() -> None:
    image, label = cube_pair()
    image = image + np.random.default_rng(5).normal(0, 0.1, SHAPE).astype(np.float32)
    config = AugmentConfig(enabled=True, prob=1.0)
    a = augment(image, label, config, np.random.default_rng(7))
    b = augment(image, label, config, np.random.default_rng(7))
    c = augment(image, label, config, np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_inputs_are_not_modified() -> None:
    image, label = cube_pair()
    image_copy, label_copy = image.copy(), label.copy()
    augment(image, label, AugmentConfig(enabled=True, prob=1.0, flip_prob=1.0), np.random.default_rng(0))
    assert np.array_equal(image, image_copy) and np.array_equal(label, label_copy)


@pytest.mark.parametrize("seed", range(6))
def test_image_and_label_stay_aligned_and_binary(seed: int) -> None:
    image, label = cube_pair()
    out_image, out_label = augment(image, label, SPATIAL_ONLY, np.random.default_rng(seed))
    assert out_image.shape == SHAPE and out_label.shape == SHAPE
    assert out_image.dtype == np.float32 and out_label.dtype == np.float32
    assert set(np.unique(out_label)) <= {0.0, 1.0}
    # the image was the label, so its linearly-resampled 0.5 level set must be the label moved
    # by nearest neighbour: identical but for boundary voxels
    moved = out_image >= 0.5
    assert dice(moved, out_label > 0) > 0.9
    assert np.allclose(ndimage.center_of_mass(moved), ndimage.center_of_mass(out_label), atol=0.5)


def test_transform_actually_moves_the_volume() -> None:
    image, label = cube_pair()
    moved = [augment(image, label, SPATIAL_ONLY, np.random.default_rng(s))[1] for s in range(4)]
    assert any(not np.array_equal(m, label) for m in moved)


def test_integer_labels_stay_integer_and_in_their_value_set() -> None:
    image, label = cube_pair()
    out_image, out_label = augment(image, label.astype(np.uint8), SPATIAL_ONLY, np.random.default_rng(1))
    assert out_label.dtype == np.uint8 and set(np.unique(out_label)) <= {0, 1}


def test_flips_are_exact() -> None:
    rng = np.random.default_rng(0)
    image = rng.random(SHAPE, dtype=np.float32)
    label = (rng.random(SHAPE) > 0.5).astype(np.float32)
    config = AugmentConfig(
        enabled=True, flip_prob=1.0, prob=0.0, intensity_shift=0.0, intensity_scale=0.0, noise_std=0.0
    )
    out_image, out_label = augment(image, label, config, np.random.default_rng(3))
    assert np.array_equal(out_image, np.flip(image, (0, 1, 2)))
    assert np.array_equal(out_label, np.flip(label, (0, 1, 2)))
    assert out_image.flags["C_CONTIGUOUS"] and out_label.flags["C_CONTIGUOUS"]


def test_everything_off_is_the_identity() -> None:
    rng = np.random.default_rng(0)
    image, label = rng.random(SHAPE, dtype=np.float32), (rng.random(SHAPE) > 0.5).astype(np.float32)
    out_image, out_label = augment(image, label, OFF, np.random.default_rng(1))
    assert np.array_equal(out_image, image) and np.array_equal(out_label, label)


def test_intensity_is_an_affine_map_within_range() -> None:
    rng = np.random.default_rng(0)
    image, label = rng.random(SHAPE, dtype=np.float32), np.zeros(SHAPE, dtype=np.float32)
    config = AugmentConfig(
        enabled=True, flip_prob=0.0, prob=0.0, intensity_shift=0.05, intensity_scale=0.1, noise_std=0.0
    )
    out_image, out_label = augment(image, label, config, np.random.default_rng(2))
    gain, shift = np.polyfit(image.ravel(), out_image.ravel(), 1)
    assert 0.9 <= gain <= 1.1 and -0.05 <= shift <= 0.05
    assert np.allclose(out_image, gain * image + shift, atol=1e-5)
    assert np.array_equal(out_label, label)


def test_noise_has_the_configured_spread() -> None:
    image, label = np.zeros((40, 40, 20), np.float32), np.zeros((40, 40, 20), np.float32)
    config = AugmentConfig(
        enabled=True, flip_prob=0.0, prob=0.0, intensity_shift=0.0, intensity_scale=0.0, noise_std=0.02
    )
    out_image, _ = augment(image, label, config, np.random.default_rng(0))
    assert out_image.std() == pytest.approx(0.02, rel=0.05)


def test_channel_axis_is_supported() -> None:
    image, label = cube_pair()
    out_image, out_label = augment(image[None], label[None], SPATIAL_ONLY, np.random.default_rng(4))
    ref_image, ref_label = augment(image, label, SPATIAL_ONLY, np.random.default_rng(4))
    assert out_image.shape == (1, *SHAPE)
    assert np.array_equal(out_image[0], ref_image) and np.array_equal(out_label[0], ref_label)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="spatial shape"):
        augment(np.zeros((8, 8, 8)), np.zeros((8, 8, 4)), OFF, np.random.default_rng(0))


# ----------------------------------------------------------------- torch on the training device


def fixed(angle_deg: float = 0.0, scale: float = 1.0, *, affine: bool = True, flip=(False, False, False),
          gain: float = 1.0, shift: float = 0.0, noise_std: float = 0.0) -> dict[str, torch.Tensor]:
    """Hand-set parameters of one sample, batched as the DataLoader collates them."""
    return {
        "flip": torch.tensor([flip]), "affine": torch.tensor([affine]),
        "angle": torch.tensor([math.radians(angle_deg)], dtype=torch.float64),
        "scale": torch.tensor([scale], dtype=torch.float64), "gain": torch.tensor([gain], dtype=torch.float64),
        "shift": torch.tensor([shift], dtype=torch.float64),
        "noise_std": torch.tensor([noise_std], dtype=torch.float64), "noise_seed": torch.tensor([7]),
    }


def smooth_volume(shape=SHAPE) -> np.ndarray:
    """A smooth off-centre blob in [0, 1] (linear interpolation of it is nearly exact)."""
    grid = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in shape), indexing="ij")
    centre = (np.array(shape) - 1) / 2 + (3.0, -2.0, 1.0)
    return np.exp(-sum(((g - c) / 5.0) ** 2 for g, c in zip(grid, centre))).astype(np.float32)


def batch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))[None, None]


def test_identity_params_give_the_identity() -> None:
    image = batch(np.random.default_rng(0).random(SHAPE, dtype=np.float32))
    label = batch((np.random.default_rng(1).random(SHAPE) > 0.5).astype(np.float32))
    out_image, out_label = augment_batch(image, label, fixed(0.0, 1.0))  # grid_sample on the identity grid
    torch.testing.assert_close(out_image, image, atol=1e-5, rtol=0)
    assert torch.equal(out_label, label)
    out_image, out_label = augment_batch(image, label, fixed(affine=False))
    assert torch.equal(out_image, image) and torch.equal(out_label, label)


@pytest.mark.parametrize("angle", [-10.0, 4.0, 15.0])
def test_a_known_rotation_matches_scipy_rotate(angle: float) -> None:
    image = smooth_volume()
    label = (image > 0.3).astype(np.float32)
    out_image, out_label = augment_batch(batch(image), batch(label), fixed(angle))
    # the output-to-input matrix R(angle) is scipy's rotation by -angle in the (x, y) plane
    expected = ndimage.rotate(image, -angle, axes=(0, 1), reshape=False, order=1, mode="nearest")
    np.testing.assert_allclose(out_image[0, 0].numpy(), expected, atol=1e-5)
    expected_label = ndimage.rotate(label, -angle, axes=(0, 1), reshape=False, order=0, mode="nearest")
    assert set(np.unique(out_label.numpy())) <= {0.0, 1.0}
    assert np.mean(out_label[0, 0].numpy() == expected_label) > 0.995  # ties at half voxels may round apart


@pytest.mark.parametrize("seed", range(4))
def test_rotation_and_scaling_match_the_scipy_implementation_they_replace(seed: int) -> None:
    image = smooth_volume()
    rng = np.random.default_rng(seed)
    angle, scale = rng.uniform(-15, 15), rng.uniform(0.85, 1.15)
    out_image, _ = augment_batch(batch(image), batch(image > 0.3), fixed(angle, scale))
    # the former scipy path: ndimage.affine_transform with the output-to-input matrix R / scale
    a = math.radians(angle)
    matrix = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]) / scale
    centre = (np.array(SHAPE) - 1) / 2
    expected = ndimage.affine_transform(image, matrix, offset=centre - matrix @ centre, order=1, mode="nearest",
                                        prefilter=False)
    np.testing.assert_allclose(out_image[0, 0].numpy(), expected, atol=1e-5)


def test_batch_samples_get_their_own_transforms_and_noise() -> None:
    image = batch(smooth_volume()).repeat(2, 1, 1, 1, 1)
    label = (image > 0.3).float()
    params = {k: torch.cat([a, b]) for (k, a), b in zip(fixed(10.0, noise_std=0.02).items(),
                                                        fixed(affine=False, flip=(True, False, False)).values())}
    out_image, out_label = augment_batch(image, label, params)
    single, _ = augment_batch(image[:1], label[:1], fixed(10.0, noise_std=0.02))
    assert torch.equal(out_image[:1], single)  # noise from the sample's own seed, not a shared stream
    assert torch.equal(out_label[1], torch.flip(label[1], [1]))


def test_drawn_parameters_have_the_configured_distribution() -> None:
    config = AugmentConfig(enabled=True, flip_prob=0.5, rotate_deg=10.0, scale_range=0.1, prob=0.8)
    rng = np.random.default_rng(0)
    draws = [draw_params(config, rng) for _ in range(2000)]
    flips = torch.stack([d["flip"] for d in draws]).float()
    assert flips.mean(0).sub(0.5).abs().max() < 0.04
    assert abs(torch.stack([d["affine"] for d in draws]).float().mean() - 0.8) < 0.03
    angles = torch.stack([d["angle"] for d in draws])
    assert angles.abs().max() <= math.radians(10.0) and angles.mean().abs() < 0.01
    scales = torch.stack([d["scale"] for d in draws])
    assert 0.9 <= scales.min() and scales.max() <= 1.1
