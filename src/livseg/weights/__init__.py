"""Model weights shipped inside the package, each with a model card.

Every built-in model is a livseg checkpoint ``<name>.pt`` in this folder (package data; the
only binary files in git) and a Markdown card ``<name>.md`` beside it: architecture, input
grid, training data with licences, the command that rebuilt it, measured figures, intended use
and limits. ``livseg models`` prints the cards; ``livseg predict`` and ``livseg evaluate`` use
:data:`DEFAULT_MODEL` when no ``--checkpoint`` is given.

Files are reached through :mod:`importlib.resources`, so they work from a wheel, an
editable install or a zip import, and load with ``torch.load(weights_only=True)`` like any
checkpoint (:func:`livseg.nn.checkpoint.load_checkpoint`).
"""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path
from typing import Iterator

from livseg.errors import ConfigError

__all__ = ["BUILTIN_PREFIX", "DEFAULT_MODEL", "builtin_name", "builtin_path", "is_builtin", "list_models", "model_card"]

DEFAULT_MODEL = "liver-v1"
BUILTIN_PREFIX = "builtin:"  # how a built-in model is named where a checkpoint path could be


def list_models() -> list[str]:
    """Names of the built-in models (``<name>.pt`` files shipped in this package), sorted."""
    folder = resources.files(__name__)
    return sorted(entry.name[: -len(".pt")] for entry in folder.iterdir() if entry.name.endswith(".pt"))


def _check(name: str) -> str:
    name = DEFAULT_MODEL if name == "builtin" else name
    name = name[len(BUILTIN_PREFIX):] if name.startswith(BUILTIN_PREFIX) else name
    known = list_models()
    if name not in known:
        raise ConfigError(f"no built-in model {name!r}; the built-in models are {known} (see `livseg models`)")
    return name


def is_builtin(spec: object) -> bool:
    """Whether a checkpoint argument names a built-in model (None, ``"builtin"``: the default, or
    ``"builtin:<name>"``)."""
    return spec is None or (isinstance(spec, str) and (spec == "builtin" or spec.startswith(BUILTIN_PREFIX)))


def builtin_name(spec: str | None) -> str:
    """The canonical ``"builtin:<name>"`` of a built-in model argument (None and ``"builtin"``: the default)."""
    name = DEFAULT_MODEL if spec in (None, "builtin") else str(spec)
    return name if name.startswith(BUILTIN_PREFIX) else BUILTIN_PREFIX + name


@contextlib.contextmanager
def builtin_path(name: str = DEFAULT_MODEL) -> Iterator[Path]:
    """A real file path of a built-in model's checkpoint for the duration of the ``with``.

    Raises:
        ConfigError: no built-in model of that name.
    """
    name = _check(name)
    with resources.as_file(resources.files(__name__) / f"{name}.pt") as path:
        yield Path(path)


def model_card(name: str = DEFAULT_MODEL) -> str:
    """The Markdown model card of a built-in model.

    Raises:
        ConfigError: no built-in model of that name.
    """
    name = _check(name)
    card = resources.files(__name__) / f"{name}.md"
    return card.read_text(encoding="utf-8") if card.is_file() else f"# {name}\n\n(no model card)\n"
