"""Inference: CT volume -> liver mask on the CT's own grid, plus statistics.

Pipeline of :func:`segment` (each stage timed):
    preprocess    the checkpoint's own preprocessing (HU window, resample to its target shape)
    network       one forward pass, sigmoid -> probabilities on the network grid (a multi-organ
                  model: softmax over its classes, the liver's channel goes on)
    back_mapping  linear interpolation of the probabilities onto the input's array shape (same
                  corner-aligned convention as the forward resampling), then ``>= threshold``;
                  interpolating probabilities rather than a thresholded mask gives a smooth
                  boundary at the original resolution instead of network-grid staircases
    postprocess   largest 3D connected component + hole filling (:mod:`livseg.inference.postprocess`)
    stage2        cascade checkpoints only: liver and tumour on the liver's region at a fine
                  spacing (:mod:`livseg.inference.cascade`); the mask becomes 0/1/2 (LiTS labels)
    organs        ``organs=True`` with a multi-organ model: the neighbours' label map on the
                  input grid and their volumes (:mod:`livseg.inference.organs`)
    quality       one more forward pass on a shrunk crop around the liver, the quality
                  signals on the network grid and the calibrated predicted Dice with a review flag
                  (:mod:`livseg.inference.quality`, :mod:`livseg.inference.quality_model`):
                  ``stats["quality"]``

CPU speed: the model is loaded once (:func:`load_model`), its batch norms are folded into the
preceding convolutions (:func:`fold_batchnorm`), it runs under ``torch.inference_mode`` in the
``channels_last_3d`` memory format with one thread per available core. On CUDA the forward
runs under autocast with training's precision rule (:func:`livseg.device.autocast_dtype`: bf16
where the GPU has it natively, else fp16).

:mod:`livseg.inference.predict` is the batch driver behind ``livseg predict`` (files, folders, DICOM series).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from livseg.config import RunConfig
from livseg.data.io.volume import Volume
from livseg.data.masks import as_bool, bounding_box
from livseg.data.preprocessing import GridMap, network_input, ras_orientation, to_input_grid, unwindow
from livseg.data.organ_classes import legend
from livseg.device import autocast, cpu_count, resolve_device
from livseg.errors import CheckpointError, ConfigError, DimensionError
from livseg.inference.cascade import Cascade, segment_region, tumour_stats
from livseg.inference.organs import organ_map
from livseg.inference.plausibility import result_warnings
from livseg.inference.postprocess import clean_mask, count_components
from livseg.inference.quality import quality_signals, varied_probabilities
from livseg.inference.quality_model import assess
from livseg.nn.fold import fold_batchnorm

log = logging.getLogger(__name__)

MIN_VOXELS_PER_AXIS = 8  # fewer cannot hold a liver; such inputs are refused, not "segmented"

__all__ = ["Segmentation", "estimate_quality", "fold_batchnorm", "load_model", "mask_stats", "network_spacing", "segment"]


@dataclass
class Segmentation:
    """Result of :func:`segment`.

    Attributes:
        mask: uint8 mask with exactly the input volume's shape: 0/1 liver for a liver checkpoint,
            0/1/2 (background, liver, tumour: LiTS) for a cascade.
        probabilities: float32 liver probabilities on stage 1's network grid (the checkpoint's
            ``preprocess.target_shape``, or the CT's extent at ``preprocess.spacing``), before
            back-mapping.
        stats: liver volume (mL), HU inside the liver, bounding box (mm), component count
            before post-processing, input shape and spacing (see :func:`mask_stats`), and with
            ``quality=True`` the quality block ``stats["quality"]``
            (:func:`livseg.inference.quality_model.assess`: signals, ``predicted_dice``,
            ``review``, ``reasons``).
        timings: seconds per stage: preprocess, network, back_mapping, postprocess (and stage2,
            quality).
        input_probabilities: with ``keep_probabilities=True``, float32 probability maps on the
            input grid by structure (``"liver"``; for a cascade stage 2's ``"liver"``, i.e.
            liver-or-tumour, and ``"tumour"``, 0 outside the liver's region), before thresholding
            and post-processing; otherwise empty.
        stage1_mask: for a cascade, stage 1's post-processed 0/1 liver mask on the input grid
            (what a liver-only checkpoint would have returned); None otherwise.
        grid: where stage 1's network grid lies in the CT (:class:`livseg.data.preprocessing.GridMap`).
        organs: with ``segment(..., organs=True)`` and a multi-organ model, uint8 label map of the
            liver and its neighbours on the input grid (values as ``legend``); else None.
        legend: the organ map's ``{"0": "background", "1": "liver", ...}``; else None.
    """

    mask: np.ndarray
    probabilities: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    input_probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    stage1_mask: np.ndarray | None = None
    grid: GridMap | None = None
    organs: np.ndarray | None = None
    legend: dict[str, str] | None = None


# ------------------------------------------------------------------------------------ the model


def load_model(
    checkpoint_path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    *,
    fold: bool = True,
    num_threads: int = 0,
) -> tuple[nn.Module, RunConfig]:
    """Load a checkpoint once into a ready-to-run inference model.

    Args:
        checkpoint_path: a livseg ``best.pt``/``last.pt``; None or ``"builtin:<name>"`` for a
            model shipped with livseg (``livseg models``; None: the default, liver-v1).
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        fold: fold batch norms into the convolutions (same output to ~1e-6, faster).
        num_threads: CPU threads for torch (process-wide); 0 = every core this process may
            use. Give fewer on a machine busy with other work: oversubscribed OpenMP is slow.

    Returns:
        ``(model, config)``: the eval-mode model on ``device`` (channels-last 3D on CPU) and the
        checkpoint's full RunConfig, whose ``preprocess`` part :func:`segment` uses. For a cascade
        checkpoint the model is a :class:`livseg.inference.cascade.Cascade` holding both stages and
        the config is stage 1's.

    Raises:
        InputFileNotFoundError: no such file.
        CheckpointError: truncated, foreign, or inconsistent checkpoint, or a stage-2 (region)
            checkpoint alone (it belongs in a cascade: ``livseg cascade``).
        ConfigError: unavailable device, or no built-in model of that name.
    """
    from livseg.nn.checkpoint import build_model, read_checkpoint

    target = resolve_device(device)
    checkpoint = read_checkpoint(checkpoint_path, map_location="cpu")
    if checkpoint.cascade is None and checkpoint.config.region.enabled:
        raise CheckpointError(
            f"{checkpoint_path}: a stage-2 (region) checkpoint: it segments liver and tumour inside a liver's region, "
            "not a whole CT; join it with a liver checkpoint first: livseg cascade --liver LIVER.pt --tumour "
            f"{checkpoint_path} -o cascade.pt, then predict with --checkpoint cascade.pt"
        )
    model = build_model(checkpoint)
    if checkpoint.cascade is not None:
        model = Cascade(model, build_model(checkpoint.cascade), checkpoint.cascade.config)
    if fold:
        model = fold_batchnorm(model)
    if target.type == "cpu":
        # the default is the physical-core count of the whole machine, not our affinity mask
        torch.set_num_threads(num_threads if num_threads > 0 else cpu_count())
        model = model.to(memory_format=torch.channels_last_3d)
    model = model.to(target).eval()
    return model, checkpoint.config


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _forward(model: nn.Module, image: np.ndarray, device: torch.device, classes: tuple[str, ...] = ()) -> np.ndarray:
    """One forward pass of a preprocessed image ``[X, Y, Z]`` -> probabilities: ``[X, Y, Z]`` (the
    sigmoid of a liver network) or ``[C, X, Y, Z]`` (softmax, one channel per class of a
    multi-organ network: ``classes``).

    A fixed-spacing grid has the CT's own extent: it is padded at the far end of each axis to the
    U-Net's divisor with 0 (the window's bottom, i.e. air or fat) and the padding cut off again.
    """
    divisor = int(getattr(model, "divisor", 1))
    shape = image.shape
    pad = [(-n) % divisor for n in shape]
    if any(pad):
        image = np.pad(image, [(0, p) for p in pad])
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
    if device.type == "cpu":
        x = x.to(memory_format=torch.channels_last_3d)
    with torch.inference_mode(), autocast(device):
        logits = model(x)[0, :, : shape[0], : shape[1], : shape[2]].float()
        prob = torch.softmax(logits, 0) if classes else torch.sigmoid(logits[0])
    return prob.contiguous().cpu().numpy()


# ------------------------------------------------------------------------------------ segment


def segment(
    volume: Volume,
    model_or_checkpoint: str | os.PathLike[str] | tuple[nn.Module, RunConfig] | None = None,
    *,
    threshold: float = 0.5,
    postprocess: bool = True,
    device: str | torch.device = "auto",
    keep_probabilities: bool = False,
    organs: bool = False,
    quality: bool = True,
) -> Segmentation:
    """Segment the liver in one CT volume (and, with a multi-organ model, its neighbours).

    Args:
        volume: the CT, as :func:`livseg.data.io.volume.load_volume` returns it.
        model_or_checkpoint: a checkpoint path (loaded for this call only; use
            :func:`load_model` once for many volumes) or the ``(model, config)`` pair it returns;
            None or ``"builtin:<name>"``: a model shipped with livseg (None: the default).
        threshold: probability at or above which a voxel is liver, applied on the input grid.
        postprocess: keep the largest connected component and fill holes (LiTS rule).
        device: used only when a path is given; a loaded model runs where its weights are.
        keep_probabilities: also return the probabilities on the input grid
            (``input_probabilities``; 4 bytes per voxel).
        organs: with a multi-organ model (``model.classes``), also return the neighbours as one
            label map on the input grid (``organs``, values as ``legend``) and their volumes
            (``stats["organs"]``); see :func:`livseg.inference.organs.organ_map`.
        quality: estimate the mask's quality (``stats["quality"]``: one more forward pass, a few
            percent of the time of a case; see :mod:`livseg.inference.quality`).

    Returns:
        The mask on the input grid, the network-grid probabilities, statistics and timings.
        An image whose intensities do not look like CT, and an empty mask, are logged as one
        warning line and listed in ``stats["warnings"]``
        (:mod:`livseg.inference.plausibility`).

    Raises:
        DimensionError: fewer than 8 voxels along an axis.
        ConfigError: threshold outside (0, 1), unavailable device, a bare module without
            its RunConfig, or ``organs`` with a liver-only model.
        CheckpointError, InputFileNotFoundError: for a bad checkpoint path.
    """
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    if min(volume.shape) < MIN_VOXELS_PER_AXIS:
        raise DimensionError(
            f"{volume.source or 'volume'}: image has shape {volume.shape}; at least {MIN_VOXELS_PER_AXIS} voxels per "
            "axis are needed to segment a liver (a slab or a thumbnail is not an abdominal CT)"
        )
    if model_or_checkpoint is None or isinstance(model_or_checkpoint, (str, os.PathLike)):
        model, config = load_model(model_or_checkpoint, device)
    elif isinstance(model_or_checkpoint, tuple) and len(model_or_checkpoint) == 2:
        model, config = model_or_checkpoint
    else:
        raise ConfigError(
            f"expected a checkpoint path or the (model, RunConfig) pair from load_model, "
            f"got {type(model_or_checkpoint).__name__}"
        )
    classes = tuple(config.model.classes)
    if organs and not classes:
        raise ConfigError("organs=True needs a multi-organ model (a checkpoint with model.classes, e.g. "
                          "builtin:liver-v2); this one segments the liver only")
    timings: dict[str, float] = {}

    start = time.perf_counter()
    image, grid = network_input(volume, config.preprocess)
    timings["preprocess"] = time.perf_counter() - start

    start = time.perf_counter()
    class_probabilities = _forward(model, image, _model_device(model), classes)
    probabilities = class_probabilities[classes.index("liver")] if classes else class_probabilities
    timings["network"] = time.perf_counter() - start

    start = time.perf_counter()
    on_input_grid = to_input_grid(probabilities, volume, config.preprocess, grid)
    mask = on_input_grid >= threshold
    timings["back_mapping"] = time.perf_counter() - start

    start = time.perf_counter()
    if postprocess:
        mask, n_before = clean_mask(mask)
    else:
        n_before = count_components(mask)
        mask = mask.astype(np.uint8)
    timings["postprocess"] = time.perf_counter() - start

    stage1_mask = None
    if isinstance(model, Cascade):
        start = time.perf_counter()
        stage1_mask = mask
        mask, stage2_probabilities = segment_region(volume, mask, model.tumour, model.tumour_config,
                                                    threshold=threshold, postprocess=postprocess,
                                                    device=_model_device(model), keep_probabilities=keep_probabilities)
        timings["stage2"] = time.perf_counter() - start

    organ_labels = None
    if organs:
        start = time.perf_counter()
        organ_labels, stats_organs = organ_map(class_probabilities, classes, mask > 0, volume, config.preprocess, grid)
        timings["organs"] = time.perf_counter() - start
    stats = mask_stats(mask, volume)
    if organs:
        stats["organs"] = stats_organs
    warnings = result_warnings(volume.array, mask, volume.source)
    if warnings:  # one line, exit 0: the result stands, the user is told it is doubtful
        log.warning("%s", "; ".join(warnings))
    stats.update(
        warnings=warnings,
        n_components_before_postprocess=n_before,
        threshold=float(threshold),
        postprocess=bool(postprocess),
        network_shape=[int(s) for s in probabilities.shape],
    )
    if quality:
        start = time.perf_counter()
        stats["quality"] = estimate_quality(model, image, probabilities, volume, config, grid, threshold=threshold)
        timings["quality"] = time.perf_counter() - start
    kept = {"liver": on_input_grid} if keep_probabilities else {}
    if stage1_mask is not None:
        stats.update(tumour_stats(mask, volume), stage1_liver_volume_ml=mask_stats(stage1_mask, volume)["liver_volume_ml"])
        kept = stage2_probabilities
    return Segmentation(mask=mask, probabilities=probabilities, stats=stats, timings=timings, input_probabilities=kept,
                        stage1_mask=stage1_mask, grid=grid, organs=organ_labels,
                        legend=legend(classes) if organs else None)


def network_spacing(volume: Volume, config: RunConfig, grid: GridMap) -> tuple[float, float, float]:
    """Voxel size (mm) of stage 1's network grid, in the network's axis order."""
    spacing = np.asarray(volume.spacing, dtype=float)
    if config.preprocess.reorient:  # RAS axis k is the array axis whose orientation row says k
        spacing = spacing[np.argsort(ras_orientation(volume.affine)[:, 0])]
    return grid.spacing(spacing)


def estimate_quality(model: nn.Module, image: np.ndarray, probabilities: np.ndarray, volume: Volume,
                     config: RunConfig, grid: GridMap, *, threshold: float = 0.5) -> dict[str, Any]:
    """The quality block of one prediction: signals of stage 1's network-grid probabilities, of
    one more forward pass on a shrunk crop of the input around the liver and of the input itself
    (dark tissue the mask wraps around), then the calibrated predictor and review rule (:func:`livseg.inference.quality_model.assess`)."""
    device, classes = _model_device(model), tuple(config.model.classes)

    def liver(x: np.ndarray) -> np.ndarray:  # a multi-organ model: its liver channel
        forward = _forward(model, x, device, classes)
        return forward[classes.index("liver")] if classes else forward

    mask = clean_mask(probabilities >= threshold)[0]
    varied = varied_probabilities(liver, image, mask)
    preprocess = config.preprocess
    signals = quality_signals(probabilities, network_spacing(volume, config, grid), threshold=threshold,
                              varied=varied, ras=preprocess.reorient, mask=mask,
                              hu=unwindow(image, preprocess.hu_min, preprocess.hu_max), hu_floor=preprocess.hu_min)
    return assess(signals)


def mask_stats(mask: np.ndarray, volume: Volume) -> dict[str, Any]:
    """Liver statistics of a mask on a volume's grid.

    The bounding box is given in world RAS+ mm as the min and max corner over the outer
    *faces* of the outermost mask voxels (voxel centres +- half a voxel), so for an
    axis-aligned grid its size is the number of voxels spanned times the spacing.

    Returns:
        ``liver_volume_ml`` (voxel count x voxel volume), ``voxel_count``, ``mean_hu``,
        ``median_hu`` (None for an empty mask), ``bbox_mm`` (``{"min": [x, y, z], "max":
        [...]}`` or None), ``input_shape``, ``spacing_mm``.
    """
    inside = as_bool(mask)
    count = int(np.count_nonzero(inside))
    stats: dict[str, Any] = {
        "liver_volume_ml": count * volume.voxel_volume_ml,
        "voxel_count": count,
        "mean_hu": None,
        "median_hu": None,
        "bbox_mm": None,
        "input_shape": list(volume.shape),
        "spacing_mm": [float(s) for s in volume.spacing],
    }
    if count:
        values = volume.array[inside]
        stats["mean_hu"] = float(values.mean(dtype=np.float64))
        stats["median_hu"] = float(np.median(values))
        box = bounding_box(inside)  # voxel centres; the faces are half a voxel further out
        corners = np.array(np.meshgrid(*((s.start - 0.5, s.stop - 0.5) for s in box), indexing="ij")).reshape(3, -1)
        world = volume.affine[:3, :3] @ corners + volume.affine[:3, 3:4]
        stats["bbox_mm"] = {"min": world.min(axis=1).tolist(), "max": world.max(axis=1).tolist()}
    return stats
