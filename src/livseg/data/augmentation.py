"""Training-time augmentation of (image, label) pairs on the network grid.

One call of :func:`augment` applies, in this order:

1. random flips, each of the three axes independently with ``flip_prob`` (exact: ``np.flip``);
2. with probability ``prob``, one affine resample of image and label together: a rotation about
   the z axis by up to ``rotate_deg`` degrees and an isotropic scaling in
   ``[1 - scale_range, 1 + scale_range]``, about the volume centre. The image is interpolated
   linearly and the label by nearest neighbour, from the same matrix, so they stay aligned and
   the label stays binary. Only the in-plane (x, y) axes are rotated, because after resampling to
   160 x 160 x 80 they share one voxel size while z does not; rotating into z would shear
   anatomy. Outside the volume the border voxel is repeated (CT borders are air or body, not 0);
3. intensity: ``image * U(1 - intensity_scale, 1 + intensity_scale) + U(-shift, shift)``;
4. additive Gaussian noise with standard deviation ``noise_std``.

Randomness comes only from the ``numpy.random.Generator`` passed in, so a run is reproducible
for a seed and a resumed run can rebuild the same generator (training derives one per sample
from ``(seed, epoch, index)``). The paper trained without augmentation; it is off in the
``paper`` preset and on in ``default`` and ``demo``.
"""

from __future__ import annotations

import math
import numpy as np
from scipy import ndimage

from livseg.config import AugmentConfig

__all__ = ["augment", "random_affine"]


def random_affine(
    shape: tuple[int, int, int], config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the output-to-input mapping of one rotation + scaling about the volume centre.

    Args:
        shape: spatial shape (X, Y, Z) of the volume.
        config: ``rotate_deg`` and ``scale_range`` bound the draw.
        rng: source of randomness.

    Returns:
        ``(matrix, offset)`` for ``scipy.ndimage.affine_transform``: output voxel ``o`` samples
        input coordinate ``matrix @ o + offset``.
    """
    angle = math.radians(rng.uniform(-config.rotate_deg, config.rotate_deg))
    scale = rng.uniform(1.0 - config.scale_range, 1.0 + config.scale_range)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    # The mapping goes from output to input, so it is the inverse of the content's motion:
    # zooming in by `scale` means sampling the input at 1/scale spacing.
    matrix = rotation / scale
    centre = (np.asarray(shape, dtype=float) - 1.0) / 2.0
    offset = centre - matrix @ centre
    return matrix, offset


def _resample(array: np.ndarray, matrix: np.ndarray, offset: np.ndarray, order: int) -> np.ndarray:
    """Resample the last three axes of ``array`` (any leading channel axes) with one affine."""
    flat = array.reshape((-1, *array.shape[-3:]))
    out = np.empty_like(flat)
    for c in range(flat.shape[0]):
        ndimage.affine_transform(
            flat[c], matrix, offset=offset, order=order, mode="nearest", output=out[c], prefilter=False
        )
    return out.reshape(array.shape)


def augment(
    image: np.ndarray, label: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply flips, rotation/scaling, intensity change and noise to one training pair.

    ``config.enabled`` is not consulted here: callers decide whether to augment at all.

    Args:
        image: scaled CT, shape ``[X, Y, Z]`` or ``[C, X, Y, Z]``, float.
        label: binary mask with the same spatial shape (any leading axes), float or integer.
        config: probabilities and ranges of each transform.
        rng: the only source of randomness; the same generator state gives the same output.

    Returns:
        ``(image, label)``: new C-contiguous arrays of the input shapes and dtypes (image
        float32 unless it was float64); label values stay within the input's set of values.

    Raises:
        ValueError: if image and label have different spatial shapes or fewer than 3 axes.
    """
    image, label = np.asarray(image), np.asarray(label)
    if image.ndim < 3 or label.ndim < 3 or image.shape[-3:] != label.shape[-3:]:
        raise ValueError(
            f"augment: image {image.shape} and label {label.shape} must share the spatial shape "
            "(last three axes X, Y, Z)"
        )
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)

    # Draw every random number unconditionally and in a fixed order, so the stream consumed per
    # sample does not depend on which transforms fired (simpler to reason about when resuming).
    flips = rng.random(3) < config.flip_prob
    do_affine = rng.random() < config.prob
    matrix, offset = random_affine(image.shape[-3:], config, rng)
    gain = rng.uniform(1.0 - config.intensity_scale, 1.0 + config.intensity_scale)
    shift = rng.uniform(-config.intensity_shift, config.intensity_shift)

    axes = tuple(ax - 3 for ax in range(3) if flips[ax])
    if axes:
        image, label = np.flip(image, axis=axes), np.flip(label, axis=axes)
    if do_affine and (config.rotate_deg > 0 or config.scale_range > 0):
        image = _resample(np.ascontiguousarray(image), matrix, offset, order=1)
        label = _resample(np.ascontiguousarray(label), matrix, offset, order=0)

    image = image * image.dtype.type(gain) + image.dtype.type(shift)
    if config.noise_std > 0:
        image = image + rng.standard_normal(image.shape, dtype=np.float32).astype(image.dtype) * image.dtype.type(
            config.noise_std
        )
    return np.ascontiguousarray(image), np.ascontiguousarray(label)
