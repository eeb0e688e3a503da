"""A network applied patch by patch over a volume larger than its input: sliding-window inference.

One function, :func:`sliding_window`, with the overlap and the blending explicit. Windows of
``patch`` voxels tile the volume with a step of ``patch * (1 - overlap)`` (at least one voxel);
along each axis the first window starts at 0 and the last ends at the volume's end, the others
spread evenly in between (nnU-Net's placement), so every voxel is seen and none is seen only by
a window's edge more than needed. A volume smaller than the patch along an axis is padded there
(``pad_value``, centred) and the padding cut off again.

Blending: every window's output is multiplied by a weight map and the weighted sum divided by
the summed weights. ``"gaussian"``: a Gaussian centred on the window with sigma = patch / 8 per
axis, scaled to a maximum of 1 and floored at 1e-3 (voxels near a window's edge see less context
and are less trusted, yet no voxel has zero weight); ``"uniform"``: the plain mean of the
overlapping windows.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["gaussian_weights", "sliding_window", "window_starts"]

GAUSSIAN_SIGMA = 1.0 / 8  # of the patch size, per axis (nnU-Net)
MIN_WEIGHT = 1e-3


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis of ``size`` voxels (``size >= patch``).

    Args:
        size: length of the (padded) axis.
        patch: window length.
        overlap: fraction of a window shared with the next, in [0, 1).

    Returns:
        Starts from 0 to ``size - patch`` inclusive, evenly spread, as few as the step allows.
    """
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    count = int(np.ceil((size - patch) / step)) + 1
    return sorted({int(round(v)) for v in np.linspace(0, size - patch, count)})


def gaussian_weights(patch: Sequence[int], *, device: torch.device | str = "cpu") -> torch.Tensor:
    """The Gaussian blending map of one window, ``[X, Y, Z]``, maximum 1, minimum ``MIN_WEIGHT``."""
    axes = []
    for n in patch:
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        sigma = max(n * GAUSSIAN_SIGMA, 1e-6)
        axes.append(torch.exp(-0.5 * (x / sigma) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights = (weights / weights.max()).clamp_min(MIN_WEIGHT)
    return weights.to(device=device, dtype=torch.float32)


def sliding_window(
    image: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    patch: Sequence[int],
    *,
    overlap: float = 0.5,
    blend: str = "gaussian",
    batch_size: int = 1,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Apply ``predictor`` window by window over ``image`` and blend the outputs.

    Args:
        image: ``[C_in, X, Y, Z]``, on the device the predictor expects.
        predictor: maps a batch ``[N, C_in, *patch]`` to ``[N, C_out, *patch]`` (e.g. a network
            followed by a sigmoid: blend probabilities, not logits).
        patch: window shape (X, Y, Z).
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        blend: ``"gaussian"`` or ``"uniform"`` (see the module docstring).
        batch_size: windows per predictor call.
        pad_value: value of the padding where the image is smaller than a window.

    Returns:
        ``[C_out, X, Y, Z]`` float32 on ``image``'s device.

    Raises:
        ValueError: a bad shape, overlap or blend.
    """
    if image.ndim != 4:
        raise ValueError(f"sliding_window: expected an image [C, X, Y, Z], got shape {tuple(image.shape)}")
    patch = tuple(int(p) for p in patch)
    if len(patch) != 3 or min(patch) < 1:
        raise ValueError(f"sliding_window: patch must be three positive sizes, got {patch}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"sliding_window: overlap must lie in [0, 1), got {overlap}")
    if blend not in ("gaussian", "uniform"):
        raise ValueError(f"sliding_window: blend must be 'gaussian' or 'uniform', got {blend!r}")
    size = tuple(int(s) for s in image.shape[1:])
    before = [max(p - s, 0) // 2 for s, p in zip(size, patch)]
    after = [max(p - s, 0) - b for s, p, b in zip(size, patch, before)]
    if any(before) or any(after):
        pads = [v for axis in reversed(range(3)) for v in (before[axis], after[axis])]
        image = torch.nn.functional.pad(image, pads, value=pad_value)
    padded = tuple(int(s) for s in image.shape[1:])
    weights = gaussian_weights(patch, device=image.device) if blend == "gaussian" else torch.ones(
        patch, device=image.device)
    corners = [(x, y, z) for x in window_starts(padded[0], patch[0], overlap)
               for y in window_starts(padded[1], patch[1], overlap)
               for z in window_starts(padded[2], patch[2], overlap)]
    total: torch.Tensor | None = None
    norm = torch.zeros(padded, device=image.device, dtype=torch.float32)
    for first in range(0, len(corners), max(1, int(batch_size))):
        group = corners[first : first + max(1, int(batch_size))]
        views = [tuple(slice(c, c + p) for c, p in zip(corner, patch)) for corner in group]
        batch = torch.stack([image[(slice(None), *view)] for view in views])
        output = predictor(batch).float()
        if total is None:
            total = torch.zeros((output.shape[1], *padded), device=image.device, dtype=torch.float32)
        for out, view in zip(output, views):
            total[(slice(None), *view)] += out * weights
            norm[view] += weights
    assert total is not None  # at least one window always exists
    result = total / norm
    crop = tuple(slice(b, b + s) for b, s in zip(before, size))
    return result[(slice(None), *crop)]
