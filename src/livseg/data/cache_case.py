"""One case as the cache stores it (:mod:`livseg.data.cache`): its arrays on the network grid
(:func:`case_arrays`), their files and its manifest entry (:func:`store_case`: also for cases made
in memory, such as the phantoms of :mod:`livseg.training.phantoms`), and the stamps that tell a
changed source file (:func:`file_stamp`); a multi-organ case made on the network grid (a
liver-v2 build's phantoms and real CTs: :func:`store_organ_case`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from livseg.config import PreprocessConfig, RegionConfig
from livseg.data.io.files import atomic_output
from livseg.data.io.volume import Volume
from livseg.data.preprocessing import (
    binarize,
    liver_fraction,
    network_input,
    network_view,
    preprocess_image,
    preprocess_labels,
)

__all__ = ["SHARE_SCALE", "case_arrays", "file_stamp", "store_case", "store_organ_case"]

SHARE_SCALE = 255  # a fixed-spacing cache's label: the liver's share of each voxel times this (uint8)


def file_stamp(path: Path) -> list[int]:
    """``[size in bytes, modification time in ns]`` of a file, or of all files under a folder
    (a DICOM series: total size, latest time), so that a changed source is preprocessed again."""
    files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
    stats = [p.stat() for p in files]
    return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]


def case_arrays(volume: Volume, labels: np.ndarray, config: PreprocessConfig,
                region: RegionConfig | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A CT and its label map as a cache stores them (see the module docstring).

    Returns:
        ``(image, target, extra manifest entries)``: float32 image and binary uint8 liver on the
        network grid; with ``config.spacing`` a float16 image and the liver's share of each voxel
        times :data:`SHARE_SCALE` (uint8); with ``region``, stage 2's liver region (0/1/2).
    """
    if region is not None:
        from livseg.data.patches import region_case

        image, target, box = region_case(volume, labels, config, region)
        return image, target, {"region": box}
    if config.spacing:
        image, grid = network_input(volume, config)
        share = liver_fraction(network_view(labels, volume.affine, config)[0], grid, config.liver_labels)
        return (image.astype(np.float16), np.rint(share * SHARE_SCALE).astype(np.uint8),
                {"label_scale": SHARE_SCALE})
    image = preprocess_image(volume, config).astype(np.float32, copy=False)
    return image, preprocess_labels(labels, config, affine=volume.affine).astype(np.uint8, copy=False), {}


def store_case(out: Path, case_id: str, volume: Volume, labels: np.ndarray, config: PreprocessConfig, *,
               source: dict[str, Any], region: RegionConfig | None = None) -> dict[str, Any]:
    """Write one case's arrays into a cache folder (atomically) and return its manifest entry.

    Args:
        out: the cache folder (see :func:`open_cache`; the caller records the entry).
        case_id: the case's id (file names ``<case_id>_image.npy``, ``<case_id>_label.npy``).
        volume: the CT.
        labels: its label map on the CT's grid.
        config: the cache's preprocessing.
        source: where the case came from: ``image`` and ``label`` (paths, or a description such
            as ``phantom:<seed>`` for a case made in memory) and their stamps.
        region: stage 2's settings, or None.
    """
    image, target, extra = case_arrays(volume, labels, config, region)
    image_file, label_file = f"{case_id}_image.npy", f"{case_id}_label.npy"
    with atomic_output(out / image_file, overwrite=True) as tmp:
        np.save(tmp, image)
    with atomic_output(out / label_file, overwrite=True) as tmp:
        np.save(tmp, target)
    liver_ml = float(np.count_nonzero(binarize(labels, config.liver_labels)) * volume.voxel_volume_ml)
    return {**source, "shape": list(volume.shape), "affine": volume.affine.tolist(), "spacing": list(volume.spacing),
            "liver_ml": liver_ml, "image_file": image_file, "label_file": label_file, **extra}


def store_organ_case(out: Path, case_id: str, image: np.ndarray, share: np.ndarray, other: np.ndarray,
                     classes: Sequence[str], *, source: dict[str, Any], voxel_ml: float) -> dict[str, Any]:
    """Write one multi-organ case made on the network grid (a fixed-spacing cache) and return its
    manifest entry.

    Args:
        out: the cache folder (see :func:`open_cache`; the caller records the entry).
        case_id: the case's id.
        image: float16 windowed image on the network grid.
        share: uint8 liver share x :data:`SHARE_SCALE`.
        other: uint8 index (into ``classes``' model class list, :mod:`livseg.data.organ_classes`)
            of the most frequent other class of each voxel (:func:`livseg.data.organ_targets.organ_targets`).
        classes: the names of the classes the case labels (background and liver included).
        source: where it came from (``image``, ``label`` descriptions and stamps).
        voxel_ml: a network voxel's volume (for the entry's ``liver_ml``).
    """
    files = {"image_file": f"{case_id}_image.npy", "label_file": f"{case_id}_label.npy",
             "other_file": f"{case_id}_other.npy"}
    for key, array in (("image_file", image.astype(np.float16)), ("label_file", share.astype(np.uint8)),
                       ("other_file", other.astype(np.uint8))):
        with atomic_output(out / files[key], overwrite=True) as tmp:
            np.save(tmp, array)
    return {**source, "shape": list(image.shape), "liver_ml": float(share.sum(dtype=np.float64)) / SHARE_SCALE * voxel_ml,
            "label_scale": SHARE_SCALE, "classes": list(classes), **files}
