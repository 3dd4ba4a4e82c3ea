"""Settings: flags over env over TOML over defaults, with errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from protocol.settings import SIZE, SettingsError, load_settings, parse_size
from storage_miner.settings import ENV_PREFIX, MinerSettings


@dataclass(frozen=True)
class Example:
    name: str = "x"
    port: int = 1
    ratio: float = 0.5
    enabled: bool = False
    mode: Literal["fs", "s3"] = "fs"
    folder: Path = Path("/tmp")
    keys: tuple[str, ...] = ()
    budget: int = field(default=10, metadata=SIZE)
    maybe: str | None = None


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), (4096, 4096), ("64MiB", 64 * 2**20), ("1.5 TB", 1_500_000_000_000),
     ("500GiB", 500 * 2**30), ("2kb", 2000)],
)  # fmt: skip
def test_sizes_take_units(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "5 parsecs", "-1", "1..2GiB"])
def test_bad_sizes_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="500GiB"):
        parse_size(text)


def test_precedence_is_flags_then_env_then_file_then_defaults(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('name = "file"\nport = 7\nratio = 0.25\nbudget = "1KiB"\n')
    env = {"T_PORT": "8", "T_ENABLED": "yes", "T_KEYS": "a, b,,c", "T_FOLDER": "~/data"}
    got = load_settings(
        Example, env_prefix="T", config_file=config, env=env,
        overrides={"port": "9", "mode": "s3", "name": None},
    )  # fmt: skip
    assert got == Example(
        name="file",  # a flag given as None means "not given"
        port=9,
        ratio=0.25,
        enabled=True,
        mode="s3",
        folder=Path("~/data").expanduser(),
        keys=("a", "b", "c"),
        budget=1024,
    )


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"T_PORT": "eighty"}, "port (from $T_PORT)"),
        ({"T_MODE": "tape"}, "mode (from $T_MODE)"),
        ({"T_ENABLED": "maybe"}, "enabled (from $T_ENABLED)"),
        ({"T_BUDGET": "lots"}, "budget (from $T_BUDGET)"),
    ],
)
def test_unreadable_values_name_the_key_and_source(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(Example, env_prefix="T", env=env)
    assert needle in str(caught.value)


def test_unknown_file_keys_and_broken_toml_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("nmae = 'typo'\n")
    with pytest.raises(SettingsError, match=r"unknown setting.*nmae"):
        load_settings(Example, env_prefix="T", config_file=config, env={})
    config.write_text("name = \n")
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(Example, env_prefix="T", config_file=config, env={})


def test_miner_settings_from_env_and_validation() -> None:
    env = {f"{ENV_PREFIX}_CAPACITY": "2GiB", f"{ENV_PREFIX}_BACKEND": "s3"}
    settings = load_settings(MinerSettings, env_prefix=ENV_PREFIX, env=env)
    assert (settings.capacity, settings.backend) == (2 * 2**30, "s3")
    needle = r"capacity \(from \$SUBNET_MINER_CAPACITY\): must be positive"
    with pytest.raises(SettingsError, match=needle):
        load_settings(MinerSettings, env_prefix=ENV_PREFIX, env={f"{ENV_PREFIX}_CAPACITY": "0"})
