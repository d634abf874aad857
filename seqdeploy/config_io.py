"""Read TOML configs into :class:`~seqdeploy.config.PipelineConfig` and write them back as dicts.

The walker is generic over the dataclasses in :mod:`seqdeploy.config`: it reads their type hints,
so adding a key means adding a field. Every error names the full key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from seqdeploy.config import PipelineConfig
from seqdeploy.errors import ConfigError

__all__ = ["config_from_dict", "config_to_dict", "load_config"]

T = TypeVar("T")

# Fields that are set by the loader, never read from TOML.
_INTERNAL_FIELDS = frozenset({"base_dir"})


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a TOML config file.

    Raises:
        ConfigError: The file is missing, is not valid TOML, or holds an unknown key, a wrong type or
            an impossible value. The message names the file and the key path.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:  # tomllib needs binary mode
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; expected a .toml config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text, as TOML requires ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    try:
        return config_from_dict(raw, base_dir=str(path.resolve().parent))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_dict(raw: dict[str, Any], *, base_dir: str = ".") -> PipelineConfig:
    """Validate a parsed TOML document (or a manifest's ``config``) into a :class:`PipelineConfig`."""
    cfg = _build(PipelineConfig, raw, "")
    return dataclasses.replace(cfg, base_dir=base_dir)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The dict form of a config dataclass (tuples as lists), lossless through :func:`config_from_dict`.

    ``None`` fields whose default is ``None`` are omitted (TOML has no null); a ``None`` that overrides a
    non-``None`` default is written ``false`` where TOML spells it so (``padding_idx = false``), else kept as
    ``None`` (the JSON manifest). Keys added later (``source``, ``kwargs``, ``[checkpoint]``…) are left out
    while they hold their default, so configs that do not use them give the same dict as before.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.name in _INTERNAL_FIELDS:
            continue
        value = getattr(cfg, f.name)
        if value is None and f.default is None:
            continue
        if f.metadata.get("omit_default") and value == _default_of(f):
            continue
        if value is None:
            out[f.name] = False if f.metadata.get("false_is_none") else None
            continue
        out[f.name] = _to_plain(value)
    return out


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value!r}"


def _type_name(tp: Any) -> str:
    return {int: "int", str: "string", float: "float", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))


def _build(cls: type[T], raw: object, path: str) -> T:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or '<root>'}: expected a table, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _INTERNAL_FIELDS}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{_join(path, key)}: unknown key{hint}; valid keys here: {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in raw:
            value = raw[name]
            if f.metadata.get("false_is_none"):
                # TOML has no null: `padding_idx = false` switches the feature off (`true` means nothing).
                if value is False:
                    value = None
                elif value is True:
                    raise ConfigError(f"{_join(path, name)}: expected an int or false (to switch it off), got true")
            kwargs[name] = _coerce(hints[name], value, _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)}: required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        # __post_init__ names keys relative to its table; prefix the table's own path.
        raise ConfigError(f"{path}.{exc}" if path else str(exc)) from None


def _coerce(tp: Any, value: object, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value  # free-form (``kwargs``): checked by the dataclass
    if origin in (types.UnionType, typing.Union):
        options = [a for a in get_args(tp) if a is not type(None)]
        # TOML has no null (an optional key is simply omitted); None only arrives from a JSON manifest.
        if value is None:
            return None
        if len(options) == 1:
            return _coerce(options[0], value, path)
        for option in options:  # `int | str` (dims): the first that fits
            try:
                return _coerce(option, value, path)
            except ConfigError:
                continue
        names = " or ".join(_type_name(o) for o in options)
        raise ConfigError(f"{path}: expected {names}, got {_describe(value)}")
    if origin is dict:
        key_tp, value_tp = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {_describe(value)}")
        assert key_tp is str  # TOML keys are strings
        return {k: _coerce(value_tp, v, _join(path, k)) for k, v in value.items()}
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: expected one of {', '.join(repr(a) for a in allowed)}, got {_describe(value)}")
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected an array, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected an array of {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        # bool is an int subclass in Python; a config `true` is never a count.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected int, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected float, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected string, got {_describe(value)}")
        return value
    raise AssertionError(f"config_io cannot read type {tp!r} at {path}")  # a seqdeploy bug
