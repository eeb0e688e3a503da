"""Augmentation: reproducible for a seed, image and label moved together, labels stay binary."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from livseg.config import AugmentConfig
from livseg.data.augmentation import augment

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
    overlap = 2 * np.count_nonzero(moved & (out_label > 0)) / (np.count_nonzero(moved) + np.count_nonzero(out_label))
    assert overlap > 0.9
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
