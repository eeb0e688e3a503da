"""What trains, built once per run: the network (fresh, from an init checkpoint, or resumed), the
optimiser, the grad scaler, the loss and the learning rate of every epoch.

The loss comes from :func:`livseg.nn.losses.make_loss` (the paper's AdvancedComboLoss; stage 2's
RegionLoss): the one place that maps a configuration to its objective.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from livseg.config import RunConfig, TrainConfig
from livseg.device import autocast_dtype
from livseg.nn.checkpoint import Checkpoint
from livseg.nn.losses import make_loss
from livseg.nn.model import UNet3D
from livseg.training.distributed import DistInfo

__all__ = ["Parts", "build_parts", "epoch_lr"]


@dataclass
class Parts:
    """What trains: built once per run, the same on every rank."""

    model: torch.nn.Module  # the unwrapped network: validated and saved
    net: torch.nn.Module  # ``model`` or its DDP wrapper: trained
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: torch.nn.Module
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format


def build_parts(config: RunConfig, device: torch.device, info: DistInfo, *, resume: Checkpoint | None,
                init: Checkpoint | None) -> Parts:
    """Network, optimiser, grad scaler and loss.

    The network starts from ``resume``'s weights (last.pt), else from ``init``'s (a trained
    model to adapt), else from random weights seeded by ``train.seed`` (the same on every rank;
    DDP also broadcasts rank 0's).
    """
    tc = config.train
    torch.manual_seed(tc.seed)  # drawn even when weights are loaded: the RNG streams stay those of a fresh run
    model = UNet3D(config.model)
    start = resume if resume is not None else init
    if start is not None:
        model.load_state_dict(start.model_state)  # float16 weights (the built-in models) become float32 here
    memory_format = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
    model = model.to(device).to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    dtype, scaler = _precision(device, amp=tc.amp)
    net = model
    if info.active:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        # channels-last 1x1x1 kernels (the head) have size-1 axes whose strides differ from
        # DDP's bucket views only nominally; torch warns on every step about it
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return Parts(model=model, net=net, optimizer=optimizer, scaler=scaler, loss_fn=make_loss(config),
                 amp_dtype=dtype, memory_format=memory_format)


def _precision(device: torch.device, *, amp: bool) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """Autocast dtype (livseg.device's rule, shared with inference) and the grad scaler that
    float16 needs: bf16 on GPUs with native bf16, fp16 + GradScaler on older ones, fp32 on CPU."""
    dtype = autocast_dtype(device, enabled=amp)
    return dtype, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def epoch_lr(tc: TrainConfig, epoch: int) -> float:
    """The learning rate of an epoch (1-based): ``tc.lr``, or with ``lr_schedule="poly"`` nnU-Net's
    decay ``tc.lr * (1 - (epoch - 1) / tc.epochs) ** 0.9`` (full rate in the first epoch).
    Patch sampling's per-step schedules: :func:`livseg.training.patches.step_lrs`."""
    if tc.lr_schedule == "poly":
        return tc.lr * (1.0 - (epoch - 1) / tc.epochs) ** 0.9
    return tc.lr
