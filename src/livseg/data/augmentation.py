"""Training-time augmentation of (image, label) pairs on the network grid, in torch, on the
device that trains.

One augmentation applies, in this order:

1. random flips, each of the three axes independently with ``flip_prob`` (exact: ``torch.flip``);
2. with probability ``prob``, one affine resample of image and label together: a rotation about
   the z axis by up to ``rotate_deg`` degrees and an isotropic scaling in
   ``[1 - scale_range, 1 + scale_range]``, about the volume centre, by ``affine_grid`` +
   ``grid_sample``. The image is interpolated linearly and the label by nearest neighbour, from
   the same grid, so they stay aligned and the label stays binary. Only the in-plane (x, y) axes
   are rotated, because after resampling to 160 x 160 x 80 they share one voxel size while z
   does not; rotating into z would shear anatomy. The rotation is in voxel units, as
   ``scipy.ndimage.rotate(image, -angle, axes=(0, 1), order=1, mode="nearest")`` does it.
   Outside the volume the border voxel is repeated (CT borders are air or body, not 0);
3. intensity: ``image * U(1 - intensity_scale, 1 + intensity_scale) + U(-shift, shift)``;
4. additive Gaussian noise with standard deviation ``noise_std``.

The work is split in two so that it runs where the network runs: :func:`draw_params` draws a
handful of numbers per sample from a ``numpy.random.Generator`` (cheap; training draws them in
the DataLoader from a generator seeded by ``(seed, epoch, index)``, so they do not depend on
workers and a resumed run redraws the same), and :func:`augment_batch` applies them to a batch
already on the training device (GPU or CPU), the noise from a torch generator seeded by the
drawn ``noise_seed``. :func:`augment` does both for one sample. The paper trained without
augmentation; it is off in the ``paper`` preset and on in ``default`` and ``demo``.
"""

from __future__ import annotations

import math
from typing import Mapping, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from livseg.config import AugmentConfig

__all__ = ["augment", "augment_batch", "draw_params"]

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


def draw_params(config: AugmentConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Draw one sample's augmentation: flips, whether and how to rotate/scale, gain, shift, noise.

    Every number is drawn unconditionally and in a fixed order, so the stream consumed per sample
    does not depend on which transforms fire.

    Returns:
        Scalar tensors (``flip``: bool [3]) that the DataLoader's default collate stacks into a
        batch: ``flip``, ``affine`` (bool), ``angle`` (radians), ``scale``, ``gain``, ``shift``,
        ``noise_std``, ``noise_seed`` (int64).
    """
    flips = rng.random(3) < config.flip_prob
    do_affine = rng.random() < config.prob and (config.rotate_deg > 0 or config.scale_range > 0)
    angle = math.radians(rng.uniform(-config.rotate_deg, config.rotate_deg))
    scale = rng.uniform(1.0 - config.scale_range, 1.0 + config.scale_range)
    gain = rng.uniform(1.0 - config.intensity_scale, 1.0 + config.intensity_scale)
    shift = rng.uniform(-config.intensity_shift, config.intensity_shift)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    return {
        "flip": torch.from_numpy(flips.copy()),
        "affine": torch.tensor(bool(do_affine)),
        "angle": torch.tensor(angle, dtype=torch.float64),
        "scale": torch.tensor(scale, dtype=torch.float64),
        "gain": torch.tensor(gain, dtype=torch.float64),
        "shift": torch.tensor(shift, dtype=torch.float64),
        "noise_std": torch.tensor(float(config.noise_std), dtype=torch.float64),
        "noise_seed": torch.tensor(noise_seed, dtype=torch.int64),
    }


def _theta(angle: float, scale: float, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """The ``affine_grid`` matrix [1, 3, 4] of a rotation about z and a scaling about the centre.

    In voxel units, output voxel ``o`` samples input ``M (o - c) + c`` with ``M = R(angle) /
    scale`` (zooming in by ``scale`` samples the input at ``1 / scale`` spacing). With
    ``align_corners=True`` a normalised coordinate is ``(i - c) / ((N - 1) / 2)``, so entry
    ``(a, b)`` becomes ``M_ab (N_b - 1) / (N_a - 1)``; ``affine_grid`` orders the axes (z, y, x).
    """
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]]) / scale
    half = np.maximum(np.asarray(shape, dtype=np.float64) - 1.0, 1.0) / 2.0
    normalised = matrix * half[None, :] / half[:, None]
    theta = np.zeros((3, 4))
    theta[:, :3] = normalised[::-1, ::-1]  # (x, y, z) -> grid_sample's (z, y, x)
    return torch.tensor(theta, dtype=torch.float32, device=device)[None]


def augment_batch(
    image: torch.Tensor, label: torch.Tensor, params: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply drawn augmentations to a batch, on the batch's device.

    Args:
        image: float images ``[B, C, X, Y, Z]``.
        label: float labels (0/1) with the same batch and spatial shape (any channel count).
        params: :func:`draw_params` outputs stacked over the batch (as collated), on any device.

    Returns:
        ``(image, label)``: new tensors of the input shapes, dtypes and device.

    Raises:
        ValueError: if image and label differ in batch size or spatial shape, or are not 5D.
    """
    if image.ndim != 5 or label.ndim != 5 or image.shape[0] != label.shape[0] or image.shape[2:] != label.shape[2:]:
        raise ValueError(
            f"augment_batch: image {tuple(image.shape)} and label {tuple(label.shape)} must be [B, C, X, Y, Z] "
            "with the same batch size and spatial shape"
        )
    p = {key: value.cpu() for key, value in params.items()}  # a few scalars per sample
    device, shape = image.device, tuple(image.shape[2:])
    images, labels = [], []
    for i in range(image.shape[0]):
        img, lab = image[i : i + 1], label[i : i + 1]
        dims = [2 + axis for axis in range(3) if bool(p["flip"][i, axis])]
        if dims:
            img, lab = torch.flip(img, dims), torch.flip(lab, dims)
        if bool(p["affine"][i]):
            grid = F.affine_grid(_theta(float(p["angle"][i]), float(p["scale"][i]), shape, device),
                                 [1, 1, *shape], align_corners=True)
            img = F.grid_sample(img.float(), grid, mode="bilinear", padding_mode="border",
                                align_corners=True).to(image.dtype)
            lab = F.grid_sample(lab.float(), grid, mode="nearest", padding_mode="border",
                                align_corners=True).to(label.dtype)
        img = img * float(p["gain"][i]) + float(p["shift"][i])
        std = float(p["noise_std"][i])
        if std > 0:
            generator = torch.Generator(device=device)
            generator.manual_seed(int(p["noise_seed"][i]))
            img = img + torch.randn(img.shape, generator=generator, device=device, dtype=img.dtype) * std
        images.append(img)
        labels.append(lab)
    return torch.cat(images).contiguous(), torch.cat(labels).contiguous()


def augment(
    image: ArrayLike, label: ArrayLike, config: AugmentConfig, rng: np.random.Generator
) -> tuple[ArrayLike, ArrayLike]:
    """Draw and apply one augmentation to one training pair (numpy arrays or tensors).

    ``config.enabled`` is not consulted here: callers decide whether to augment at all.

    Args:
        image: scaled CT, shape ``[X, Y, Z]`` or ``[C, X, Y, Z]``, float.
        label: binary mask with the same spatial shape (any leading axes), float or integer.
        config: probabilities and ranges of each transform.
        rng: the only source of randomness; the same generator state gives the same output.

    Returns:
        ``(image, label)``: new contiguous arrays (or tensors, on the input's device) of the
        input shapes and dtypes (image float32 unless it was another float type); label values
        stay within the input's set of values.

    Raises:
        ValueError: if image and label have different spatial shapes or fewer than 3 axes.
    """
    as_numpy = isinstance(image, np.ndarray)
    img, lab = torch.as_tensor(image), torch.as_tensor(label)
    if img.ndim < 3 or lab.ndim < 3 or img.shape[-3:] != lab.shape[-3:]:
        raise ValueError(
            f"augment: image {tuple(img.shape)} and label {tuple(lab.shape)} must share the spatial shape "
            "(last three axes X, Y, Z)"
        )
    if not img.is_floating_point():
        img = img.float()
    params = {key: value[None] for key, value in draw_params(config, rng).items()}
    out_image, out_label = augment_batch(img.reshape(1, -1, *img.shape[-3:]),
                                         lab.reshape(1, -1, *lab.shape[-3:]).float(), params)
    out_image = out_image.reshape(img.shape)
    out_label = out_label.reshape(lab.shape).to(lab.dtype)
    if as_numpy:
        return out_image.numpy(), out_label.numpy()  # type: ignore[return-value]
    return out_image, out_label  # type: ignore[return-value]
