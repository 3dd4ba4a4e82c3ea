"""Click options generated from a settings dataclass, so flags, env and TOML stay in step."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import click

from protocol.settings import SettingsError, load_settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

LOG_HELP = {
    "log_format": "Log lines as text, json, or auto (text on a terminal, else JSON).",
    "log_level": "Least severe log level written.",
}


class SettingError(click.ClickException):
    """A bad setting: one line naming it, where it came from and the fix; exit status 2
    (a usage error), before anything starts."""

    exit_code = 2


def human_size(size: int) -> str:
    """``10GiB`` rather than ``10737418240``: the unit an operator would type."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _metavar(kind: Any, metadata: Mapping[str, object], name: str) -> str:
    """The value's type as ``--help`` shows it."""
    if metadata.get("size"):
        return "SIZE"
    origin = get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        kind = next(a for a in get_args(kind) if a is not type(None))
        origin = get_origin(kind)
    if origin is Literal:
        return "[" + "|".join(map(str, get_args(kind))) + "]"
    if origin is tuple:
        return "LIST"
    if kind is float and (name.endswith(("_seconds", "_after", "_window")) or "interval" in name):
        return "SECONDS"
    names = {int: "INTEGER", float: "NUMBER", bool: "BOOLEAN", Path: "PATH", str: "TEXT"}
    return names.get(kind, "TEXT")


def settings_options(
    cls: type[Any], helps: Mapping[str, str], env_prefix: str = ""
) -> Callable[[F], F]:
    """Add ``--config`` and one ``--field-name`` option per field of ``cls``; each option's
    help names its type, its default (sizes with units) and its environment variable.

    A boolean's option also works bare: ``--yes`` is ``--yes true``.
    """
    hints = typing.get_type_hints(cls)

    def decorate(func: F) -> F:
        for field in reversed(dataclasses.fields(cls)):
            default = field.default if field.default is not dataclasses.MISSING else None
            if isinstance(default, tuple):
                shown: object = ",".join(default) or '""'
            elif field.metadata.get("size") and isinstance(default, int):
                shown = human_size(default)
            else:
                shown = '""' if default == "" else default
            name = f"--{field.name.replace('_', '-')}"
            env = f"; env: {env_prefix}_{field.name.upper()}" if env_prefix else ""
            text = f"{helps.get(field.name, '')} [default: {shown}{env}]".strip()
            metavar = _metavar(hints[field.name], field.metadata, field.name)
            if hints[field.name] is bool:  # a value is optional: bare means true
                option = click.option(
                    name,
                    field.name,
                    default=None,
                    is_flag=False,
                    flag_value="true",
                    metavar=metavar,
                    help=text,
                )
            else:
                option = click.option(name, field.name, default=None, metavar=metavar, help=text)
            func = option(func)
        return click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help="TOML file with any of these settings (flags and env override it).",
        )(func)

    return decorate


def settings_from_cli(
    cls: type[T], env_prefix: str, config_file: Path | None, flags: Mapping[str, object]
) -> T:
    try:
        return load_settings(
            cls, env_prefix=env_prefix, config_file=config_file, overrides=dict(flags)
        )
    except SettingsError as exc:
        raise SettingError(str(exc)) from None
