"""Phantoms rendered on real anatomy (livseg.phantom.real_anatomy, livseg.phantom.labelmap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livseg.data.organ_classes import class_index, phantom_lut, to_classes
from livseg.errors import ConfigError, InputFileNotFoundError
from livseg.phantom.labelmap import GROUP_IDS, MaskShape, cropped_in_plane, deform, fit_diaphragm, group_map
from livseg.phantom.organs import ORGANS
from livseg.phantom.real_anatomy import Anatomy, load_anatomy, make_anatomy_phantom

SUBJECTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real" / "totalseg-subjects"
NAMES = {1: "liver", 2: "stomach", 3: "kidney_right", 4: "lung_lower_lobe_right", 5: "vertebrae_L1", 6: "spleen"}


def toy_anatomy() -> Anatomy:
    """A 2 mm map: liver (right, +x), stomach (left), right kidney, a lung above the liver, a spine."""
    shape = (120, 100, 110)
    idx = np.indices(shape).astype(np.float32)
    x, y, z = ((idx[i] - c) * 2.0 for i, c in enumerate((60, 50, 40)))  # mm, body axis at the centre
    labels = np.zeros(shape, dtype=np.uint8)
    labels[((x - 40) / 70) ** 2 + ((y - 5) / 60) ** 2 + ((z - 10) / 55) ** 2 < 1] = 1
    labels[((x + 45) / 35) ** 2 + ((y - 20) / 30) ** 2 + ((z - 10) / 40) ** 2 < 1] = 2
    labels[((x - 45) / 25) ** 2 + ((y + 45) / 20) ** 2 + ((z + 50) / 45) ** 2 < 1] = 3
    labels[(((x - 40) / 70) ** 2 + ((y - 5) / 60) ** 2 < 1) & (z > 75) & (z < 130)] = 4
    labels[(x / 18) ** 2 + ((y + 60) / 16) ** 2 < 1] = 5
    labels[((x + 80) / 20) ** 2 + ((y + 30) / 40) ** 2 + ((z - 20) / 40) ** 2 < 1] = 6
    return Anatomy(labels=group_map(labels, NAMES), affine=np.diag([2.0, 2.0, 2.0, 1.0]), step=2.0, name="toy")


def test_mask_shape_is_a_signed_distance() -> None:
    idx = np.indices((40, 40, 40)).astype(float) - 20
    ball = (idx**2).sum(0) < 10.0**2  # radius 10 voxels of 1.5 mm = 15 mm
    shape = MaskShape.from_mask(ball, origin=np.array([-30.0, -30.0, -30.0]), step=1.5)
    x = np.array([0.0, 9.0, 24.0, 0.0])[:, None, None]
    d = shape.sdf(x, np.zeros((1, 1, 1)), np.zeros((1, 1, 1)))[:, 0, 0]
    # centre ~ -15 mm, surface ~ 0 (within a voxel), 9 mm outside at x = 24
    assert d[0] == pytest.approx(-15.0, abs=1.0)
    assert d[1] == pytest.approx(-6.0, abs=1.0)
    assert d[2] == pytest.approx(9.0, abs=1.0)
    lo, hi = shape.bounds()
    assert np.allclose(lo, -15.0, atol=1.6) and np.allclose(hi, 15.0, atol=1.6)
    assert np.allclose(shape.center, 0.0, atol=0.8)
    # the painter's separable path and the general path agree
    general = shape.sdf(np.array([[[0.0]], [[9.0]], [[24.0]], [[0.0]]]) + np.zeros((1, 1, 1)), np.zeros((4, 1, 1)),
                        np.zeros((4, 1, 1)))[:, 0, 0]
    assert np.allclose(general, d, atol=1e-4)


def test_deform_without_variation_resamples_exactly() -> None:
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[4:12, 6:10, 2:18] = 7
    out = deform(labels, 1.0, np.random.default_rng(0), amplitude_mm=0.0, scale=0.0, rotate_deg=(0, 0, 0))
    assert np.array_equal(out, labels)
    coarse = deform(labels, 1.0, np.random.default_rng(0), amplitude_mm=0.0, out_step=2.0, scale=0.0,
                    rotate_deg=(0, 0, 0))
    assert coarse.shape == (10, 10, 10)
    assert np.array_equal(coarse, labels[::2, ::2, ::2])
    moved = deform(labels, 1.0, np.random.default_rng(1), amplitude_mm=2.0)
    assert 0.6 < np.count_nonzero(moved) / np.count_nonzero(labels) < 1.5  # varied, not destroyed


def test_diaphragm_lies_between_the_liver_and_the_lung() -> None:
    anatomy = toy_anatomy()
    coords = tuple((np.arange(n) - c) * 2.0 for n, c in zip(anatomy.labels.shape, (60, 50, 40)))
    sheet = fit_diaphragm(anatomy.labels, coords, 2.0, thickness=4.0)
    # over the liver's centre: liver top at z = 65 mm, lung bottom at z = 76 mm
    top = float(sheet.top(np.array([40.0]), np.array([5.0]))[0])
    assert 67.0 < top < 76.0
    # a map without lung or heart is abdomen everywhere: the sheet lies above it
    no_chest = np.where(anatomy.labels == GROUP_IDS["lung"], 0, anatomy.labels)
    assert float(fit_diaphragm(no_chest, coords, 2.0, 4.0).top(np.array([0.0]), np.array([0.0]))[0]) > coords[2][-1]


def test_anatomy_phantom_keeps_the_organs_where_the_map_has_them() -> None:
    anatomy = toy_anatomy()
    phantom = make_anatomy_phantom(anatomy, 3, deform_mm=0.0, debug=True, slab_probability=0.0, step_mm=2.0)
    classes = to_classes(phantom.organs, phantom_lut())
    assert phantom.ct.shape == phantom.labels.shape == phantom.organs.shape
    # the label says liver exactly where the organ map says liver or tumour
    assert np.array_equal(phantom.labels > 0, np.isin(phantom.organs, [ORGANS["liver"], ORGANS["tumour"]]))
    voxel_ml = float(np.prod(np.linalg.norm(phantom.affine[:3, :3], axis=0))) / 1000.0
    map_ml = np.count_nonzero(anatomy.labels == GROUP_IDS["liver"]) * 8.0 / 1000.0
    # the liver is the map's (scans trimmed by up to 20 mm, marginal lesions may add some)
    assert 0.75 * map_ml < np.count_nonzero(phantom.labels) * voxel_ml < 1.6 * map_ml
    world = np.argwhere(phantom.labels > 0).mean(0) @ phantom.affine[:3, :3].T + phantom.affine[:3, 3]
    stomach = np.argwhere(classes == class_index("stomach")).mean(0) @ phantom.affine[:3, :3].T + phantom.affine[:3, 3]
    assert world[0] - stomach[0] > 50.0  # liver on the patient's right (+x), stomach on the left
    for name in ("stomach", "kidney", "spleen"):
        assert np.count_nonzero(classes == class_index(name)) > 100, name
    # the liver's CT numbers are liver-like; the same seed gives the same phantom
    assert 20.0 < float(np.median(phantom.ct[phantom.labels == 1])) < 200.0
    again = make_anatomy_phantom(anatomy, 3, deform_mm=0.0, debug=True, slab_probability=0.0, step_mm=2.0)
    assert np.array_equal(again.ct, phantom.ct) and np.array_equal(again.organs, phantom.organs)


def test_load_anatomy_refuses_bad_maps(tmp_path: Path) -> None:
    import nibabel as nib

    with pytest.raises(InputFileNotFoundError):
        load_anatomy(tmp_path / "missing.nii.gz", NAMES)
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.diag([1.0, 1.0, 3.0, 1.0])), tmp_path / "a.nii.gz")
    with pytest.raises(ConfigError, match="isotropic"):
        load_anatomy(tmp_path / "a.nii.gz", NAMES)
    nib.save(nib.Nifti1Image(np.full((10, 10, 10), 2, np.uint8), np.eye(4)), tmp_path / "b.nii.gz")
    with pytest.raises(ConfigError, match="liver"):
        load_anatomy(tmp_path / "b.nii.gz", NAMES)


@pytest.mark.skipif(not (SUBJECTS / "s0009-labels.nii.gz").is_file(), reason="needs ../shared/data/real/totalseg-subjects")
def test_real_subject_s0009_is_rendered_on_its_own_field_of_view() -> None:
    anatomy = load_anatomy(SUBJECTS / "s0009-labels.nii.gz", SUBJECTS / "classes.csv")
    assert cropped_in_plane(anatomy.labels)  # its CT's field of view cuts the liver
    phantom = make_anatomy_phantom(anatomy, 0, debug=True)
    spacing = np.linalg.norm(phantom.affine[:3, :3], axis=0)
    extent = np.asarray(phantom.ct.shape[:2]) * spacing[:2]
    assert np.all(extent < 230.0)  # about the label map's 178 mm, not a 330-450 mm abdomen
    classes = to_classes(phantom.organs, phantom_lut())
    present = {name for name in ("liver", "stomach", "kidney", "bowel", "vessels") if
               np.count_nonzero(classes == class_index(name)) > 50}
    assert present >= {"liver", "kidney", "bowel", "vessels"}
