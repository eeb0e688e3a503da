"""Stage 2's training data: liver regions cached once, and patches drawn from them per epoch.

Cache (:func:`region_case`, called by :func:`livseg.data.cache.preprocess_dataset` when the run's
``region`` is enabled): the CT windowed to [0, 1] and its 0/1/2 label map, both on the region grid
of the *reference* liver's bounding box grown by ``margin_mm + jitter_mm`` (the most context any
jittered box can ask for), at ``spacing_mm``.

Training (:class:`RegionPatches`): per case and epoch, ``patches_per_case`` patches of
``patch_shape``. For each, the liver's box is jittered (every face moves by a uniform draw in
``[-jitter_mm, +jitter_mm]``) and grown by ``margin_mm``: that is the crop stage 1 might have
produced. Everything outside it is blanked (image 0, label background), as inference sees nothing
outside its crop. The patch is centred, with probability ``tumour_fraction``, on a tumour voxel of
the case (nnU-Net's foreground oversampling; cases without tumour use a uniform centre), otherwise
on a uniform voxel of the crop; then it is shifted to lie inside the crop where it fits, and the
crop centred in it where it does not (the same placement the sliding window uses). Draws come from
one generator per (seed, epoch, index), so the patches do not depend on workers or ranks and a
resumed run rebuilds them.

Validation (:class:`RegionCases`): each case's whole crop (reference box plus ``margin_mm``, no
jitter), to be scored with the sliding window as inference runs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from livseg.config import PreprocessConfig, RegionConfig
from livseg.data.io.volume import Volume
from livseg.data.preprocessing import to_ras
from livseg.data.region import crop_region, cut_liver_region

__all__ = ["RegionCases", "RegionPatches", "region_case"]

TUMOUR_SAMPLES = 4096  # tumour voxels remembered per case for centring patches


def region_case(volume: Volume, labels: np.ndarray, config: PreprocessConfig,
                region: RegionConfig) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The cached form of one training case for stage 2.

    Args:
        volume: the CT.
        labels: its 0/1/2 label map on the same grid.
        config: the HU window.
        region: spacing, margin and jitter.

    Returns:
        ``(image, labels, entry)``: float32 image and uint8 labels on the region grid, and the
        manifest's ``region`` entry (``spacing`` of the region grid in mm, ``start``/``stop`` of the
        crop and ``ras_shape``). A case without liver gives the whole CT's region.
    """
    liver = labels > 0
    if not liver.any():
        liver = np.ones(labels.shape, dtype=bool)
    cut = cut_liver_region(volume, liver, margin_mm=region.margin_mm + region.jitter_mm, target_mm=region.spacing_mm,
                           hu_min=config.hu_min, hu_max=config.hu_max)
    assert cut is not None  # the mask is not empty
    label_cut = crop_region(to_ras(labels, volume.affine)[0], cut.region, labels=True).astype(np.uint8)
    entry = {"spacing": list(cut.spacing), "start": list(cut.region.start), "stop": list(cut.region.stop),
             "ras_shape": list(cut.region.ras_shape)}
    return cut.image.astype(np.float32, copy=False), label_cut, entry


def _liver_box(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first and last voxel of label > 0 per axis (the whole array when empty)."""
    lo, hi = [], []
    for axis in range(3):
        other = tuple(i for i in range(3) if i != axis)
        hits = np.flatnonzero(np.asarray(label).any(axis=other))
        lo.append(hits[0] if hits.size else 0)
        hi.append(hits[-1] if hits.size else label.shape[axis] - 1)
    return np.asarray(lo, float), np.asarray(hi, float)


def _crop(lo: np.ndarray, hi: np.ndarray, grow_lo_mm: np.ndarray, grow_hi_mm: np.ndarray, spacing: np.ndarray,
          shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Index box [start, stop) of the liver box grown by distances in mm, clipped, at least one voxel."""
    start = np.clip(np.floor(lo - grow_lo_mm / spacing + 1e-6), 0, np.asarray(shape) - 1).astype(int)
    stop = np.clip(np.ceil(hi + grow_hi_mm / spacing - 1e-6) + 1, 1, shape).astype(int)
    return start, np.maximum(stop, start + 1)


def _place(centre: np.ndarray, start: np.ndarray, stop: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """Patch origin: centred on ``centre``, inside [start, stop) where the patch fits, else the crop
    centred in the patch."""
    length = stop - start
    inside = np.clip(centre - patch // 2, start, stop - patch)
    return np.where(length >= patch, inside, start - (patch - length) // 2).astype(int)


def _cut_patch(array: np.ndarray, origin: np.ndarray, patch: np.ndarray, start: np.ndarray,
               stop: np.ndarray) -> np.ndarray:
    """``array[origin : origin + patch]`` with zeros outside the crop [start, stop) (and the array)."""
    out = np.zeros(tuple(patch), dtype=np.float32)
    lo = np.maximum(origin, start)
    hi = np.minimum(origin + patch, stop)
    if np.all(hi > lo):
        src = tuple(slice(a, b) for a, b in zip(lo, hi))
        dst = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, origin))
        out[dst] = array[src]
    return out


class RegionPatches(Dataset):
    """Stage-2 training patches (see the module docstring).

    Items: ``{"image": float32 [1, *patch_shape], "label": float32 [1, *patch_shape] (0/1/2),
    "case_id"}``. Call :meth:`set_epoch` before each epoch (the training loader does).

    Args:
        base: a :class:`livseg.data.cache.CachedDataset` of a region cache.
        region: the run's region settings.
        seed: the run's seed.
    """

    def __init__(self, base: Any, region: RegionConfig, *, seed: int) -> None:
        self.base, self.region, self.seed, self.epoch = base, region, int(seed), 1
        self.patch = np.asarray(region.patch_shape, dtype=int)
        entries = base.manifest["cases"]
        self.spacing = [np.asarray(entries[c]["region"]["spacing"], float) for c in base.case_ids]
        self.boxes, self.tumours = [], []
        for index in range(len(base)):
            label = np.asarray(base.arrays(index)[1])
            self.boxes.append(_liver_box(label > 0))
            tumour = np.flatnonzero(label == 2)
            if tumour.size > TUMOUR_SAMPLES:  # fixed per case: the same voxels every epoch
                tumour = np.sort(np.random.default_rng([self.seed, index]).choice(tumour, TUMOUR_SAMPLES, replace=False))
            self.tumours.append(tumour)

    def set_epoch(self, epoch: int) -> None:
        """The epoch (1-based) whose patches to serve."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base) * self.region.patches_per_case

    def __getitem__(self, index: int) -> dict[str, Any]:
        case = index // self.region.patches_per_case
        image, label = self.base.arrays(case)
        rng = np.random.default_rng([self.seed, self.epoch, index, 2])  # 2: not the augmentation's stream
        jitter = rng.uniform(-self.region.jitter_mm, self.region.jitter_mm, size=(2, 3))
        margin = self.region.margin_mm + jitter
        lo, hi = self.boxes[case]
        start, stop = _crop(lo, hi, margin[0], margin[1], self.spacing[case], image.shape)
        on_tumour = rng.random() < self.region.tumour_fraction
        tumour = self.tumours[case]
        if on_tumour and tumour.size:
            centre = np.asarray(np.unravel_index(int(tumour[rng.integers(tumour.size)]), image.shape))
        else:
            centre = np.floor(rng.uniform(start, stop)).astype(int)
        origin = _place(centre, start, stop, self.patch)
        return {
            "image": torch.from_numpy(_cut_patch(image, origin, self.patch, start, stop))[None],
            "label": torch.from_numpy(_cut_patch(label, origin, self.patch, start, stop))[None],
            "case_id": self.base.case_ids[case],
        }


class RegionCases(Dataset):
    """Stage-2 validation cases: each region cropped to the reference box plus ``margin_mm``.

    Items: ``{"image": float32 [1, X, Y, Z], "label": float32 [1, X, Y, Z] (0/1/2), "case_id"}``,
    of a different size per case (use batch size 1).
    """

    def __init__(self, base: Any, region: RegionConfig) -> None:
        self.base, self.region = base, region
        entries = base.manifest["cases"]
        self.crops = []
        for index, case_id in enumerate(base.case_ids):
            image, label = base.arrays(index)
            lo, hi = _liver_box(np.asarray(label) > 0)
            margin = np.full(3, region.margin_mm)
            self.crops.append(_crop(lo, hi, margin, margin, np.asarray(entries[case_id]["region"]["spacing"], float),
                                    image.shape))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.base.arrays(index)
        box = tuple(slice(a, b) for a, b in zip(*self.crops[index]))
        return {
            "image": torch.from_numpy(np.array(image[box], dtype=np.float32))[None],
            "label": torch.from_numpy(np.array(label[box], dtype=np.float32))[None],
            "case_id": self.base.case_ids[index],
        }
