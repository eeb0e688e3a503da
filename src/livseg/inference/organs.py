"""The liver's neighbours from a multi-organ model: one label map on the CT's own grid, and volumes.

A multi-organ checkpoint (``model.classes``, e.g. liver-v2) gives softmax probabilities of every
class on its network grid. The liver mask is made as for any model (the liver's channel, mapped
back linearly, thresholded, post-processed); :func:`organ_map` adds the other classes around
it: each non-liver class's probability is mapped back onto the CT's grid the same way (the
whole grid for each class: most of ``--organs``' cost), and every voxel outside the liver
mask takes the most probable of background and those classes. The liver mask wins where it is
set, so the liver in the organ map is exactly the default output's. No post-processing of the
neighbours: their accuracy is what the model card states.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from livseg.config import PreprocessConfig
from livseg.data.io.volume import Volume
from livseg.data.preprocessing import GridMap, to_input_grid

__all__ = ["organ_map", "organ_volumes"]


def organ_map(class_probabilities: np.ndarray, classes: Sequence[str], liver: np.ndarray, volume: Volume,
              config: PreprocessConfig, grid: GridMap | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The label map of the liver and its neighbours on the input grid, and what it holds.

    Args:
        class_probabilities: ``[C, X, Y, Z]`` softmax on the network grid, channels as ``classes``.
        classes: the model's class names (``"background"`` first, ``"liver"`` among them).
        liver: the final bool liver mask on the input grid.
        volume: the CT.
        config, grid: the preprocessing and where its network grid lies (from ``network_input``).

    Returns:
        ``(labels, stats)``: uint8 labels on the input grid (value = class index), and
        ``{"legend": {"0": "background", ...}, "volume_ml": {name: mL, ...}}`` for every class
        but background.
    """
    liver_index = list(classes).index("liver")
    best = to_input_grid(class_probabilities[0], volume, config, grid)  # background's probability
    labels = np.zeros(volume.shape, dtype=np.uint8)
    for index in range(1, len(classes)):
        if index == liver_index:
            continue
        probability = to_input_grid(class_probabilities[index], volume, config, grid)
        wins = probability > best
        labels[wins] = index
        np.maximum(best, probability, out=best)
    labels[liver] = liver_index
    return labels, {"legend": {str(i): name for i, name in enumerate(classes)},
                    "volume_ml": organ_volumes(labels, classes, volume)}


def organ_volumes(labels: np.ndarray, classes: Sequence[str], volume: Volume) -> dict[str, float]:
    """Millilitres of each class but background in a label map on ``volume``'s grid."""
    counts = np.bincount(labels.ravel(), minlength=len(classes))
    return {name: round(float(counts[i]) * volume.voxel_volume_ml, 2) for i, name in enumerate(classes) if i}
