"""Self-describing checkpoints: one file holds everything needed to predict or to resume.

Layout (a plain dict of tensors, numbers, strings, lists and dicts, so that it loads with
``torch.load(weights_only=True)`` and a downloaded checkpoint cannot run code)::

    format        "livseg-checkpoint"
    version       1
    livseg        the livseg version that wrote it
    config        livseg.config.to_dict(RunConfig): preprocess, model, loss, train
    model         model state dict
    epoch         last finished epoch (1-based)
    best_score    best validation Dice so far
    best_epoch    epoch of best_score
    history       list of per-epoch metric dicts
    optimizer     optimiser state dict (last.pt only: best.pt is for prediction)
    scaler        AMP grad-scaler state (last.pt only, float16 runs)
    rng           RNG states for exact resumption (last.pt only)
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from livseg import __version__
from livseg.config import RunConfig, from_dict, to_dict
from livseg.data.io.files import atomic_output
from livseg.errors import CheckpointError, ConfigError, InputFileNotFoundError

FORMAT = "livseg-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``extra`` holds every other key of the file (optimizer, rng, ...)."""

    config: RunConfig
    model_state: dict[str, torch.Tensor]
    epoch: int = 0
    best_score: float = float("nan")
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    path: str = ""


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    config: RunConfig,
    model_state: dict[str, torch.Tensor],
    epoch: int = 0,
    best_score: float = float("nan"),
    best_epoch: int = 0,
    history: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename), replacing an older one.

    Args:
        path: destination, conventionally ``best.pt`` or ``last.pt`` in the run folder.
        config: the run's full configuration.
        model_state: ``model.state_dict()`` (of the unwrapped model, not a DDP wrapper).
        epoch, best_score, best_epoch, history: training progress.
        **extra: further entries, e.g. ``optimizer=opt.state_dict()``, ``rng=...``; they must be
            made of tensors, numbers, strings, lists and dicts only.
    """
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "livseg": __version__,
        "config": to_dict(config),
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "epoch": int(epoch),
        "best_score": float(best_score),
        "best_epoch": int(best_epoch),
        "history": list(history or []),
        **extra,
    }
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and check a livseg checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        InputFileNotFoundError: no such file.
        CheckpointError: truncated or unreadable file, a file that was not written by livseg,
            a newer format version, or an invalid stored configuration.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"checkpoint not found: {str(path)!r}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        reason = " ".join(str(exc).split()).split(". ")[0][:160]  # torch appends advice meant for its developers
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({type(exc).__name__}: {reason}); the file is truncated, "
            "corrupt, or not a livseg checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: not a livseg checkpoint (format tag {found!r}, expected {FORMAT!r}); "
            "use a best.pt or last.pt written by `livseg train`"
        )
    if int(payload.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('version')} is newer than this livseg "
            f"understands ({VERSION}); upgrade livseg"
        )
    missing = [key for key in ("config", "model") if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}; expected a complete livseg checkpoint")
    try:
        config = from_dict(RunConfig, payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: stored configuration is invalid: {exc}") from None
    known = {"format", "version", "livseg", "config", "model", "epoch", "best_score", "best_epoch", "history"}
    return Checkpoint(
        config=config,
        model_state=payload["model"],
        epoch=int(payload.get("epoch", 0)),
        best_score=float(payload.get("best_score", float("nan"))),
        best_epoch=int(payload.get("best_epoch", 0)),
        history=list(payload.get("history", [])),
        extra={k: v for k, v in payload.items() if k not in known},
        path=str(path),
    )


def build_model(checkpoint: Checkpoint) -> torch.nn.Module:
    """The UNet3D described by a checkpoint, with its weights loaded, in eval mode.

    Raises:
        CheckpointError: the weights do not fit the stored model configuration.
    """
    from livseg.nn.model import UNet3D

    model = UNet3D(checkpoint.config.model)
    try:
        model.load_state_dict(checkpoint.model_state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{checkpoint.path}: weights do not match the stored model config ({first})") from None
    return model.eval()
