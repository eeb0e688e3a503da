"""Self-describing checkpoints: one file holds everything needed to predict or to resume.

Layout (a plain dict of tensors, numbers, strings, lists and dicts, so that it loads with
``torch.load(weights_only=True)`` and a downloaded checkpoint cannot run code)::

    format        "livseg-checkpoint"
    version       2 (1: before cascades; version-1 files load unchanged)
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
    cascade       (optional) stage 2 of a cascade: a dict with its own ``config``, ``model``,
                  ``epoch``, ``best_score``, ``best_epoch`` and ``history``. The file's top-level
                  entries are then stage 1 (the liver on the whole CT), and prediction runs both
                  (:func:`save_cascade` writes such a file from two runs' checkpoints).
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from livseg import __version__
from livseg.config import ModelConfig, RunConfig, from_dict, to_dict, validate_config
from livseg.data.io.files import atomic_output, check_input, probe_output_dir, refuse_existing
from livseg.errors import CheckpointError, ConfigError, OutputPathError, one_line

FORMAT = "livseg-checkpoint"
VERSION = 2
CASCADE_KEY = "cascade"
_STAGE_KEYS = ("epoch", "best_score", "best_epoch", "history")


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``extra`` holds every other key of the file (optimizer, rng, ...);
    ``cascade`` is stage 2 when the file holds a cascade (its own config, weights and progress)."""

    config: RunConfig
    model_state: dict[str, torch.Tensor]
    epoch: int = 0
    best_score: float = float("nan")
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    cascade: Checkpoint | None = None  # stage 2, when the file holds a cascade


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
            a newer format version, an invalid stored configuration (checked as ``--set``
            overrides are, see :func:`check_stored_config`), weights that do not fit it or hold
            NaN/inf (:func:`check_model_state`), or a non-finite optimizer state.
    """
    path = check_input(path, "checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a checkpoint file (a run folder's best.pt)")
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
    version = payload.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is not an integer; the file was changed")
    if version > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('version')} is newer than this livseg "
            f"understands ({VERSION}); upgrade livseg"
        )
    checkpoint = _stage(payload, path, where="")
    checkpoint.extra = {k: v for k, v in payload.items() if k not in _KNOWN}
    if CASCADE_KEY in payload:
        stage2 = payload[CASCADE_KEY]
        if not isinstance(stage2, dict):
            raise CheckpointError(f"{path}: the cascade entry is not a dict; expected stage 2's config and weights")
        checkpoint.cascade = _stage(stage2, path, where="cascade ")
        _check_cascade(checkpoint.config, checkpoint.cascade.config, path)
    return checkpoint


def read_checkpoint(spec: str | os.PathLike[str] | None, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """:func:`load_checkpoint` of a file, or of a built-in model: None (the default) or
    ``"builtin:<name>"`` (``livseg models``).

    Raises:
        ConfigError: no built-in model of that name; else as :func:`load_checkpoint`.
    """
    from livseg.weights import DEFAULT_MODEL, builtin_path, is_builtin

    if is_builtin(spec):
        with builtin_path(str(spec or DEFAULT_MODEL)) as path:
            return load_checkpoint(path, map_location=map_location)
    return load_checkpoint(spec, map_location=map_location)  # type: ignore[arg-type]


_KNOWN = {"format", "version", "livseg", "config", "model", CASCADE_KEY, *_STAGE_KEYS}


def _stage(payload: dict[str, Any], path: Path, *, where: str) -> Checkpoint:
    """One stage (the file itself, or its cascade entry) as a Checkpoint without extras."""
    missing = [key for key in ("config", "model") if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: {where}checkpoint lacks {missing}; expected a complete livseg checkpoint")
    name = f"{path} ({where.strip()})" if where else str(path)
    config = check_stored_config(payload["config"], where=name)
    state = check_model_state(payload["model"], config.model, where=name)
    progress = {key: _number(payload, key, kind, name) for key, kind in _PROGRESS.items()}
    history = payload.get("history", [])
    if not isinstance(history, list):
        raise CheckpointError(f"{name}: 'history' is a {type(history).__name__}; expected a list of epoch records")
    if "optimizer" in payload and not _all_finite(payload["optimizer"]):
        raise CheckpointError(f"{name}: optimizer state holds NaN or infinite values; the run diverged or the file "
                              "was changed: resume from an earlier checkpoint or start a new run")
    return Checkpoint(
        config=config,
        model_state=state,
        history=list(history),
        path=str(path),
        **progress,
    )


# --------------------------------------------------------------------------------- validation

_PROGRESS = {"epoch": int, "best_score": float, "best_epoch": int}  # keys of the training progress


def check_stored_config(data: Any, *, where: str) -> RunConfig:
    """The RunConfig stored in a checkpoint, type- and range-checked as ``--set`` overrides are.

    Missing keys take their defaults (checkpoints of an older livseg still load). Reusable for
    any further configuration a checkpoint stores (a second stage).

    Args:
        data: the stored ``to_dict(RunConfig)``.
        where: the file (or part of it) named in the message.

    Raises:
        CheckpointError: naming the field, e.g. ``model.dropout: expected 0 <= p < 1, got 5.0``.
    """
    try:
        config = from_dict(RunConfig, data)
        validate_config(config)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: stored configuration is invalid: {one_line(exc)}") from None
    return config


def check_model_state(state: Any, config: ModelConfig, *, where: str) -> dict[str, torch.Tensor]:
    """Check stored weights against the network ``config`` describes, before anything is built.

    The expected names, shapes and dtypes come from a UNet3D on the ``meta`` device (no memory).
    Every tensor must have its expected shape, a floating dtype where the network has one
    (integer counters such as ``num_batches_tracked`` stay integer) and only finite values.

    Args:
        state: the stored state dict.
        config: the stored model configuration (already validated).
        where: the file (or part of it) named in the message.

    Returns:
        ``state`` itself.

    Raises:
        CheckpointError: naming the first bad tensor.
    """
    from livseg.nn.model import UNet3D

    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{where}: model weights are a {type(state).__name__}; expected a dict of tensors by name")
    with torch.device("meta"):
        expected = UNet3D(config).state_dict()
    lacking, surplus = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if lacking:
        raise CheckpointError(f"{where}: model weights lack {len(lacking)} tensor(s) the stored model config needs: "
                              f"{lacking[:5]}")
    if surplus:
        raise CheckpointError(f"{where}: model weights hold {len(surplus)} tensor(s) the stored model config has no "
                              f"place for: {surplus[:5]}")
    for name, want in expected.items():
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{where}: '{name}' is a {type(tensor).__name__}; expected a tensor")
        if tensor.shape != want.shape:
            raise CheckpointError(f"{where}: tensor '{name}' has shape {tuple(tensor.shape)}; the stored model config "
                                  f"gives {tuple(want.shape)}")
        if want.is_floating_point() != tensor.is_floating_point() or tensor.is_complex():
            kind = "a floating-point" if want.is_floating_point() else "an integer"
            raise CheckpointError(f"{where}: tensor '{name}' has dtype {tensor.dtype}; expected {kind} tensor")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{where}: tensor '{name}' holds {bad} NaN or infinite values; the weights are "
                                  "unusable (a diverged run or a changed file)")
    return state


def _number(payload: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """A progress entry (epoch, best_score, ...) of the payload as ``kind``; NaN is a valid score."""
    default = {int: 0, float: float("nan")}[kind]
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        name = "an integer" if kind is int else "a number"
        raise CheckpointError(f"{where}: {key!r} is {value!r}; expected {name}")
    return kind(value)


def _all_finite(value: Any) -> bool:
    """True when every floating tensor and float nested in dicts/lists is finite."""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    return True

def _check_cascade(stage1: RunConfig, stage2: RunConfig, path: str | os.PathLike[str]) -> None:
    """Stage 1 must find the liver on the whole CT and stage 2 segment its region.

    Raises:
        CheckpointError: naming the stage that is the wrong kind.
    """
    if stage1.region.enabled or (stage1.model.out_channels != 1 and not stage1.model.classes):
        raise CheckpointError(f"{path}: stage 1 of a cascade must be a liver network (region off, one output or a "
                              "multi-organ softmax), "
                              f"got region.enabled={stage1.region.enabled}, {stage1.model.out_channels} outputs")
    if not stage2.region.enabled or stage2.model.out_channels != 2:
        raise CheckpointError(f"{path}: stage 2 of a cascade must be a region network (`--preset tumour`), "
                              f"got region.enabled={stage2.region.enabled}, {stage2.model.out_channels} outputs")


def save_cascade(
    path: str | os.PathLike[str],
    liver: str | os.PathLike[str] | None,
    tumour: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Write one cascade checkpoint from a stage-1 and a stage-2 checkpoint (API of ``livseg cascade``).

    The file is stage 1's checkpoint (config, weights, progress) with stage 2 under ``cascade``;
    optimiser and RNG states are left out (prediction needs neither).

    Args:
        path: the cascade file to write (atomically).
        liver: stage 1: a liver checkpoint (``best.pt`` of a ``paper``/``default``/``demo`` run), or
            a built-in model (None or ``"builtin:<name>"``).
        tumour: stage 2: a region checkpoint (``best.pt`` of a ``tumour``/``demo-tumour`` run).
        overwrite: replace an existing ``path``.

    Returns:
        ``path``.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputPathError: ``path`` is a folder, one of the two inputs, or in a folder that cannot be written.
        InputFileNotFoundError, CheckpointError: a missing or unreadable checkpoint, or stages of
            the wrong kind (each checkpoint is checked before anything is written).
    """
    from livseg.weights import is_builtin

    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path} is a folder; give -o the cascade file to write, e.g. {path / 'cascade.pt'}")
    for source in (liver, tumour):
        if not is_builtin(source) and path.exists() and Path(source).exists() and path.samefile(source):  # type: ignore[arg-type]
            raise OutputPathError(f"-o {path} is one of the two checkpoints it joins; write the cascade to a new file")
    refuse_existing([path], overwrite)
    probe_output_dir(path.parent)  # a folder nothing can be written to fails now, not after loading both stages
    stage1, stage2 = read_checkpoint(liver), read_checkpoint(tumour)
    for stage, name in ((stage1, "liver"), (stage2, "tumour")):
        if stage.cascade is not None:
            raise CheckpointError(f"{stage.path}: already a cascade; pass the {name} stage's own best.pt")
    _check_cascade(stage1.config, stage2.config, f"{liver} + {tumour}")
    for stage in (stage1, stage2):
        build_model(stage)  # weights that fit their configs, before anything is written
    return save_checkpoint(
        path, config=stage1.config, model_state=stage1.model_state, epoch=stage1.epoch,
        best_score=stage1.best_score, best_epoch=stage1.best_epoch, history=stage1.history,
        **{CASCADE_KEY: {"config": to_dict(stage2.config), "model": stage2.model_state,
                         **{k: getattr(stage2, k) for k in _STAGE_KEYS}}},
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
