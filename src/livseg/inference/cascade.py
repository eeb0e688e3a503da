"""Stage 2 of the cascade at inference: liver and tumour on the liver's region, back on the CT's grid.

Given stage 1's liver mask (post-processed, on the CT's own grid), :func:`segment_region`

1. cuts the region: the mask's bounding box plus ``region.margin_mm``, in the CT's RAS axis order,
   windowed and resampled to ``region.spacing_mm`` (:func:`livseg.data.region.cut_liver_region`);
2. runs the stage-2 network over it with the sliding window (``region.patch_shape``,
   ``overlap``, ``blend``), blending sigmoid probabilities of its two nested outputs;
3. maps the probabilities back onto the crop of the CT (linear, the inverse of the cut) and
   thresholds them there;
4. post-processes: liver = the largest component of liver-or-tumour with holes filled (the LiTS
   rule of stage 1), tumour = tumour output inside that liver, lesions (26-connected) smaller
   than ``region.min_lesion_mm3`` relabelled liver;
5. writes 0/1/2 into a label map of the CT's shape (nothing outside the crop) and undoes the
   reorientation.

Everything after the network works on the crop, not the whole CT. :class:`Cascade` holds both
loaded networks; :func:`livseg.inference.segment.segment` calls this module when given one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from livseg.config import RunConfig
from livseg.data.io.volume import Volume
from livseg.data.preprocessing import from_ras, resample_linear
from livseg.data.region import cut_liver_region
from livseg.data.lesions import lesion_table, remove_small_lesions
from livseg.inference.postprocess import clean_mask
from livseg.nn.sliding_window import sliding_window

log = logging.getLogger(__name__)

__all__ = ["Cascade", "segment_region", "tumour_stats"]


class Cascade(nn.Module):
    """Both stages of a cascade, loaded: ``liver`` (stage 1, the whole CT) and ``tumour`` (stage 2,
    the liver's region) with stage 2's configuration. Returned by
    :func:`livseg.inference.segment.load_model` for a cascade checkpoint, paired with stage 1's config.
    """

    def __init__(self, liver: nn.Module, tumour: nn.Module, tumour_config: RunConfig) -> None:
        super().__init__()
        self.liver = liver
        self.tumour = tumour
        self.tumour_config = tumour_config

    @property
    def divisor(self) -> int:
        """Stage 1's: what a fixed-spacing stage 1 (the built-in model) pads its whole-CT input to."""
        return int(getattr(self.liver, "divisor", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 1's logits (the whole-CT liver network); stage 2 runs in :func:`segment_region`."""
        return self.liver(x)


def _probabilities(model: nn.Module, device: torch.device):  # noqa: ANN202
    """Patch batch -> sigmoid probabilities, as segment runs the network (fp16 autocast on CUDA)."""

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    logits = model(batch)
            else:
                logits = model(batch.to(memory_format=torch.channels_last_3d))
            return torch.sigmoid(logits.float())

    return predict


def tumour_mask(probability: np.ndarray, liver: np.ndarray, *, threshold: float, voxel_mm3: float,
                min_mm3: float | None) -> np.ndarray:
    """Stage 2's tumour mask: ``probability >= threshold`` inside ``liver``, lesions smaller than
    ``min_mm3`` dropped (None: all kept). The one rule :func:`segment_region` and the benchmarks'
    post-processing sweep share."""
    tumour = (probability >= threshold) & liver
    return tumour if min_mm3 is None else remove_small_lesions(tumour, voxel_mm3, min_mm3)


def segment_region(
    volume: Volume,
    liver_mask: np.ndarray,
    model: nn.Module,
    config: RunConfig,
    *,
    threshold: float = 0.5,
    postprocess: bool = True,
    device: torch.device | None = None,
    keep_probabilities: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Stage 2 on one CT (see the module docstring).

    Args:
        volume: the CT.
        liver_mask: stage 1's liver mask on ``volume``'s grid; its box (plus the margin) is the region.
        model: the stage-2 network (eval mode).
        config: stage 2's configuration (``region`` enabled).
        threshold: probability threshold of both outputs.
        postprocess: largest liver component, holes filled, small lesions removed; without it the
            thresholded outputs are kept as they are (tumour still only inside the liver).
        device: where the model runs (default: where its weights are).
        keep_probabilities: also return both outputs' probabilities on ``volume``'s grid.

    Returns:
        ``(labels, probabilities)``: uint8 label map of ``volume``'s shape, 0 background, 1 liver,
        2 tumour (all zero when the liver mask is empty); and with ``keep_probabilities``
        ``{"liver": liver-or-tumour, "tumour": tumour}`` float32 on ``volume``'s grid, before
        thresholding (0 outside the region), else ``{}``.
    """
    region = config.region
    out = np.zeros(volume.shape, dtype=np.uint8)
    cut = cut_liver_region(volume, liver_mask, margin_mm=region.margin_mm, target_mm=region.spacing_mm,
                           hu_min=config.preprocess.hu_min, hu_max=config.preprocess.hu_max)
    if cut is None:
        log.info("stage 1 found no liver: no region for stage 2")
        empty = np.zeros(volume.shape, dtype=np.float32)
        return out, ({"liver": empty, "tumour": empty.copy()} if keep_probabilities else {})
    if device is None:
        device = next(model.parameters()).device
    image = torch.from_numpy(cut.image)[None].to(device)
    probabilities = sliding_window(image, _probabilities(model, device), region.patch_shape, overlap=region.overlap,
                                   blend=region.blend).cpu().numpy()
    crop_shape = cut.region.crop_shape
    crop_probabilities = [resample_linear(channel, crop_shape) for channel in probabilities]
    liver = crop_probabilities[0] >= threshold
    if postprocess:
        liver = clean_mask(liver)[0].astype(bool)
    tumour = tumour_mask(crop_probabilities[1], liver, threshold=threshold, voxel_mm3=volume.voxel_volume_ml * 1000.0,
                         min_mm3=region.min_lesion_mm3 if postprocess else None)
    ras = np.zeros(cut.region.ras_shape, dtype=np.uint8)
    ras[cut.region.slices] = liver.astype(np.uint8) + tumour.astype(np.uint8)
    kept = {}
    if keep_probabilities:
        for name, crop in zip(("liver", "tumour"), crop_probabilities):
            full = np.zeros(cut.region.ras_shape, dtype=np.float32)
            full[cut.region.slices] = crop
            kept[name] = from_ras(full, volume.affine)
    return from_ras(ras, volume.affine), kept


def tumour_stats(labels: np.ndarray, volume: Volume) -> dict[str, Any]:
    """Tumour statistics of a 0/1/2 label map on ``volume``'s grid.

    Returns:
        ``tumour_count`` (3D connected components, 26-connected), ``tumour_volume_ml``,
        ``tumour_burden_percent`` (tumour / liver volume, liver including tumour; 0 without
        liver) and ``tumours``: per lesion, largest first, ``volume_ml``, ``diameter_mm`` (longest
        axial diameter, RECIST) and ``centroid_mm`` (world RAS); see
        :mod:`livseg.data.lesions`.
    """
    lesions = lesion_table(labels == 2, volume.affine)
    tumour_ml = float(np.count_nonzero(labels == 2)) * volume.voxel_volume_ml
    liver_ml = float(np.count_nonzero(labels)) * volume.voxel_volume_ml
    return {
        "tumour_count": len(lesions),
        "tumour_volume_ml": tumour_ml,
        "tumour_burden_percent": 100.0 * tumour_ml / liver_ml if liver_ml else 0.0,
        "tumours": [{key: row[key] for key in ("volume_ml", "diameter_mm", "centroid_mm")} for row in lesions],
    }
