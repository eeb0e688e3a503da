"""Patch sampling (``train.sampling = "patches"``): the batches of one round of patch training.

Whole-case training (the paper) resamples every CT to one fixed shape. A model that must work on
any field of view (abdomen only, chest and abdomen, a slab that stops inside the liver) sees
every CT at one voxel size instead (``preprocess.spacing``), so cases differ in shape; it is
trained on random patches of ``preprocess.target_shape`` voxels and predicts on the whole scan
at once. This is how the built-in model is trained (the ``builtin`` presets).

One step (:meth:`PatchSampler.batch`): draw ``train.batch_size`` cases (a case of the run's
data ``patches.real_weight`` times as often as a mixed-in phantom), cut a patch from each
(:func:`sample_patch`: centred on a random liver voxel with probability ``patches.foreground``,
else anywhere; padded with 0 where the case is smaller), and augment the batch in torch
(:func:`augment_batch`: rotation and scaling, low resolution, blur, intensity, noise). Labels are
soft (the liver's share of each voxel, :func:`patch_target`) and stay soft through the
augmentation. Everything random comes from one ``numpy`` generator per rank, seeded from
``train.seed`` (rank 0 exactly as liver-v1's build drew); its state goes into ``last.pt``
(:meth:`PatchSampler.state`), so a resumed run draws what the uninterrupted one would have.

:func:`step_lrs` is the learning rate of every step of a round (warm-up and cosine decay).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from livseg.config import PatchConfig, RunConfig, TrainConfig
from livseg.data.organ_targets import organ_patch_target

__all__ = ["PatchCase", "PatchSampler", "augment_batch", "mark_unlabelled", "patch_target", "sample_patch", "step_lrs"]


@dataclass
class PatchCase:
    """One training case on the network grid.

    Attributes:
        name: for logs.
        image: ``[X, Y, Z]`` windowed to [0, 1] (float16 or float32; a cache's array, not copied).
        label: ``[X, Y, Z]``: the liver's share of each voxel times ``label_scale`` (uint8 0-255
            in a fixed-spacing cache; 0/1 with scale 1).
        label_scale: what ``label`` is divided by to give a share in [0, 1].
        weight: relative chance of being drawn (``patches.real_weight`` for the run's data, 1
            for a mixed-in phantom).
        other: multi-organ cases: the most frequent class but the liver in each voxel (uint8
            indices into the model's classes); None: background wherever it is not liver.
        classes: the names of the classes the case labels (a LiTS mask: background and liver);
            a multi-organ model learns nothing about the others from it (partial labels).
    """

    name: str
    image: np.ndarray
    label: np.ndarray
    label_scale: float = 1.0
    weight: float = 1.0
    other: np.ndarray | None = None
    classes: tuple[str, ...] = ("background", "liver")
    _liver: np.ndarray | None = field(default=None, repr=False)

    def liver_voxels(self) -> np.ndarray:
        """Indices ``(n, 3)`` of voxels at least half liver (at most 20,000, evenly thinned)."""
        if self._liver is None:
            idx = np.argwhere(np.asarray(self.label) >= 0.5 * self.label_scale)
            self._liver = idx[:: max(1, len(idx) // 20000)]
        return self._liver


def patch_target(label: np.ndarray, case: PatchCase) -> np.ndarray:
    """The training target of a cut-out label patch: the liver's share per voxel, float32 in [0, 1].

    The one place that turns stored labels into targets (a multi-class model's class maps would
    become one channel per class here, see livseg.nn.losses.make_loss for the loss side).
    """
    return label / np.float32(case.label_scale) if case.label_scale != 1 else label.astype(np.float32)


def mark_unlabelled(target: torch.Tensor, labelled: Sequence[Sequence[str]], classes: Sequence[str]) -> torch.Tensor:
    """Multi-organ targets ``[N, C, ...]`` after augmentation: background refilled where the
    resampling's zero padding left the classes summing to less than 1, and every class a case
    does not label filled with :data:`livseg.nn.partial_loss.UNLABELLED` (the partial-label loss
    merges it into background for that case)."""
    from livseg.nn.partial_loss import UNLABELLED

    target = target.clone()
    target[:, 0] = (1.0 - target[:, 1:].sum(1)).clamp_min(0.0)
    for n, names in enumerate(labelled):
        for c, name in enumerate(classes):
            if c and name not in names:
                target[n, c] = UNLABELLED
    return target


def sample_patch(case: PatchCase, shape: Sequence[int], rng: np.random.Generator,
                 foreground: float, classes: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A random ``shape`` patch of a case as (image float32, target float32 in [0, 1]).

    Centred (with a jitter of a quarter patch) on a random liver voxel with probability
    ``foreground``, else on a uniform random voxel; clipped to the case, and padded with 0 at
    the far end where the case is smaller than the patch. With a multi-organ model's
    ``classes`` the target is ``[C, *shape]`` (:func:`organ_patch_target`; background in the padding).
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
    inner = tuple(slice(0, b.stop - b.start) for b in box)
    image[inner] = case.image[box]
    if classes:
        target = np.zeros((len(classes), *shape), dtype=np.float32)
        target[0] = 1.0
        share = patch_target(np.asarray(case.label[box]), case)
        other = np.zeros(share.shape, np.uint8) if case.other is None else np.asarray(case.other[box])
        target[(slice(None), *inner)] = organ_patch_target(share, other, len(classes), list(classes).index("liver"))
        return image, target
    target = np.zeros(shape, dtype=np.float32)
    target[inner] = patch_target(np.asarray(case.label[box]), case)
    return image, target


class PatchSampler:
    """The training batches of one round: ``patches.steps_per_round`` dicts of ``"image"`` and
    ``"label"`` tensors ``[N, 1, *target_shape]``, augmented (an iterable for
    :func:`livseg.training.loops.train_one_epoch`).

    Args:
        cases: what to draw from, each with its weight.
        config: the run's configuration (patch shape, batch size, ``patches``, augmentation on/off).
        seed: the run's seed.
        rank: this process's rank; rank 0 draws from ``default_rng(seed)`` (as liver-v1's build
            did), others from ``default_rng([seed, rank])``.

    Raises:
        ValueError: no cases.
    """

    def __init__(self, cases: Sequence[PatchCase], config: RunConfig, *, seed: int, rank: int = 0) -> None:
        if not cases:
            raise ValueError("PatchSampler: no training cases")
        self.cases = list(cases)
        weights = np.array([c.weight for c in self.cases], dtype=float)
        self.p = weights / weights.sum()
        self.shape = tuple(int(s) for s in config.preprocess.target_shape)
        self.batch_size = config.train.batch_size
        self.patches = config.patches
        self.augment = config.train.augment.enabled
        self.classes = tuple(config.model.classes)
        self.rng = np.random.default_rng(seed if rank == 0 else [seed, rank])

    def __len__(self) -> int:
        return self.patches.steps_per_round

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for _ in range(len(self)):
            yield self.batch()

    def batch(self) -> dict[str, torch.Tensor]:
        """One step's batch (draws from the generator)."""
        picks = self.rng.choice(len(self.cases), size=self.batch_size, p=self.p)
        pairs = [sample_patch(self.cases[i], self.shape, self.rng, self.patches.foreground, self.classes) for i in picks]
        image = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
        label = torch.from_numpy(np.stack([p[1] for p in pairs]))
        label = label if self.classes else label[:, None]
        if self.augment:
            with torch.no_grad():
                image, label = augment_batch(image, label, self.patches, self.rng)
        if self.classes:
            label = mark_unlabelled(label, [self.cases[i].classes for i in picks], self.classes)
        return {"image": image, "label": label}

    def state(self) -> dict[str, Any]:
        """The generator's state in ``torch.load(weights_only=True)``-safe types (128-bit ints as text)."""
        raw = self.rng.bit_generator.state
        return {"bit_generator": raw["bit_generator"], "state": str(raw["state"]["state"]),
                "inc": str(raw["state"]["inc"]), "has_uint32": int(raw["has_uint32"]),
                "uinteger": int(raw["uinteger"])}

    def reseed(self, seed: int) -> None:
        """Draw from a fresh generator (a resume whose saved state does not fit this rank layout)."""
        self.rng = np.random.default_rng(seed)

    def set_state(self, state: dict[str, Any]) -> None:
        """Undo :meth:`state`: continue drawing where it was taken."""
        self.rng.bit_generator.state = {
            "bit_generator": state["bit_generator"],
            "state": {"state": int(state["state"]), "inc": int(state["inc"])},
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"]),
        }


def step_lrs(tc: TrainConfig, pc: PatchConfig, epoch: int, epoch_lr: float) -> list[float]:
    """The learning rate of each step of round ``epoch`` (1-based).

    ``lr_schedule="cosine"``: linear warm-up over ``warmup_steps``, then cosine decay from
    ``tc.lr`` to ``tc.lr * final_lr`` at the last step of ``tc.epochs`` rounds; otherwise the
    round's ``epoch_lr`` for every step.
    """
    n = pc.steps_per_round
    if tc.lr_schedule != "cosine":
        return [epoch_lr] * n
    total = tc.epochs * n
    lrs = []
    for step in range((epoch - 1) * n, epoch * n):
        if step < pc.warmup_steps:
            factor = (step + 1) / pc.warmup_steps
        else:
            t = (step - pc.warmup_steps) / max(1, total - pc.warmup_steps)
            factor = pc.final_lr + (1 - pc.final_lr) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        lrs.append(tc.lr * factor)
    return lrs


# ----------------------------------------------------------------------------------- augmentation


def _rotation(angles: np.ndarray) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def augment_batch(image: torch.Tensor, label: torch.Tensor, config: PatchConfig,
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
        rot = _rotation(np.radians(rng.uniform(-1, 1, 3) * np.asarray(config.rotate_deg)))
        zoom = rng.uniform(1 - config.scale, 1 + config.scale) * rng.uniform(1 - config.stretch, 1 + config.stretch, 3)
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
        if rng.random() < config.p_low_res_z:
            k = int(rng.integers(2, 4))
            low = F.avg_pool3d(x, (1, 1, k), stride=(1, 1, k), ceil_mode=True)
            x = F.interpolate(low, size=x.shape[2:], mode="trilinear", align_corners=False)
        if rng.random() < config.p_low_res_xy:
            low = F.avg_pool3d(x, (2, 2, 1), stride=(2, 2, 1), ceil_mode=True)
            x = F.interpolate(low, size=x.shape[2:], mode="trilinear", align_corners=False)
        if rng.random() < config.p_blur:
            x = _blur(x, float(rng.uniform(0.4, 1.0)))
        x = x * float(rng.uniform(1 - config.intensity_scale, 1 + config.intensity_scale))
        x = x + float(rng.uniform(-config.intensity_shift, config.intensity_shift))
        noise = torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32))
        x = x + noise * float(rng.uniform(0, config.noise_std))
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
