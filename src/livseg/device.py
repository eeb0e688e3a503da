"""Where torch runs: the device by name, and the CPU cores this process may use.

Shared by training and inference (inference must not import training's run state).
"""

from __future__ import annotations

import os

import torch

from livseg.errors import ConfigError

__all__ = ["cpu_count", "resolve_device"]


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a bare ``"cuda"`` means this rank's GPU.

    Raises:
        ConfigError: unknown name, or CUDA asked for but not available.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available here; use --device cpu or auto")
        # under torchrun each rank takes the GPU of its local rank
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    raise ConfigError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N")
