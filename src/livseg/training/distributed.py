"""DistributedDataParallel helpers of training: tensor reductions over ranks.

Process-group setup and rank bookkeeping live in :mod:`livseg.distributed` (inference shares
them) and are re-exported here, so training has one import for everything distributed.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist

from livseg.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    broadcast_object,
    cleanup,
    env_world,
    setup,
)

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "all_reduce_sums",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "cleanup",
    "env_world",
    "setup",
]


def all_reduce_sums(values: Sequence[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks, in float64 so per-case sums stay exact enough.

    Args:
        values: this rank's partial sums (e.g. Dice sum, case count).
        info: the job layout.
        device: where the reduction tensor lives (nccl needs CUDA tensors).

    Returns:
        The sums over all ranks, in the same order.
    """
    if not info.active:
        return [float(v) for v in values]
    # nccl cannot reduce float64 on every GPU generation as fast, but these are a handful of
    # scalars; exactness of the mean Dice matters more.
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    Each rank's last training forward updates its own running statistics, so without this the
    ranks would validate slightly different models, none of them exactly the one rank 0 saves.
    """
    if not info.active:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
