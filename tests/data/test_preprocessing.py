"""livseg.data.preprocessing: hand-computed windowing, scipy-equivalent resampling, real-mask inverse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from livseg.config import PreprocessConfig
from livseg.data.io.volume import Volume, load_labels, load_volume
from livseg.data.preprocessing import (
    binarize,
    preprocess_image,
    preprocess_labels,
    resample_linear,
    resample_nearest,
    to_original_grid,
    unwindow,
    window,
)

HU = np.array([-1000.0, -100.0, 0.0, 150.0, 400.0, 1000.0], dtype=np.float32)


def test_window_hand_values_and_dtype() -> None:
    out = window(HU)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.2, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(window(np.array([0.0, 50.0]), hu_min=0, hu_max=100), [0.0, 0.5])


def test_unwindow_inverts_window_on_its_range() -> None:
    np.testing.assert_allclose(unwindow(np.array([0.0, 0.2, 0.5, 1.0])), [-100.0, 0.0, 150.0, 400.0])
    np.testing.assert_allclose(unwindow(window(HU)), np.clip(HU, -100, 400), atol=1e-4)  # clipped ends stay there
    assert unwindow(np.array([0.5]), hu_min=0, hu_max=100).dtype == np.float32


def test_binarize_tumour_counts_as_liver() -> None:
    np.testing.assert_array_equal(binarize(np.array([0, 1, 2, 0])), [0, 1, 1, 0])


RESAMPLE_CASES = [((13, 17, 9), (7, 20, 4)), ((64, 64, 33), (160, 160, 80)), ((40, 30, 20), (16, 16, 8)), ((5, 6, 7), (5, 6, 7))]


@pytest.mark.parametrize("source, target", RESAMPLE_CASES)
def test_resampling_equals_scipy_zoom(source: tuple[int, int, int], target: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    array = rng.random(source).astype(np.float32)
    zoom = [t / s for t, s in zip(target, source)]
    linear = resample_linear(array, target)
    assert linear.shape == target and linear.dtype == np.float32
    np.testing.assert_allclose(linear, ndimage.zoom(array, zoom, order=1, mode="nearest"), atol=2e-5)
    labels = rng.integers(0, 3, source).astype(np.uint8)
    nearest = resample_nearest(labels, target)
    assert nearest.dtype == np.uint8
    np.testing.assert_array_equal(nearest, ndimage.zoom(labels, zoom, order=0, mode="nearest"))


def test_resampling_keeps_corners() -> None:
    array = np.arange(2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2)
    up = resample_linear(array, (3, 3, 3))
    # corners map onto corners, the centre is the mean of all eight
    assert up[0, 0, 0] == 0 and up[2, 2, 2] == 7 and up[1, 1, 1] == pytest.approx(3.5)


def test_preprocess_shapes_and_range() -> None:
    config = PreprocessConfig(target_shape=(16, 16, 8))
    ct = Volume(array=np.linspace(-1000, 1000, 30 * 20 * 10, dtype=np.float32).reshape(30, 20, 10), affine=np.eye(4))
    image = preprocess_image(ct, config)
    assert image.shape == (16, 16, 8) and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == 1.0
    labels = np.zeros((30, 20, 10), np.uint8)
    labels[10:20, 5:15, 2:8] = 2
    target = preprocess_labels(labels, config)
    assert target.shape == (16, 16, 8) and set(np.unique(target)) == {0, 1}


def test_real_mask_survives_resample_and_inverse(shared_data: Path) -> None:
    ct = load_volume(shared_data / "real/ircadb-01-patient1/PATIENT_DICOM")
    mask = load_labels(shared_data / "real/ircadb-01-patient1/MASKS_DICOM/liver", like=ct, select=255)
    small = preprocess_labels(mask, PreprocessConfig())
    assert small.shape == (160, 160, 80)
    back = (to_original_grid(small.astype(np.float32), ct.shape) >= 0.5).astype(np.uint8)  # as segment() maps back
    assert back.shape == ct.shape
    dice = 2 * np.logical_and(back, mask).sum() / (back.sum() + mask.sum())
    assert dice >= 0.97


# ------------------------------------------------------------------------------ orientation

PERMUTED_FLIPPED = np.array([[0, 0, 3.0, -10.0], [-0.8, 0, 0, 5.0], [0, -0.8, 0, 60.0], [0, 0, 0, 1]])


def test_to_ras_matches_nibabel_canonical_and_round_trips() -> None:
    import nibabel as nib

    from livseg.data.preprocessing import from_ras, to_ras

    array = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    ras, ras_affine = to_ras(array, PERMUTED_FLIPPED)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(array, PERMUTED_FLIPPED))
    np.testing.assert_array_equal(ras, np.asarray(canonical.dataobj))
    np.testing.assert_allclose(ras_affine, canonical.affine)
    assert ras.shape == (7, 5, 6)
    np.testing.assert_array_equal(from_ras(ras, PERMUTED_FLIPPED), array)


def test_reorient_gives_a_flipped_file_the_same_network_input() -> None:
    rng = np.random.default_rng(1)
    array = rng.normal(50, 100, (20, 16, 8)).astype(np.float32)
    ras = Volume(array=array, affine=np.diag([0.8, 0.8, 2.5, 1.0]))
    # the same voxels stored with x and y reversed, as about one LiTS file in six is
    flipped_affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    flipped_affine[:2, 3] = [19 * 0.8, 15 * 0.8]
    flipped = Volume(array=array[::-1, ::-1].copy(), affine=flipped_affine)
    paper, ours = PreprocessConfig(target_shape=(16, 16, 8)), PreprocessConfig(target_shape=(16, 16, 8), reorient=True)
    np.testing.assert_array_equal(preprocess_image(flipped, ours), preprocess_image(ras, ours))
    assert not np.array_equal(preprocess_image(flipped, paper), preprocess_image(ras, paper))
    labels = (array > 100).astype(np.uint8)
    np.testing.assert_array_equal(
        preprocess_labels(labels[::-1, ::-1], ours, affine=flipped_affine), preprocess_labels(labels, ours, affine=ras.affine)
    )
    with pytest.raises(ValueError, match="reorient needs the image affine"):
        preprocess_labels(labels, ours)


def test_to_input_grid_inverts_preprocessing_with_reorientation() -> None:
    from livseg.data.preprocessing import to_input_grid

    volume = Volume(array=np.random.default_rng(2).normal(0, 200, (20, 24, 16)).astype(np.float32), affine=PERMUTED_FLIPPED)
    config = PreprocessConfig(target_shape=(16, 20, 24), reorient=True)  # the RAS shape: no resampling
    back = to_input_grid(preprocess_image(volume, config), volume, config)
    assert back.shape == volume.shape
    np.testing.assert_allclose(back, window(volume.array), atol=1e-6)
