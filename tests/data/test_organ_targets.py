"""Multi-organ training targets on the network grid (livseg.data.organ_targets), hand-computed."""

from __future__ import annotations

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
