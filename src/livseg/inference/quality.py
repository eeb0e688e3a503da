"""Quality signals of one prediction: what the probabilities say about how good the mask is.

Every signal is computed on stage 1's network grid (:attr:`Segmentation.probabilities`: for the
built-in model RAS, 3 mm voxels, about 0.7 M voxels for an abdomen), so it costs milliseconds
whatever the CT's own size. The mask there is the prediction as :func:`segment` makes it on the
CT's grid: ``probability >= threshold``, largest 6-connected component, holes filled. For a
cascade checkpoint the estimate is about stage 1's liver, which stage 2 then refines (usually for
the better: the estimate errs on the side of caution there).

Signals (names are the keys of ``stats["quality"]["signals"]``):
    uncertain_share     voxels with probability in (0.1, 0.9) per voxel of the mask: a wide
                        band of doubt around (or inside) the liver.
    boundary_band_mm    the volume of those voxels over the mask's surface area, in mm: how thick
                        the band of doubt is where the boundary lies (about 1 mm for a sharp
                        boundary on the 3 mm grid; independent of the liver's size).
    entropy_inside      mean binary entropy (bits, 0 = certain, 1 = a coin toss) of the
                        probabilities inside the mask.
    entropy_surface     the same on the mask's surface voxels (where the boundary was drawn).
    removed_share       share of the thresholded voxels that post-processing removed (smaller
                        components): the network also saw liver elsewhere.
    variation_disagreement  1 - Dice between the mask and the mask of one more forward pass on
                        the input around the mask shrunk to :data:`VARIATION_ZOOM` of its size
                        (the patient seen at 4.5 mm instead of 3 mm, in the same RAS pose, unlike
                        a flip); a mask that the network does not hold firmly moves. None when not
                        computed. Shrinking makes the pass cheap (about 15 % of the first one):
                        measured on 76 calibration cases, it also ranked the Dice better than an
                        8 % enlargement (Spearman -0.92 against -0.89) at 40 % of its cost.
    volume_ml           the mask's volume on the network grid.
    volume_excess       how far that volume lies above what real livers reach: ``volume_ml /
                        large_ml - 1`` when positive, else 0, ``large_ml`` the 95th percentile
                        of the 112 LiTS training livers (about 2.5 L): a stomach or spleen taken
                        for liver adds hundreds of mL (hepatomegaly does too: then a person should
                        look anyway).
    cut_by_scan         1.0 when the mask touches the first or last slice of the scan (the liver
                        continues outside it: volume and shape say little), else 0.0.
    left_share          the share of the mask's volume at its left end (see
                        :func:`shape_descriptors`; LiTS livers: median 0.15, 95 % under 0.20): a
                        stomach or spleen taken for liver raises it. None when the grid is not RAS.
    wrapped_dark_share  dark soft tissue outside the mask that the mask wraps around, per voxel of
                        the mask: a tumour left out of the liver with confidence (see
                        :mod:`livseg.inference.quality_tissue`). None without the CT.
    shape_distance      how unlike a real liver the mask's shape is: the root mean square of
                        robust z-scores of :func:`shape_descriptors` against the 112 LiTS training
                        livers (:data:`livseg.inference.quality_model` ships their medians and
                        spreads); only the descriptors a cut scan leaves intact when
                        ``cut_by_scan``. None when the grid is not RAS.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from livseg.data.masks import bounding_box
from livseg.inference.postprocess import clean_mask
from livseg.inference.quality_tissue import wrapped_dark_share

__all__ = ["UNCERTAIN", "VARIATION_ZOOM", "quality_signals", "shape_descriptors", "shape_distance",
           "surface_area_mm2", "varied_probabilities", "volume_excess", "VARIATION_MARGIN"]

UNCERTAIN = (0.1, 0.9)  # a probability strictly between these is "uncertain"
VARIATION_ZOOM = 0.67  # the test-time variation: the crop around the liver shrunk to two thirds
VARIATION_MARGIN = 8  # voxels (24 mm on the built-in model's grid) of context around the mask's box
_FACE = ndimage.generate_binary_structure(3, 1)
# descriptors that a scan cutting through the liver leaves meaningful (in-plane only)
IN_PLANE_DESCRIPTORS = ("extent_ap_over_lr", "left_share", "fill_axial")


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of Bernoulli(p), elementwise (0 at p = 0 or 1, 1 at p = 0.5)."""
    q = np.clip(np.asarray(p, dtype=np.float32), 1e-7, 1.0 - 1e-7)
    return -(q * np.log2(q) + (1.0 - q) * np.log2(1.0 - q))


def surface_area_mm2(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Area of a binary mask's outer surface in mm^2: the voxel faces between foreground and
    background (the array border counts as background), each face ``spacing`` of its plane."""
    mask = np.asarray(mask, dtype=bool)
    area = 0.0
    for axis in range(3):
        padded = np.pad(mask, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        faces = np.count_nonzero(padded[(slice(None),) * axis + (slice(1, None),)]
                                 != padded[(slice(None),) * axis + (slice(None, -1),)])
        area += faces * float(np.prod([spacing[a] for a in range(3) if a != axis]))
    return area


def shape_descriptors(mask: np.ndarray, spacing: Sequence[float]) -> dict[str, float] | None:
    """Size-free shape descriptors of a liver mask on a RAS grid (axis 0 towards the patient's
    right, 1 anterior, 2 superior); None for an empty mask.

    - ``extent_ap_over_lr``, ``extent_si_over_lr``: bounding-box extents (mm) as ratios;
    - ``left_share``: share of the volume in the leftmost 40 % of the left-right extent (the left
      lobe; a stomach or spleen joined on the left raises it), or in the rightmost 40 % when that
      is smaller (a mask mirrored by a wrong header, as some LiTS files have);
    - ``fill_axial``: mean over axial slices of the mask's area over its in-plane bounding box's
      area (a liver is a wedge; a stomach joined to it leaves gaps in its box);
    - ``fill_box``: the volume over the 3D bounding box's volume.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    spacing = np.asarray(spacing, dtype=float)
    profiles = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    extent = np.array([(p[-1] - p[0] + 1) for p in profiles]) * spacing
    columns = mask.sum(axis=(1, 2))[profiles[0][0]: profiles[0][-1] + 1]  # voxels per left-right position
    end = max(1, int(round(0.4 * len(columns))))
    left = min(columns[:end].sum(), columns[-end:].sum())  # the lobe end, whichever side a bad header put it
    fills = []
    for k in profiles[2]:
        plane = mask[:, :, k]
        xs, ys = np.flatnonzero(plane.any(1)), np.flatnonzero(plane.any(0))
        fills.append(plane.sum() / float((xs[-1] - xs[0] + 1) * (ys[-1] - ys[0] + 1)))
    return {
        "extent_ap_over_lr": float(extent[1] / extent[0]),
        "extent_si_over_lr": float(extent[2] / extent[0]),
        "left_share": float(left / mask.sum()),
        "fill_axial": float(np.mean(fills)),
        "fill_box": float(mask.sum() * np.prod(spacing) / np.prod(extent)),
    }


def shape_distance(descriptors: Mapping[str, float], reference: Mapping[str, Mapping[str, float]],
                   names: Sequence[str] | None = None) -> float:
    """Root mean square of robust z-scores ``(value - median) / (1.4826 * MAD)`` of ``names``
    (default: every descriptor in ``reference``) against a reference population's statistics
    (``{name: {"median": m, "mad": d}}``)."""
    names = list(reference) if names is None else list(names)
    z = [(descriptors[n] - reference[n]["median"]) / max(1.4826 * reference[n]["mad"], 1e-9) for n in names]
    return float(np.sqrt(np.mean(np.square(z))))


def varied_probabilities(forward: Callable[[np.ndarray], np.ndarray], image: np.ndarray, mask: np.ndarray,
                         zoom: float = VARIATION_ZOOM, margin: int = VARIATION_MARGIN) -> np.ndarray | None:
    """Probabilities of one more forward pass on the network input around the mask, scaled by
    ``zoom``: the test-time variation of ``variation_disagreement``.

    Only the mask's bounding box plus ``margin`` voxels is cropped, scaled (trilinear) and run;
    its probabilities are scaled back into the crop and are 0 outside it.

    Args:
        forward: network-input array -> probability array of the same shape.
        image: the network input (float32 ``[X, Y, Z]``).
        mask: the predicted mask on the same grid (where to look).
        zoom: scale factor (< 1 shrinks the patient, > 1 enlarges it).
        margin: voxels of context around the mask's box.

    Returns:
        Probabilities on ``image``'s grid, or None for an empty mask.
    """
    box = bounding_box(mask, margin=margin)
    if box is None:
        return None
    crop = torch.from_numpy(np.ascontiguousarray(image[box], dtype=np.float32))[None, None]
    size = [max(8, int(round(n * zoom))) for n in crop.shape[2:]]
    with torch.no_grad():
        scaled = torch.nn.functional.interpolate(crop, size=size, mode="trilinear", align_corners=False)[0, 0].numpy()
        p = torch.from_numpy(np.ascontiguousarray(forward(scaled), dtype=np.float32))[None, None]
        back = torch.nn.functional.interpolate(p, size=list(crop.shape[2:]), mode="trilinear", align_corners=False)
    out = np.zeros(image.shape, dtype=np.float32)
    out[box] = back[0, 0].numpy()
    return out


def volume_excess(volume_ml: float, large_ml: float) -> float:
    """``volume_ml / large_ml - 1`` when positive, else 0: the share by which a liver volume
    exceeds what real livers reach."""
    return max(float(volume_ml) / float(large_ml) - 1.0, 0.0)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 2.0 * np.count_nonzero(a & b) / total if total else 1.0


def quality_signals(
    probabilities: np.ndarray,
    spacing: Sequence[float],
    *,
    threshold: float = 0.5,
    varied: np.ndarray | None = None,
    ras: bool = True,
    shape_reference: Mapping[str, Mapping[str, float]] | None = None,
    large_ml: float | None = None,
    mask: np.ndarray | None = None,
    hu: np.ndarray | None = None,
    hu_floor: float = -100.0,
) -> dict[str, float | None]:
    """The quality signals of one prediction (see the module docstring).

    Args:
        probabilities: stage 1's liver probabilities on its network grid.
        spacing: that grid's voxel size in mm per axis.
        threshold: the probability at or above which a voxel is liver.
        varied: the probabilities of the test-time variation on the same grid
            (:func:`varied_probabilities`), or None to skip ``variation_disagreement``.
        ras: whether the grid's axes are RAS (needed for the shape signal).
        shape_reference: medians and MADs of the shape descriptors of real livers (default: the
            shipped LiTS statistics).
        large_ml: the liver volume that real livers stay under (default: the shipped LiTS 95th
            percentile).
        mask: the post-processed mask of ``probabilities`` if the caller has it already
            (``clean_mask(probabilities >= threshold)``); computed when None.
        hu: the CT on the same grid in HU (clipped to the preprocessing window), or None to skip
            ``wrapped_dark_share``.
        hu_floor: the preprocessing window's lower end.

    Returns:
        ``{name: value}``; a signal that cannot be computed (empty mask, no variation, not RAS)
        is None.
    """
    p = np.asarray(probabilities, dtype=np.float32)
    thresholded = p >= threshold
    mask = clean_mask(thresholded)[0].astype(bool) if mask is None else np.asarray(mask, dtype=bool)
    n_mask, n_thresholded = int(np.count_nonzero(mask)), int(np.count_nonzero(thresholded))
    voxel_mm3 = float(np.prod(spacing))
    signals: dict[str, float | None] = dict.fromkeys(
        ("uncertain_share", "boundary_band_mm", "entropy_inside", "entropy_surface", "removed_share",
         "variation_disagreement", "volume_ml", "volume_excess", "cut_by_scan", "left_share", "shape_distance",
         "wrapped_dark_share"))
    signals["volume_ml"] = n_mask * voxel_mm3 / 1000.0
    if large_ml is None:
        from livseg.inference.quality_model import shipped_large_volume_ml

        large_ml = shipped_large_volume_ml()
    signals["volume_excess"] = volume_excess(signals["volume_ml"], large_ml)
    signals["removed_share"] = float(np.count_nonzero(thresholded & ~mask)) / n_thresholded if n_thresholded else 0.0
    if varied is not None:
        signals["variation_disagreement"] = 1.0 - _dice(mask, clean_mask(np.asarray(varied) >= threshold)[0] > 0)
    if not n_mask:
        return signals
    uncertain = int(np.count_nonzero((p > UNCERTAIN[0]) & (p < UNCERTAIN[1])))
    signals["uncertain_share"] = uncertain / n_mask
    box = bounding_box(mask, margin=1)  # the mask and one voxel of background: what the rest looks at
    crop, p_crop = mask[box], p[box]
    signals["boundary_band_mm"] = uncertain * voxel_mm3 / surface_area_mm2(crop, spacing)
    signals["entropy_inside"] = float(binary_entropy(p_crop[crop]).mean())
    surface = crop & ~ndimage.binary_erosion(crop, _FACE, border_value=0)
    signals["entropy_surface"] = float(binary_entropy(p_crop[surface]).mean())
    if hu is not None:
        signals["wrapped_dark_share"] = wrapped_dark_share(mask, hu, spacing, floor_hu=hu_floor)
    cut = bool(mask[:, :, 0].any() or mask[:, :, -1].any())
    signals["cut_by_scan"] = float(cut)
    if ras:
        if shape_reference is None:
            from livseg.inference.quality_model import shipped_shape_reference

            shape_reference = shipped_shape_reference()
        descriptors = shape_descriptors(crop, spacing)
        signals["left_share"] = descriptors["left_share"]  # type: ignore[index]
        names = [n for n in shape_reference if not cut or n in IN_PLANE_DESCRIPTORS]
        signals["shape_distance"] = shape_distance(descriptors, shape_reference, names)  # type: ignore[arg-type]
    return signals
