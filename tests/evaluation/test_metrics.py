"""Metrics: hand-computed cubes with anisotropic spacing, empty masks, medpy and MONAI agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from livseg.errors import GridMismatchError
from livseg.evaluation import metrics


def _box(shape: tuple[int, int, int], *ranges: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in ranges)] = True
    return mask


def _blob(seed: int, shape: tuple[int, int, int] = (30, 26, 20), level: float = 0.3) -> np.ndarray:
    """A random smooth blob, possibly in several pieces and touching the array border."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=3.0)
    return field > level * field.std()


# Two 4-voxel cubes, the second shifted one voxel along x (2 mm), y at 1 mm, z at 1.5 mm.
# Worked by hand: each has 56 surface voxels (64 minus the 2x2x2 core). For A -> B: A's x=2 face
# (16 voxels) is 2 mm from B's x=3 face; the 4 centre voxels of A's x=5 face lie in B's core and
# are 1 mm (one y step) from B's surface; the other 36 are on B's surface (0). B -> A is the
# mirror image. Pooled: 32 x 2 mm, 8 x 1 mm, 72 x 0 mm.
OVERLAP_SPACING = (2.0, 1.0, 1.5)
OVERLAP_A = _box((10, 9, 9), (2, 6), (2, 6), (2, 6))
OVERLAP_B = _box((10, 9, 9), (3, 7), (2, 6), (2, 6))

# Two 4-voxel cubes with 3 background voxels between them along x, 2 mm apart per voxel.
# Every surface voxel's nearest partner is straight across on the facing side: A's x=4 face
# (16 voxels) is 4 voxels = 8 mm away, its x=3 and x=2 rings (12 each) 10 and 12 mm, its x=1
# face (16) 14 mm; symmetric. ASSD = (16*8 + 12*10 + 12*12 + 16*14) / 56 = 616 / 56 = 11 mm.
GAP_SPACING = (2.0, 0.5, 3.0)
GAP_A = _box((13, 6, 6), (1, 5), (1, 5), (1, 5))
GAP_B = _box((13, 6, 6), (8, 12), (1, 5), (1, 5))


@pytest.mark.parametrize(
    ("pred", "ref", "spacing", "expected"),
    [
        (OVERLAP_A, OVERLAP_B, OVERLAP_SPACING,
         {"dice": 0.75, "jaccard": 0.6, "voe": 0.4, "rvd": 0.0,  # 48 shared of 64 + 64
          "assd": 72 / 112, "mssd": 2.0, "hd95": 2.0}),
        (GAP_A, GAP_B, GAP_SPACING,
         {"dice": 0.0, "jaccard": 0.0, "voe": 1.0, "rvd": 0.0, "assd": 11.0, "mssd": 14.0, "hd95": 14.0}),
        # Single voxels two y steps (2 x 0.5 mm) and one z step (3 mm) apart: sqrt(1 + 9) mm
        (_box((5, 6, 5), (2, 3), (2, 3), (2, 3)), _box((5, 6, 5), (2, 3), (4, 5), (3, 4)), (2.0, 0.5, 3.0),
         {"dice": 0.0, "rvd": 0.0, "assd": math.sqrt(10), "mssd": math.sqrt(10), "hd95": math.sqrt(10)}),
        # Thin 2x2x2 cubes shifted by 3 voxels along x at 2 mm: every voxel is surface, 4 mm or 6 mm
        (_box((8, 4, 4), (2, 4), (1, 3), (1, 3)), _box((8, 4, 4), (5, 7), (1, 3), (1, 3)), (2.0, 1.0, 1.0),
         {"dice": 0.0, "assd": 5.0, "mssd": 6.0, "hd95": 6.0}),
        # Cube of 8 voxels against cube plus one stray voxel 8 voxels further along x
        (_box((12, 4, 4), (0, 2), (0, 2), (0, 2)) | _box((12, 4, 4), (9, 10), (0, 1), (0, 1)),
         _box((12, 4, 4), (0, 2), (0, 2), (0, 2)), (1.0, 1.0, 1.0),
         {"dice": 16 / 17, "rvd": 1 / 8, "assd": 8 / 17, "mssd": 8.0}),
    ],
    ids=["overlapping-cubes", "cubes-3-voxels-apart", "single-voxels", "thin-cubes", "stray-voxel"],
)
def test_hand_computed_cases(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], expected: dict[str, float]
) -> None:
    result = metrics.case_metrics(pred, ref, spacing)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key
    assert metrics.assd(pred, ref, spacing) == pytest.approx(expected["assd"])
    assert metrics.mssd(pred, ref, spacing) == pytest.approx(expected["mssd"])


def test_surface_is_the_voxels_with_a_face_neighbour_outside() -> None:
    cube = _box((6, 6, 6), (1, 5), (1, 5), (1, 5))
    assert metrics.surface_mask(cube).sum() == 64 - 8
    # Outside the array counts as background: a mask filling the array has a surface.
    assert metrics.surface_mask(np.ones((3, 3, 3), dtype=bool)).sum() == 26
    # A voxel touching background only across an edge (18-neighbour) is not surface.
    hollow = np.ones((5, 5, 5), dtype=bool)
    hollow[2, 2, 2] = False
    surface = metrics.surface_mask(np.pad(hollow, 1))
    assert surface[2 + 1, 2 + 1, 1 + 1] and not surface[1 + 1, 1 + 1, 2 + 1]


def test_spacing_follows_array_axes() -> None:
    a = _box((8, 8, 8), (1, 2), (1, 2), (1, 2))
    b = _box((8, 8, 8), (4, 5), (1, 2), (1, 2))  # 3 voxels along x only
    assert metrics.mssd(a, b, (2.0, 7.0, 9.0)) == pytest.approx(6.0)
    assert metrics.mssd(a.transpose(1, 0, 2), b.transpose(1, 0, 2), (7.0, 2.0, 9.0)) == pytest.approx(6.0)


def test_identical_masks() -> None:
    sphere = _blob(3)
    result = metrics.case_metrics(sphere, sphere, (0.7, 0.7, 2.5))
    assert result["dice"] == result["jaccard"] == result["voxel_accuracy"] == 1.0
    assert result["voe"] == result["rvd"] == result["assd"] == result["mssd"] == result["hd95"] == 0.0


def test_voxel_accuracy_volume_and_label_maps() -> None:
    ref = np.zeros((4, 4, 4), dtype=np.uint8)
    ref[0, 0, :3] = 2  # tumour label counts as foreground
    pred = np.zeros((4, 4, 4), dtype=bool)
    pred[0, 0, 1:4] = True  # agrees on 2, disagrees on 2 of 64 voxels
    assert metrics.voxel_accuracy(pred, ref) == pytest.approx(62 / 64)
    assert metrics.dice(pred, ref) == pytest.approx(4 / 6)
    assert metrics.volume_ml(np.ones((10, 10, 10), dtype=bool), (1.0, 1.0, 2.0)) == pytest.approx(2.0)
    result = metrics.case_metrics(pred, ref, (0.5, 0.5, 4.0))
    assert result["volume_pred_ml"] == result["volume_ref_ml"] == pytest.approx(3 * 1.0 / 1000)


def test_global_dice_pools_voxels_over_cases() -> None:
    a1 = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    b1 = np.array([0, 0, 1, 1, 1, 1], dtype=bool)  # 2 shared of 4 + 4
    a2 = np.zeros(6, dtype=bool)
    b2 = np.array([1, 1, 0, 0, 0, 0], dtype=bool)  # missed entirely
    assert metrics.global_dice([(a1, b1), (a2, b2)]) == pytest.approx(2 * 2 / (8 + 2))
    assert metrics.global_dice([]) == 1.0


EMPTY = np.zeros((6, 6, 6), dtype=bool)
SOME = _box((6, 6, 6), (1, 3), (1, 3), (1, 4))


@pytest.mark.parametrize(
    ("pred", "ref", "expected"),
    [
        (EMPTY, EMPTY, {"dice": 1.0, "jaccard": 1.0, "voe": 0.0, "rvd": 0.0,
                        "assd": 0.0, "mssd": 0.0, "hd95": 0.0, "voxel_accuracy": 1.0}),
        (EMPTY, SOME, {"dice": 0.0, "jaccard": 0.0, "voe": 1.0, "rvd": -1.0,
                       "assd": math.inf, "mssd": math.inf, "hd95": math.inf}),
        (SOME, EMPTY, {"dice": 0.0, "jaccard": 0.0, "voe": 1.0, "rvd": math.inf,
                       "assd": math.inf, "mssd": math.inf, "hd95": math.inf}),
    ],
    ids=["both-empty", "pred-empty", "ref-empty"],
)
def test_empty_mask_conventions(pred: np.ndarray, ref: np.ndarray, expected: dict[str, float]) -> None:
    result = metrics.case_metrics(pred, ref, (1.0, 1.0, 2.0))
    for key, value in expected.items():
        assert result[key] == value, key
    assert all(not math.isnan(v) for v in result.values())
    assert metrics.hd95(pred, ref, (1.0, 1.0, 2.0)) == expected["hd95"]


def test_one_empty_surface_distances_are_infinite_for_the_other() -> None:
    to_ref, to_pred = metrics.surface_distances(SOME, EMPTY, (1.0, 1.0, 1.0))
    assert to_pred.size == 0 and to_ref.size == 12 and np.isinf(to_ref).all()


def test_bad_input_is_refused() -> None:
    with pytest.raises(GridMismatchError, match=r"\(6, 6, 6\) differs from reference shape \(6, 6, 5\)"):
        metrics.dice(EMPTY, EMPTY[..., :5])
    with pytest.raises(ValueError, match="spacing must be 3 positive sizes"):
        metrics.assd(SOME, SOME, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing must be 3 positive sizes"):
        metrics.volume_ml(SOME, (1.0, 0.0, 1.0))


SPACING = (0.8, 1.3, 2.5)
BLOB_PAIRS = [(_blob(seed), _blob(seed + 100)) for seed in range(3)] + [
    (_blob(7), ndimage.binary_dilation(_blob(7), iterations=2)),  # a near miss, touching borders
]


@pytest.mark.parametrize(("pred", "ref"), BLOB_PAIRS)
def test_agrees_with_medpy(pred: np.ndarray, ref: np.ndarray) -> None:
    binary = pytest.importorskip("medpy.metric.binary")
    result = metrics.case_metrics(pred, ref, SPACING)
    assert result["dice"] == pytest.approx(binary.dc(pred, ref), abs=1e-3)
    assert result["assd"] == pytest.approx(binary.assd(pred, ref, voxelspacing=SPACING), abs=1e-3)
    assert result["mssd"] == pytest.approx(binary.hd(pred, ref, voxelspacing=SPACING), abs=1e-3)
    assert result["hd95"] == pytest.approx(binary.hd95(pred, ref, voxelspacing=SPACING), abs=1e-3)
    assert result["rvd"] == pytest.approx(binary.ravd(pred, ref), abs=1e-9)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own internal deprecation
@pytest.mark.parametrize(("pred", "ref"), BLOB_PAIRS[:2])
def test_agrees_with_monai(pred: np.ndarray, ref: np.ndarray) -> None:
    monai_metrics = pytest.importorskip("monai.metrics")
    batch_pred, batch_ref = pred[None, None].astype(float), ref[None, None].astype(float)
    kwargs = {"include_background": True, "spacing": SPACING}
    monai_assd = monai_metrics.compute_average_surface_distance(batch_pred, batch_ref, symmetric=True, **kwargs)
    monai_hd = monai_metrics.compute_hausdorff_distance(batch_pred, batch_ref, **kwargs)
    monai_hd95 = monai_metrics.compute_hausdorff_distance(batch_pred, batch_ref, percentile=95, **kwargs)
    assert metrics.assd(pred, ref, SPACING) == pytest.approx(monai_assd.item(), abs=1e-3)
    assert metrics.mssd(pred, ref, SPACING) == pytest.approx(monai_hd.item(), abs=1e-3)
    # MONAI's HD95 is the larger of the two directed 95th percentiles, not the pooled one.
    to_ref, to_pred = metrics.surface_distances(pred, ref, SPACING)
    directed = max(np.percentile(to_ref, 95), np.percentile(to_pred, 95))
    assert directed == pytest.approx(monai_hd95.item(), abs=1e-3)
    assert metrics.hd95(pred, ref, SPACING) < directed  # on these blobs the definitions differ


def test_distances_equal_the_distance_transform_on_the_full_grid() -> None:
    # The k-d tree on the cropped surfaces must give what medpy's uncropped EDT gives.
    pred, ref = _blob(11), _blob(12)
    pred_surface, ref_surface = metrics.surface_mask(pred), metrics.surface_mask(ref)
    edt = ndimage.distance_transform_edt(~ref_surface, sampling=SPACING)
    to_ref, _ = metrics.surface_distances(pred, ref, SPACING)
    np.testing.assert_allclose(to_ref, edt[pred_surface], rtol=0, atol=1e-9)
