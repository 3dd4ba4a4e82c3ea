"""Service settings: one frozen dataclass per service, read once from flags, env and TOML.

Precedence, highest first: command-line flags, ``<PREFIX>_<FIELD>`` environment variables,
the TOML file given with ``--config``, then the dataclass defaults. Values are converted to
the field's declared type; sizes accept units (``500GiB``, ``1.5TB``, ``4096``). Unknown
keys and unconvertible values fail with a message naming the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

T = TypeVar("T")

SIZE = {"size": True}  # field metadata: parse with parse_size
# Every service logs the same way: text on a terminal, JSON lines otherwise (or as asked).
LogFormat = Literal["auto", "json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]
_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")


class SettingsError(ValueError):
    """A setting that is unknown or cannot be read; the message names the key and source."""


class FieldError(ValueError):
    """Raised by a settings class's ``__post_init__`` about one field, so that the message
    can say where that field's value came from (a flag, the environment, the file)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_size(value: object) -> int:
    """Bytes from ``4096``, ``"64MiB"``, ``"1.5 TB"`` (SI and binary units)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.fullmatch(str(value))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"{value!r} is not a size: use bytes or units like 500GiB, 2TB, 64MiB")
    return int(float(match.group(1)) * _UNITS[unit])


def _convert(value: Any, kind: Any, is_size: bool) -> Any:  # noqa: PLR0911 - one per type
    if is_size:
        return parse_size(value)
    origin = get_origin(kind)
    if origin is Literal:
        if value not in get_args(kind):
            raise ValueError(f"{value!r} is not one of {', '.join(map(str, get_args(kind)))}")
        return value
    if origin in (types.UnionType, typing.Union):
        options = [a for a in get_args(kind) if a is not type(None)]
        if value is None or value == "":
            return None
        return _convert(value, options[0], is_size)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(item).strip() for item in items if str(item).strip())
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
            raise ValueError(f"{value!r} is not a boolean (true/false)")
        return text in {"1", "true", "yes", "on"}
    if kind is Path:
        return Path(str(value)).expanduser()
    if kind in (int, float, str):
        if kind is not str and isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        return kind(value)
    raise TypeError(f"settings cannot hold a {kind!r}")


def load_settings(
    cls: type[T],
    *,
    env_prefix: str,
    config_file: Path | None = None,
    overrides: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
) -> T:
    """Build ``cls`` from flags (``overrides``; None means not given), env, file, defaults."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    environ = os.environ if env is None else env
    raw: dict[str, tuple[object, str]] = {}
    if config_file is not None:
        try:
            table = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc}") from None
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise SettingsError(
                f"{config_file}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(fields))}"
            )
        raw.update({k: (v, str(config_file)) for k, v in table.items()})
    for name in fields:
        var = f"{env_prefix}_{name.upper()}"
        if var in environ:
            raw[name] = (environ[var], f"${var}")
    for name, value in (overrides or {}).items():
        if name not in fields:
            raise SettingsError(f"unknown setting {name!r}")
        if value is not None:
            raw[name] = (value, f"--{name.replace('_', '-')}")
    values = {}
    for name, (value, source) in raw.items():
        is_size = bool(fields[name].metadata.get("size"))
        try:
            values[name] = _convert(value, hints[name], is_size)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{name} (from {source}): {exc}") from None
    return _build(cls, values, raw)


def _build(cls: type[T], values: dict[str, Any], raw: Mapping[str, tuple[object, str]]) -> T:
    try:
        return cls(**values)
    except FieldError as exc:
        source = raw[exc.field][1] if exc.field in raw else "the default"
        raise SettingsError(f"{exc.field} (from {source}): {exc.message}") from None
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
