"""Process groups for ``torchrun``: rank bookkeeping, setup and object collectives.

``torchrun --nproc_per_node=N -m livseg train|predict ...`` sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads
them and joins the group (nccl on GPU, gloo on CPU). A plain command runs as a world of one, and
every helper here is then a no-op, so callers have a single code path. Shared by training
(DistributedDataParallel) and inference (cases shared among ranks); the tensor reductions of
training live in :mod:`livseg.training.distributed`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from livseg.errors import ConfigError

__all__ = ["DistInfo", "all_gather_objects", "barrier", "broadcast_object", "cleanup", "env_world", "setup"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0  # global rank
    world_size: int = 1  # number of processes in the job
    local_rank: int = 0  # rank on this machine; picks the GPU
    local_world_size: int = 1  # processes on this machine; shares the CPU cores
    initialized_here: bool = False  # we created the group, so we destroy it

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and logs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process: collectives are needed."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}: expected an integer (set by torchrun)") from None


def env_world() -> DistInfo:
    """The job layout from the torchrun environment variables (a world of one without them)."""
    world = _env_int("WORLD_SIZE", 1)
    return DistInfo(
        rank=_env_int("RANK", 0),
        world_size=world,
        local_rank=_env_int("LOCAL_RANK", 0),
        local_world_size=_env_int("LOCAL_WORLD_SIZE", world),
    )


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched with ``WORLD_SIZE > 1``.

    Args:
        device: the device this rank trains on; ``cuda`` selects nccl, anything else gloo.

    Returns:
        This process's :class:`DistInfo`.
    """
    info = env_world()
    if info.world_size <= 1:
        return info
    if dist.is_initialized():  # the caller set the group up (e.g. a notebook or test harness)
        return DistInfo(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=info.local_rank,
            local_world_size=info.local_world_size,
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=info.local_rank,
        local_world_size=info.local_world_size,
        initialized_here=True,
    )


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a world of one)."""
    if info.active:
        dist.barrier()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` in a world of one): RNG states, per-rank results."""
    if not info.active:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself in a world of one)."""
    if not info.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
