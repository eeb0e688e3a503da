"""Patch training on fixed-spacing volumes: how the built-in model is trained.

:func:`livseg.training.train.train` trains on whole cases resampled to one fixed shape (the
paper). A model that must work on any field of view (abdomen only, chest and abdomen, a slab
that stops inside the liver) sees every CT at one voxel size instead
(``preprocess.spacing``), so cases differ in shape; it is trained here on random patches of
``preprocess.target_shape`` voxels and predicts on the whole scan at once.

One step: draw ``batch_size`` cases (real cases ``real_weight`` times as often as a phantom),
cut a patch from each (centred on a random liver voxel with probability ``foreground``, else
anywhere; padded with 0 where the case is smaller), augment the batch in torch
(:func:`augment_batch`: rotation and scaling, low resolution, blur, intensity, noise), then one
Adam step on AdvancedComboLoss with a cosine learning rate. Labels are soft (the liver's share
of each voxel) and stay soft through the augmentation. Everything random comes from one
``numpy`` generator and one torch generator seeded from ``seed``: the same seed, data and
thread count give the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from livseg.config import RunConfig
from livseg.nn.losses import AdvancedComboLoss
from livseg.nn.model import UNet3D

log = logging.getLogger(__name__)

__all__ = ["PatchCase", "PatchSchedule", "augment_batch", "sample_patch", "train_patches"]


@dataclass
class PatchCase:
    """One training case on the network grid.

    Attributes:
        name: for logs.
        image: float32 ``[X, Y, Z]``, windowed to [0, 1].
        label: float32 or uint8 ``[X, Y, Z]``: the liver's share of each voxel in [0, 1]
            (uint8: 0-255).
        real: a real CT (sampled ``real_weight`` times as often as a phantom).
    """

    name: str
    image: np.ndarray
    label: np.ndarray
    real: bool = False
    _liver: np.ndarray | None = field(default=None, repr=False)

    def liver_voxels(self) -> np.ndarray:
        """Indices ``(n, 3)`` of voxels at least half liver (at most 20,000, evenly thinned)."""
        if self._liver is None:
            threshold = 128 if self.label.dtype == np.uint8 else 0.5
            idx = np.argwhere(self.label >= threshold)
            self._liver = idx[:: max(1, len(idx) // 20000)]
        return self._liver


@dataclass(frozen=True)
class PatchSchedule:
    """Steps, batch, sampling and augmentation of :func:`train_patches`."""

    steps: int = 2000  # optimiser steps
    batch_size: int = 2
    lr: float = 3e-3  # peak Adam learning rate
    warmup: int = 50  # steps of linear warm-up, then cosine decay to lr * final_lr
    final_lr: float = 0.02
    foreground: float = 0.7  # share of patches centred on a liver voxel
    real_weight: float = 1.0  # a real case is drawn this many times as often as a phantom
    rotate_deg: tuple[float, float, float] = (6.0, 6.0, 15.0)  # max rotation about x, y, z
    scale: float = 0.15  # isotropic scaling in [1 - s, 1 + s]
    stretch: float = 0.05  # extra per-axis scaling
    p_low_res_z: float = 0.15  # thick slices: z averaged over 2-3 voxels, then interpolated back
    p_low_res_xy: float = 0.1  # coarse in-plane pixels (about 5 mm), as the small LiTS volume
    p_blur: float = 0.2  # smooth reconstruction kernel
    intensity_scale: float = 0.1  # image * U(1 - s, 1 + s)
    intensity_shift: float = 0.04  # + U(-s, s) (0.04 = 20 HU in the liver window)
    noise_std: float = 0.03  # Gaussian noise up to this std (0.03 = 15 HU)


def sample_patch(case: PatchCase, shape: Sequence[int], rng: np.random.Generator,
                 foreground: float) -> tuple[np.ndarray, np.ndarray]:
    """A random ``shape`` patch of a case as (image float32, label float32 in [0, 1]).

    Centred (with a jitter of a quarter patch) on a random liver voxel with probability
    ``foreground``, else on a uniform random voxel; clipped to the case, and padded with 0 at
    the far end where the case is smaller than the patch.
    """
    dims = np.asarray(case.image.shape)
    size = np.asarray(shape)
    liver = case.liver_voxels()
    if len(liver) and rng.random() < foreground:
        centre = liver[rng.integers(len(liver))] + rng.integers(-(size // 4), size // 4 + 1)
    else:
        centre = rng.integers(0, dims)
    start = np.clip(centre - size // 2, 0, np.maximum(dims - size, 0))
    box = tuple(slice(int(a), int(a + min(s, d))) for a, s, d in zip(start, size, dims))
    image = np.zeros(shape, dtype=np.float32)
    label = np.zeros(shape, dtype=np.float32)
    inner = tuple(slice(0, b.stop - b.start) for b in box)
    image[inner] = case.image[box]
    raw = case.label[box]
    label[inner] = raw / np.float32(255.0) if raw.dtype == np.uint8 else raw
    return image, label


def _rotation(angles: np.ndarray) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def augment_batch(image: torch.Tensor, label: torch.Tensor, schedule: PatchSchedule,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch ``[N, 1, X, Y, Z]`` of isotropic patches in torch.

    Per sample: a rotation (up to ``rotate_deg`` about x, y, z) and scaling about the patch
    centre, applied to image and label with one trilinear resampling (outside the patch: 0);
    thick slices or coarse pixels (average, then interpolate back); a Gaussian blur; a random
    gain and offset; Gaussian noise. Voxels are assumed isotropic, so rotations are rigid in mm.
    Flips are not used: inputs are in RAS order and the liver is always on the patient's right.
    """
    n = image.shape[0]
    size = torch.tensor(image.shape[2:], dtype=torch.float64)
    thetas = []
    for _ in range(n):
        rot = _rotation(np.radians(rng.uniform(-1, 1, 3) * np.asarray(schedule.rotate_deg)))
        zoom = rng.uniform(1 - schedule.scale, 1 + schedule.scale) * rng.uniform(
            1 - schedule.stretch, 1 + schedule.stretch, 3)
        # output -> input map in voxel units about the centre; affine_grid wants it in
        # normalised (z, y, x)-ordered coordinates (its x is the last tensor axis)
        m = rot / zoom[None, :]
        half = size.numpy() / 2
        m_norm = (m * half[None, :]) / half[:, None]
        theta = np.zeros((3, 4))
        theta[:, :3] = m_norm[::-1, ::-1]
        thetas.append(theta)
    theta = torch.tensor(np.stack(thetas), dtype=image.dtype)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    both = F.grid_sample(torch.cat([image, label], 1), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)
    image, label = both[:, :1].contiguous(), both[:, 1:].clamp(0, 1).contiguous()

    out = []
    for i in range(n):
        x = image[i : i + 1]
        if rng.random() < schedule.p_low_res_z:
            k = int(rng.integers(2, 4))
            low = F.avg_pool3d(x, (1, 1, k), stride=(1, 1, k), ceil_mode=True)
            x = F.interpolate(low, size=x.shape[2:], mode="trilinear", align_corners=False)
        if rng.random() < schedule.p_low_res_xy:
            low = F.avg_pool3d(x, (2, 2, 1), stride=(2, 2, 1), ceil_mode=True)
            x = F.interpolate(low, size=x.shape[2:], mode="trilinear", align_corners=False)
        if rng.random() < schedule.p_blur:
            x = _blur(x, float(rng.uniform(0.4, 1.0)))
        x = x * float(rng.uniform(1 - schedule.intensity_scale, 1 + schedule.intensity_scale))
        x = x + float(rng.uniform(-schedule.intensity_shift, schedule.intensity_shift))
        noise = torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32))
        x = x + noise * float(rng.uniform(0, schedule.noise_std))
        out.append(x)
    return torch.cat(out), label


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[1, 1, X, Y, Z]`` (sigma in voxels)."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = 2 * r + 1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        x = F.conv3d(F.pad(x, pad, mode="replicate"), k.view(shape))
    return x


def _lr_factor(step: int, schedule: PatchSchedule) -> float:
    """Linear warm-up, then cosine decay from 1 to ``final_lr``."""
    if step < schedule.warmup:
        return (step + 1) / schedule.warmup
    t = (step - schedule.warmup) / max(1, schedule.steps - schedule.warmup)
    return schedule.final_lr + (1 - schedule.final_lr) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def train_patches(
    cases: Sequence[PatchCase],
    config: RunConfig,
    schedule: PatchSchedule,
    *,
    seed: int = 0,
    init: dict[str, torch.Tensor] | None = None,
    callback: Callable[[int, float, torch.nn.Module], None] | None = None,
    log_every: int = 50,
) -> tuple[UNet3D, list[dict[str, float]]]:
    """Train a UNet3D on random patches of fixed-spacing cases.

    Args:
        cases: the training cases (phantoms and real CTs) on the network grid.
        config: model and loss (``config.model``, ``config.loss``) and the patch shape
            (``config.preprocess.target_shape``).
        schedule: steps, batch, learning rate, sampling and augmentation.
        seed: the only source of randomness (weights, sampling, augmentation).
        init: weights to start from (e.g. an earlier stage), else a fresh network.
        callback: called as ``callback(step, mean_loss, model)`` every ``log_every`` steps and
            after the last one (for validation and logging).
        log_every: steps between log lines / callbacks.

    Returns:
        ``(model, history)``: the trained model in eval mode and one record per logged block
        (step, loss, lr, seconds).
    """
    if not cases:
        raise ValueError("train_patches: no training cases")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = UNet3D(config.model)
    if init is not None:
        model.load_state_dict(init)
    model = model.to(memory_format=torch.channels_last_3d).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    loss_fn = AdvancedComboLoss(config.loss)
    weights = np.array([schedule.real_weight if c.real else 1.0 for c in cases])
    weights /= weights.sum()
    shape = tuple(int(s) for s in config.preprocess.target_shape)
    history: list[dict[str, float]] = []
    running, started, block_start = 0.0, time.perf_counter(), time.perf_counter()
    for step in range(schedule.steps):
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr * _lr_factor(step, schedule)
        picks = rng.choice(len(cases), size=schedule.batch_size, p=weights)
        pairs = [sample_patch(cases[i], shape, rng, schedule.foreground) for i in picks]
        image = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
        label = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]
        with torch.no_grad():
            image, label = augment_batch(image, label, schedule, rng)
        optimizer.zero_grad(set_to_none=True)
        logits = model(image.to(memory_format=torch.channels_last_3d))
        loss = loss_fn(logits.float(), label)
        loss.backward()
        optimizer.step()
        running += float(loss.detach())
        done = step + 1
        if done % log_every == 0 or done == schedule.steps:
            count = done - (len(history) * log_every)
            record = {"step": done, "loss": running / max(count, 1), "lr": optimizer.param_groups[0]["lr"],
                      "seconds": time.perf_counter() - started}
            history.append(record)
            log.info("step %d/%d  loss %.4f  lr %.2e  %.0f s (%.2f s/step)", done, schedule.steps, record["loss"],
                     record["lr"], record["seconds"], (time.perf_counter() - block_start) / max(count, 1))
            running, block_start = 0.0, time.perf_counter()
            if callback is not None:
                model.eval()
                callback(done, record["loss"], model)
                model.train()
    return model.eval(), history
