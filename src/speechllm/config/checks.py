"""The one builder of typed configs and the helpers of their range checks.

`build` turns a mapping (parsed YAML or JSON) into a config dataclass, refusing unknown keys and
values of the wrong type with the key's full path in the message; each config class's own
`validate` then checks ranges and cross-field rules with `check` and `fraction`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from speechllm.errors import ConfigError


def check(ok: bool, message: str) -> None:
    """Raise ConfigError(`message`) unless `ok`."""
    if not ok:
        raise ConfigError(message)


def fraction(value: float, key: str, upper_open: bool = False) -> None:
    """A probability-like value: in [0, 1] (or [0, 1) with `upper_open`)."""
    ok = 0 <= value < 1 if upper_open else 0 <= value <= 1
    check(ok, f"{key} must be in [0, 1{')' if upper_open else ']'}, got {value}")


def build(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking keys and (shallowly) types; `where` names
    the section in error messages. The one builder of every typed config (runs, stages,
    experiment rows)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is list else None
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, key)
        elif item is not None and dataclasses.is_dataclass(item):
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected a list, got {value!r}")
            kwargs[name] = [build(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        else:
            _check_type(hint, value, key)
            kwargs[name] = value
    return cls(**kwargs)


def _check_type(hint: Any, value: Any, key: str) -> None:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                _check_type(arg, value, key)
                return
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} matches none of {[str(a) for a in args]}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null")
        return
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        for i, item in enumerate(value):
            _check_type(args[0], item, f"{key}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
