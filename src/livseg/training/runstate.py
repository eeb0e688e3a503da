"""Process state of a training run: RNG states, seeds, threads, determinism.

Kept apart from :mod:`livseg.training.train` because it is all about reproducing a run: what must
be saved in ``last.pt`` to continue bit for bit (:func:`capture_rng` / :func:`restore_rng`)
and which global torch switches a run flips (:func:`runtime`, which puts them back).
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Iterator

import numpy as np
import torch

from livseg.config import TrainConfig
from livseg.device import cpu_count
from livseg.errors import ConfigError
from livseg.training.distributed import DistInfo

__all__ = [
    "capture_rng",
    "derived_seed",
    "restore_rng",
    "runtime",
    "seed_all",
]


# ----------------------------------------------------------------------------------- RNG states


def capture_rng() -> dict[str, Any]:
    """This process's torch, CUDA, numpy and python RNG states, in ``weights_only``-safe types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # uint32 -> int64, lossless
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": [int(v) for v in py_state], "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng`: set every RNG to the captured state."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
    )
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    """Seed torch, numpy's global RNG and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def derived_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from several integers (seed, rank, purpose)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


# ----------------------------------------------------------------------------- process settings


@contextlib.contextmanager
def runtime(config: TrainConfig, device: torch.device, info: DistInfo) -> Iterator[None]:
    """Threads and determinism flags for the run, put back afterwards (train() may be one call
    among many in a notebook or a test session).

    Threads: ``train.num_threads`` if set; else left alone when ``OMP_NUM_THREADS`` is set;
    else every core this process may use, shared among the DDP ranks on this machine.
    """
    if config.num_threads < 0:
        raise ConfigError(f"train.num_threads: expected 0 (all cores) or a positive count, got {config.num_threads}")
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    try:
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        elif device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
            # torch's default is the machine's physical cores, ignoring affinity and other ranks
            torch.set_num_threads(max(1, cpu_count() // max(1, info.local_world_size)))
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
            # CUDA has no deterministic max-pool / transposed-conv backward; warn there, not fail
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one fixed input shape: autotune once
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3], saved[4]
