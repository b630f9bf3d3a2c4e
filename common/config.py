"""Config files for every process: TOML into dataclasses, with defaults written once.

A process's config is a dataclass whose field defaults are the documented defaults. `load` reads
a TOML file (optionally a named table in it), rejects unknown keys and wrong types with a clear
error, and applies command-line overrides given as `key=value`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is malformed; the message names the file and key."""


def _coerce(name: str, typ: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if typ is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return _coerce(name, args[0], value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: {name} must be a list, got {value!r}")
        (inner, *_) = typing.get_args(typ) or (Any,)
        return [_coerce(name, inner, v, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name} must be a table, got {value!r}")
        return dict(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            # (a float with a fraction, an infinity or NaN; 1e6 is a whole number and fine)
            raise ConfigError(f"{where}: {name} must be an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: {name} must be an integer, got {value!r}") from None
    if typ is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {name} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from `data`; unknown keys and bad types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(k, hints[k], v, where) for k, v in data.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check()
    return obj


def load(cls: type[T], path: str | Path | None = None, table: str | None = None,
         overrides: list[str] | None = None) -> T:
    """Read `path` (TOML; the `[table]` section if given), then apply `key=value` overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        where = str(path)
        try:
            raw = tomllib.loads(Path(path).read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        data = raw.get(table, {}) if table else raw
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [{table}] must be a table")
    for ov in overrides or []:
        key, sep, val = ov.partition("=")
        if not sep:
            raise ConfigError(f"override must be key=value, got {ov!r}")
        data[key.strip().replace("-", "_")] = val.strip()
    return from_dict(cls, data, where)


def describe(cls: type) -> str:
    """One line per field: name = default, for --help texts."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        doc = f.metadata.get("doc", "")
        lines.append(f"  {f.name} = {default!r}" + (f"  # {doc}" if doc else ""))
    return "\n".join(lines)
