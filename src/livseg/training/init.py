"""Starting a run from trained weights: ``train(init=...)``, ``livseg train --init``.

An init checkpoint fixes the network and the grid it sees CTs on, so a run started from it takes
them from there: its ``model``, its ``preprocess`` (all but ``liver_labels``, which says which
label values of the *new* data are liver) and a stage-2 network's region geometry
(:data:`NETWORK_KEYS`). Everything else (loss, schedule, sampling) is the run's own. A
configuration that would change any of them is refused with one line naming the keys, before
anything is written; a changed architecture would leave the weights without a place, and a
changed grid would feed them CTs at a scale they never saw.

``init`` is ``"builtin"`` (the default built-in model), ``"builtin:<name>"`` or a checkpoint
file (``best.pt`` / ``last.pt`` of a run; weights in float16, as the built-in ones, are fine).
A cascade holds two networks and is refused: fine-tune one stage from its own ``best.pt``.

One change of the network is allowed: a liver network (one sigmoid output) may start a
multi-organ model (``model.classes``) of the same widths: its body is kept and its head widened
(:func:`widen_head`, :func:`livseg.nn.heads.expand_head`), so the new model starts by predicting
the liver as the old one did. That is how liver-v2 starts from liver-v1. A multi-organ init
fine-tuned on data that labels fewer classes keeps all of its classes: the partial-label loss
learns nothing about a class from a case that does not label it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from livseg.config import RunConfig, flatten
from livseg.errors import CheckpointError, ConfigError
from livseg.nn.checkpoint import Checkpoint, load_checkpoint

__all__ = ["NETWORK_KEYS", "adopt_init", "check_init_config", "init_spec", "load_init", "widen_head"]

# what an init checkpoint fixes: dotted keys, and whole sections ending in "."
NETWORK_KEYS = ("model.", "preprocess.", "region.enabled", "region.spacing_mm", "region.margin_mm")
FREE_KEYS = ("preprocess.liver_labels",)  # how the new data is labelled, not how the network sees it


def init_spec(init: str | os.PathLike[str]) -> str:
    """The canonical name of an init: ``"builtin:<name>"`` for a built-in model, else the path."""
    from livseg.weights import builtin_name, is_builtin

    return builtin_name(str(init)) if is_builtin(str(init)) else str(init)


def load_init(init: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint a run starts from.

    Raises:
        ConfigError: no built-in model of that name.
        InputFileNotFoundError, CheckpointError: a missing or unusable file, or a cascade.
    """
    from livseg.weights import BUILTIN_PREFIX, builtin_path

    spec = init_spec(init)
    if spec.startswith(BUILTIN_PREFIX):
        with builtin_path(spec) as path:
            checkpoint = load_checkpoint(path)
    else:
        checkpoint = load_checkpoint(Path(spec))
    if checkpoint.cascade is not None:
        raise CheckpointError(f"{spec}: a cascade holds two networks; start from one stage: pass that stage's own "
                              "best.pt (livseg cascade joined it from two runs)")
    return checkpoint


def _network(config: RunConfig) -> dict[str, object]:
    return {key: value for key, value in flatten(config).items()
            if key.startswith(NETWORK_KEYS) and key not in FREE_KEYS}


def adopt_init(config: RunConfig, init: RunConfig) -> RunConfig:
    """``config`` with the network and preprocessing of ``init`` (keeping ``config``'s liver labels)."""
    region = replace(config.region, enabled=init.region.enabled, spacing_mm=init.region.spacing_mm,
                     margin_mm=init.region.margin_mm)
    preprocess = replace(init.preprocess, liver_labels=config.preprocess.liver_labels)
    return replace(config, model=init.model, preprocess=preprocess, region=region)


def check_init_config(config: RunConfig, init: RunConfig, spec: str) -> None:
    """Refuse a run configuration whose network or preprocessing differs from the init checkpoint's.

    Raises:
        ConfigError: naming every changed key with both values.
    """
    want, have = _network(init), _network(config)
    changed = [f"{key}={have[key]} (init: {want[key]})" for key in sorted(want) if have.get(key) != want[key]]
    if changed:
        raise ConfigError(
            f"--init {spec}: the network and its preprocessing come from the init checkpoint; "
            f"{', '.join(changed)} would change them. Drop those --set values (or the --preset), or train from "
            "scratch without --init"
        )


def widen_head(init: Checkpoint, config: RunConfig) -> Checkpoint:
    """``init`` itself, or, for a liver network starting a multi-organ ``config`` of the same
    widths, a copy whose head is widened to ``config.model.classes`` (and whose config says so).
    """
    from livseg.nn.heads import expand_head

    model = init.config.model
    if init.config.model.classes or not config.model.classes or init.config.region.enabled:
        return init
    if replace(config.model, out_channels=model.out_channels, classes=model.classes) != model:
        return init  # other differences: check_init_config names them
    return replace(init, model_state=expand_head(init.model_state, config.model.classes),
                   config=replace(init.config, model=config.model))
