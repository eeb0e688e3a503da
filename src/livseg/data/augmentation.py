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
   ``scipy.ndimage.rotate(image, -angle, axes=(0, 1), order=1, mode="nearest")`` does it; the
   resampling is trilinear, done as a 2D ``grid_sample`` per z-plane and a linear pass along z
   (the same values: the transform and the interpolation are both separable).
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


def _resample(volume: torch.Tensor, angle: float, scale: float, mode: str) -> torch.Tensor:
    """Rotate ``volume`` [1, C, X, Y, Z] about z by ``angle`` and scale it by ``scale`` about the
    centre, sampling linearly (``mode="bilinear"``) or by nearest neighbour, border repeated.

    In voxel units, output voxel ``o`` samples input ``M (o - c) + c`` with ``M = R(angle) /
    scale`` (zooming in by ``scale`` samples the input at ``1 / scale`` spacing). ``M`` moves
    (x, y) by a function of (x, y) only and z by a function of z only, and trilinear (or
    nearest) interpolation is separable, so this is exactly a 2D ``grid_sample`` of every
    z-plane with one small (X, Y) grid, then a linear (or nearest) resample along z: the same
    values as a 3D ``affine_grid`` + ``grid_sample``, at a fraction of the cost (one 2D grid
    instead of a 3D grid with a matrix product per voxel, 4 taps instead of 8).
    """
    _, channels, nx, ny, nz = volume.shape
    device = volume.device
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) / scale
    # align_corners=True: a normalised coordinate is (i - c) / ((N - 1) / 2)
    half = np.maximum(np.array([nx, ny], dtype=np.float64) - 1.0, 1.0) / 2.0
    theta = np.zeros((2, 3))
    theta[:, :2] = (matrix * half[None, :] / half[:, None])[::-1, ::-1]  # (x, y) -> grid_sample's (w=y, h=x)
    grid = F.affine_grid(torch.tensor(theta, dtype=torch.float32, device=device)[None], [1, 1, nx, ny],
                         align_corners=True)
    planes = volume.permute(0, 1, 4, 2, 3).reshape(1, channels * nz, nx, ny)  # every z-plane a channel
    planes = F.grid_sample(planes, grid, mode=mode, padding_mode="border", align_corners=True)
    planes = planes.reshape(1, channels, nz, nx, ny)
    centre = (nz - 1) / 2.0
    z = ((torch.arange(nz, device=device, dtype=torch.float64) - centre) / scale + centre).clamp(0, nz - 1)
    if mode == "nearest":
        planes = planes.index_select(2, torch.round(z).long())
    elif nz > 1:
        low = z.floor().clamp(max=nz - 2)
        weight = (z - low).to(planes.dtype).view(1, 1, nz, 1, 1)
        low = low.long()
        planes = planes.index_select(2, low) * (1 - weight) + planes.index_select(2, low + 1) * weight
    return planes.permute(0, 1, 3, 4, 2)


def augment_batch(
    image: torch.Tensor, label: torch.Tensor, params: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply drawn augmentations to a batch, on the batch's device.

    Args:
        image: float images ``[B, C, X, Y, Z]``.
        label: float label maps (0/1, or 0/1/2 for stage 2: nearest neighbour keeps the values)
            with the same batch and spatial shape (any channel count).
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
    device = image.device
    images, labels = [], []
    for i in range(image.shape[0]):
        img, lab = image[i : i + 1], label[i : i + 1]
        dims = [2 + axis for axis in range(3) if bool(p["flip"][i, axis])]
        if dims:
            img, lab = torch.flip(img, dims), torch.flip(lab, dims)
        if bool(p["affine"][i]):
            angle, scale = float(p["angle"][i]), float(p["scale"][i])
            img = _resample(img.float(), angle, scale, "bilinear").to(image.dtype)
            lab = _resample(lab.float(), angle, scale, "nearest").to(label.dtype)
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
