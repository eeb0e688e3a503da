"""A config as a plain dict and back (checked), and the ``section.key=value`` overrides of ``--set``."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Mapping, Sequence

from livseg.config.schema import RunConfig
from livseg.config.validate import validate_config
from livseg.errors import ConfigError


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples become lists), safe for JSON and ``weights_only``."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def flatten(config: Any) -> dict[str, Any]:
    """A config (or its :func:`to_dict`) as one level of dotted keys, as ``--set`` names them:
    ``{"train.lr": 0.0001, "model.channels": [32, 64, 128, 256], ...}``."""
    data = config if isinstance(config, Mapping) else to_dict(config)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in flatten(value).items()})
        else:
            flat[key] = value
    return flat


def from_dict(cls: type, data: Mapping[str, Any], *, where: str = "") -> Any:
    """Rebuild a config dataclass from :func:`to_dict` output, checking keys and types.

    Unknown keys are refused, missing keys take the default, so checkpoints written by an older
    livseg with fewer fields still load.

    Args:
        cls: the dataclass to build.
        data: its dict form.
        where: dotted path of ``data`` inside a RunConfig (``"train"``), used in messages so
            that they name the key a user types in ``--set``; the class name when empty.

    Raises:
        ConfigError: for unknown keys or values of the wrong type.
    """
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    prefix = "" if cls is RunConfig and where == cls.__name__ else f"{where}."
    kwargs = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Convert a JSON value to the annotated type, or raise ConfigError."""
    if is_dataclass(hint):
        return from_dict(hint, value, where=where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of numbers, got {value!r}")
        item_type = typing.get_args(hint)[0]
        return tuple(_coerce(item_type, v, where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def apply_overrides(config: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """Apply ``section.key=value`` overrides, e.g. ``train.epochs=5`` or
    ``preprocess.target_shape=96,96,48``; values are parsed as JSON where possible.

    Raises:
        ConfigError: for a malformed override, an unknown key or a value of the wrong type.
    """
    data = to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.epochs=5")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: unknown section {part!r}")
            node = node[part]
        if parts[-1] not in node or isinstance(node[parts[-1]], dict):
            raise ConfigError(f"override {item!r}: unknown key {key!r}")
        node[parts[-1]] = _parse_value(raw, like=node[parts[-1]])
    result = from_dict(RunConfig, data)
    validate_config(result)
    return result


def _parse_value(raw: str, like: Any) -> Any:
    """Parse an override value: JSON, or a comma list for list-valued keys, or a bare string."""
    if isinstance(like, list) and not raw.strip().startswith("["):
        raw = "[" + raw + "]"
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
