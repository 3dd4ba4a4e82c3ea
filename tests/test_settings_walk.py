"""Every setting of every service works from a flag, an environment variable and the TOML
file alike, and arrives with the same value (log_format and log_level included)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import click
import pytest

from chain.settings import ChainSettings
from protocol.settings import load_settings
from storage_miner.settings import MinerSettings
from subnet.chain_cmd import run as chain_run
from subnet.miner_cmd import run as miner_run
from subnet.validator_cmd import run as validator_run
from validator.settings import ValidatorSettings

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
SERVICES = [
    (MinerSettings, "SUBNET_MINER", miner_run),
    (ValidatorSettings, "SUBNET_VALIDATOR", validator_run),
    (ChainSettings, "SUBNET_CHAIN", chain_run),
]
# A value other than the default that the settings accept, where the type alone is not enough.
SPECIAL: dict[str, tuple[str, object]] = {
    "users": (f"alice={HOTKEY}", (f"alice={HOTKEY}",)),
    "tokens": ("ci=s3cret", ("ci=s3cret",)),
    "miners": (f"{HOTKEY}@127.0.0.2:8091", (f"{HOTKEY}@127.0.0.2:8091",)),
    "validators": (HOTKEY, (HOTKEY,)),
    "chain_url": ("http://127.0.0.1:9944", "http://127.0.0.1:9944"),
    "network": ("test", "test"),
    "k": ("3", 3),
    "m": ("9", 9),
    "leaf_size": ("32KiB", 32 * 2**10),
    "segment_size": ("32MiB", 32 * 2**20),
    "placement_network_prefix": ("16", 16),
    "s3_port": ("9000", 9000),
    # At least one upload's least window (the settings refuse less).
    "transfer_memory": ("300MiB", 300 * 2**20),
    "transfer_memory_per_user": ("200MiB", 200 * 2**20),
}
FRACTIONS = {"synthetic_share", "reputation_lambda", "disqualify_below", "suspend_below"}
# Settings that need a companion to be valid.
COMPANIONS: dict[str, dict[str, str]] = {"netuid": {"network": "test"}, "network": {"netuid": "7"}}


def sample(field: dataclasses.Field[Any], kind: Any) -> tuple[str, object, str]:  # noqa: PLR0911
    """(text for a flag or env var, the value expected, the TOML literal)."""
    if field.name in SPECIAL:
        text, value = SPECIAL[field.name]
        toml = (
            "[" + ", ".join(f'"{v}"' for v in value) + "]"
            if isinstance(value, tuple)
            else (str(value) if isinstance(value, int) else f'"{text}"')
        )
        return text, value, toml
    if field.metadata.get("size"):
        return "3MiB", 3 * 2**20, '"3MiB"'
    origin = get_origin(kind)
    if origin is not None and origin is not Literal:  # X | None
        kind = next(a for a in get_args(kind) if a is not type(None))
        origin = get_origin(kind)
    if origin is Literal:
        other = next(a for a in get_args(kind) if a != field.default)
        return other, other, f'"{other}"'
    if kind is bool:
        return "true", True, "true"
    if kind is int:
        value = (field.default or 0) + 1
        return str(value), value, str(value)
    if kind is float:
        value = 0.5 if field.name in FRACTIONS else (field.default or 1.0) + 1.5
        return str(value), value, str(value)
    if kind is Path:
        return "/tmp/walk", Path("/tmp/walk"), '"/tmp/walk"'
    return "walked", "walked", '"walked"'


def cases() -> list[tuple[Any, str, click.Command, str]]:
    return [
        (cls, prefix, command, field.name)
        for cls, prefix, command in SERVICES
        for field in dataclasses.fields(cls)
    ]


@pytest.mark.parametrize(("cls", "prefix", "command", "name"), cases())
def test_every_setting_from_flag_env_and_toml(
    cls: Any, prefix: str, command: click.Command, name: str, tmp_path: Path
) -> None:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    text, expected, toml = sample(field, typing.get_type_hints(cls)[name])
    assert expected != field.default
    companions = COMPANIONS.get(name, {})
    flag = f"--{name.replace('_', '-')}"
    args = [flag, text]
    for other, value in companions.items():
        args += [f"--{other}", value]
    params = command.make_context("run", args).params
    flags = {k: v for k, v in params.items() if k != "config_file"}
    from_flag = load_settings(cls, env_prefix=prefix, overrides=flags, env={})
    env = {f"{prefix}_{k.upper()}": v for k, v in {name: text, **companions}.items()}
    from_env = load_settings(cls, env_prefix=prefix, env=env)
    config = tmp_path / "settings.toml"
    lines = [f"{name} = {toml}"] + [
        f"{k} = {v if v.isdigit() else repr(v)}" for k, v in companions.items()
    ]
    config.write_text("\n".join(lines) + "\n")
    from_file = load_settings(cls, env_prefix=prefix, config_file=config, env={})
    for source, settings in (("flag", from_flag), ("env", from_env), ("toml", from_file)):
        assert getattr(settings, name) == expected, (source, name)
