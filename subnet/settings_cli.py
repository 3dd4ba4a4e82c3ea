"""Click options generated from a settings dataclass, so flags, env and TOML stay in step."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from protocol.settings import SettingsError, load_settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def settings_options(cls: type[Any], helps: Mapping[str, str]) -> Callable[[F], F]:
    """Add ``--config`` and one ``--field-name`` option per field of ``cls``.

    A boolean's option also works bare: ``--yes`` is ``--yes true``.
    """
    hints = typing.get_type_hints(cls)

    def decorate(func: F) -> F:
        for field in reversed(dataclasses.fields(cls)):
            default = field.default if field.default is not dataclasses.MISSING else None
            shown = ",".join(default) if isinstance(default, tuple) else default
            name = f"--{field.name.replace('_', '-')}"
            text = f"{helps.get(field.name, '')} [default: {shown}]".strip()
            if hints[field.name] is bool:  # a value is optional: bare means true
                option = click.option(
                    name, field.name, default=None, is_flag=False, flag_value="true", help=text
                )
            else:
                option = click.option(name, field.name, default=None, help=text)
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
        raise click.UsageError(str(exc)) from None
