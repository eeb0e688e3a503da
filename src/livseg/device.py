"""Where torch runs: the device by name, the CPU cores this process may use, and the precision.

Shared by training and inference (inference must not import training's run state), so that
both take the same mixed-precision choice on the same GPU.
"""

from __future__ import annotations

import os

import torch

from livseg.errors import ConfigError

# bfloat16 runs natively on tensor cores from Ampere (compute capability 8.0) on; on a T4 (7.5)
# or V100 (7.0) torch.cuda.is_bf16_supported() still says True, but bf16 is emulated there.
NATIVE_BF16_CAPABILITY = (8, 0)

__all__ = ["autocast", "autocast_dtype", "cpu_count", "resolve_device"]


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
    if name == "cuda" or name.startswith("cuda:"):
        index = name.partition(":")[2]
        if index and not index.isdigit():
            raise ConfigError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N")
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available here; use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0 to "
                              f"cuda:{torch.cuda.device_count() - 1}")
        # under torchrun each rank takes the GPU of its local rank
        return torch.device(name if index else f"cuda:{local_rank}")
    raise ConfigError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N")


def autocast_dtype(device: torch.device, *, enabled: bool = True) -> torch.dtype | None:
    """The mixed-precision dtype for ``device``: the one rule of training and inference.

    bfloat16 on GPUs with native bf16 (compute capability 8.0 or higher: A100, H100, RTX 30xx
    on); float16 on older GPUs (T4, V100), where training needs a GradScaler; None (float32)
    on CPU or when ``enabled`` is False (``train.amp = false``).
    """
    if not enabled or device.type != "cuda":
        return None
    capability = tuple(torch.cuda.get_device_capability(device))
    return torch.bfloat16 if capability >= NATIVE_BF16_CAPABILITY else torch.float16


def autocast(device: torch.device, *, enabled: bool = True) -> torch.autocast:
    """``torch.autocast`` with :func:`autocast_dtype`'s choice; a disabled context on CPU."""
    dtype = autocast_dtype(device, enabled=enabled)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
