"""Fixed-spacing preprocessing (preprocess.spacing, crop_body): hand-computed resampling, the body
box, the grid plan, and the exact way back onto the CT's own grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livseg.config import PreprocessConfig, apply_overrides, get_preset
from livseg.data.body import body_box
from livseg.data.io.volume import Volume, load_labels, load_volume
from livseg.data.preprocessing import (
    liver_fraction,
    network_input,
    network_view,
    preprocess_labels,
    resample_faces,
    to_input_grid,
)
from livseg.errors import ConfigError

FIXED = PreprocessConfig(reorient=True, spacing=(3.0, 3.0, 3.0), crop_body=True, target_shape=(16, 16, 8))


def line(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


@pytest.mark.parametrize(
    "values, size, expected",
    [
        ([0, 2, 4, 6], 2, [1, 5]),  # halving: means of voxel pairs, centred on them
        ([0, 3, 6, 9, 12, 15], 2, [3, 12]),  # a third: means of triples
        ([0, 4], 4, [0, 1, 3, 4]),  # doubling: centres at -0.25, 0.25, 0.75, 1.25 (clamped at the ends)
        ([0, 1, 2, 3, 4], 2, [0.75, 3.0625]),  # 2.5x: pairs averaged (last one padded), sampled at 0.75 and 3.25
        ([7, 7, 7], 3, [7, 7, 7]),  # same size: a copy
    ],
)
def test_resample_faces_hand_values(values: list[float], size: int, expected: list[float]) -> None:
    out = resample_faces(line(values), (size, 1, 1))
    assert out.shape == (size, 1, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), expected, atol=1e-6)


def test_resample_faces_keeps_a_constant_and_averages_noise() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(40.0, 20.0, (90, 90, 30)).astype(np.float32)
    out = resample_faces(noise, (30, 30, 30))  # 3 x 3 x 1 blocks
    assert out.mean() == pytest.approx(40.0, abs=0.5)
    assert out.std() == pytest.approx(20.0 / 3.0, rel=0.1)  # averaged, not aliased: 20 / sqrt(9)
    np.testing.assert_allclose(resample_faces(np.full((10, 7, 5), 3.5, np.float32), (4, 3, 9)), 3.5, atol=1e-6)


def body_ct(shape: tuple[int, int, int] = (60, 50, 10)) -> np.ndarray:
    ct = np.full(shape, -1000.0, dtype=np.float32)
    ct[20:50, 10:30, :] = 40.0  # the body
    ct[22:42, 12:28, 1:9] = 120.0  # the liver
    return ct


def test_body_box_finds_the_body_and_keeps_every_slice() -> None:
    ct = body_ct()
    (x0, x1), (y0, y1), (z0, z1) = body_box(ct, (1.0, 1.0, 2.0), margin_mm=2.0)
    assert x0 <= 20 and x1 >= 50 and y0 <= 10 and y1 >= 30  # never cuts the body
    assert x0 >= 20 - 2 - 8 and x1 <= 50 + 2 + 8 and y1 <= 30 + 2 + 8  # margin plus up to two 4 mm search steps
    assert (z0, z1) == (0, 10)
    assert body_box(np.full((20, 20, 5), -1000.0), (1, 1, 1)) == ((0, 20), (0, 20), (0, 5))  # no body: no crop


def test_network_input_crops_resamples_and_maps_back() -> None:
    ct = body_ct()
    volume = Volume(array=ct, affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    image, grid = network_input(volume, FIXED)
    assert grid.corners is False and image.shape == grid.shape
    (x0, x1), (y0, y1), _ = grid.box
    assert grid.shape == (round((x1 - x0) / 3), round((y1 - y0) / 3), round(20 / 3))
    np.testing.assert_allclose(grid.spacing((1.0, 1.0, 2.0)), [(x1 - x0) / grid.shape[0], (y1 - y0) / grid.shape[1],
                                                               20 / grid.shape[2]])
    assert image.min() >= 0 and image.max() <= 1
    labels = (ct > 100).astype(np.uint8)
    target = preprocess_labels(labels, FIXED, affine=volume.affine, grid=grid)
    share = liver_fraction(labels, grid)
    assert target.shape == grid.shape and share.min() >= 0 and share.max() <= 1
    np.testing.assert_array_equal(target, share >= 0.5)
    # the liver's volume survives (within 5%: z shrinks by 1.43, under the 2x that averages, so
    # its two edges are sampled linearly): summed shares times the grid's voxel volume
    voxel_ml = np.prod(grid.spacing((1.0, 1.0, 2.0))) / 1000
    assert share.sum() * voxel_ml == pytest.approx(labels.sum() * 2.0 / 1000, rel=0.05)
    back = to_input_grid(share, volume, FIXED, grid)
    assert back.shape == ct.shape
    assert np.all(back[:x0] == 0) and np.all(back[x1:] == 0)  # outside the body box
    dice = 2 * np.sum((back >= 0.5) & (labels > 0)) / (np.sum(back >= 0.5) + labels.sum())
    assert dice > 0.9
    with pytest.raises(ValueError, match="grid"):
        preprocess_labels(labels, FIXED, affine=volume.affine)


def test_flipped_file_gives_the_same_fixed_spacing_input() -> None:
    ct = body_ct()
    ras = Volume(array=ct, affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    affine[:2, 3] = [59.0, 49.0]
    flipped = Volume(array=ct[::-1, ::-1].copy(), affine=affine)
    np.testing.assert_array_equal(network_input(flipped, FIXED)[0], network_input(ras, FIXED)[0])
    share = np.random.default_rng(0).random(network_input(ras, FIXED)[1].shape).astype(np.float32)
    back = to_input_grid(share, flipped, FIXED)  # the grid recomputed from the CT
    np.testing.assert_array_equal(back[::-1, ::-1], to_input_grid(share, ras, FIXED))


def test_spacing_needs_reorientation_and_three_sizes() -> None:
    paper = get_preset("paper")
    assert paper.preprocess.spacing == () and paper.preprocess.crop_body is False
    with pytest.raises(ConfigError, match="reorient"):
        apply_overrides(paper, ["preprocess.spacing=3,3,3"])
    with pytest.raises(ConfigError, match="three positive"):
        apply_overrides(paper, ["preprocess.reorient=true", "preprocess.spacing=3,3"])
    assert apply_overrides(paper, ["preprocess.reorient=true", "preprocess.spacing=3,3,3"]).preprocess.spacing == (3.0, 3.0, 3.0)


def test_real_mask_round_trip_at_3mm(shared_data: Path) -> None:
    ct = load_volume(shared_data / "real/ircadb-01-patient1/PATIENT_DICOM")
    mask = load_labels(shared_data / "real/ircadb-01-patient1/MASKS_DICOM/liver", like=ct, select=255)
    _, grid = network_input(ct, FIXED)
    assert grid.shape == (97, 88, 69)  # 512 x 0.57 mm cropped to the body, 129 x 1.6 mm, at 3 mm
    share = liver_fraction(network_view(mask, ct.affine, FIXED)[0], grid)
    back = to_input_grid(share, ct, FIXED, grid) >= 0.5
    dice = 2 * np.sum(back & (mask > 0)) / (back.sum() + np.sum(mask > 0))
    assert dice >= 0.98  # measured 0.9858: the ceiling a 3 mm grid puts on a binary target


@pytest.mark.parametrize("source, target", [((20, 17, 9), (71, 64, 30)), ((12, 10, 8), (5, 40, 8)), ((9, 9, 9), (9, 9, 9))])
def test_upsample_faces_equals_trilinear_interpolation_near_the_liver(source: tuple, target: tuple) -> None:
    import torch

    from livseg.data.preprocessing import PROBABILITY_FLOOR, upsample_faces

    rng = np.random.default_rng(0)
    prob = np.zeros(source, dtype=np.float32)
    prob[3:7, 2:6, 1:5] = rng.random((4, 4, 4)) + PROBABILITY_FLOOR  # a liver, nothing elsewhere
    full = torch.nn.functional.interpolate(torch.from_numpy(prob)[None, None], size=target, mode="trilinear",
                                           align_corners=False)[0, 0].numpy()
    out = np.zeros(target, dtype=np.float32)
    upsample_faces(prob, target, out=out)
    np.testing.assert_allclose(out, full, atol=1e-6)  # the zeros outside the box were zeros anyway
    empty = np.zeros(target, dtype=np.float32)
    upsample_faces(np.full(source, PROBABILITY_FLOOR / 2, np.float32), target, out=empty)
    assert not empty.any()  # all below the floor: nothing mapped


def test_resample_faces_always_gives_the_asked_shape() -> None:
    # interpolate's floor(size * scale) fell one short in floating point for 585 of these pairs
    # (376 -> 127 gave 126), so an image and its grid disagreed by a voxel
    short = [(n, m) for n in range(100, 400, 3) for m in range(30, 140, 7)
             if m < n and resample_faces(np.zeros((n, 2, 2), np.float32), (m, 2, 2)).shape[0] != m]
    assert short == []
    ramp = resample_faces(np.arange(376, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32), (127, 2, 2))
    np.testing.assert_allclose(ramp[[0, -1], 0, 0], [0.5 * 376 / 127 - 0.5,
                                                     126.5 * 376 / 127 - 0.5], atol=1e-3)
