"""The README as written: every command in its code blocks exists with those options and
values (parsed by the real command tree, settings checked as the service would), and the
cheap ones are run for real, so the README cannot drift from the CLI again."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from chain.settings import ChainSettings
from protocol.settings import load_settings
from storage_miner.settings import MinerSettings
from subnet.cli import main
from validator.settings import ValidatorSettings

ROOT = Path(__file__).resolve().parent.parent
HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
SERVICES = {
    ("miner", "run"): (MinerSettings, "SUBNET_MINER"),
    ("validator", "run"): (ValidatorSettings, "SUBNET_VALIDATOR"),
    ("chain", "run"): (ChainSettings, "SUBNET_CHAIN"),
}
# Run for real (in a scratch HOME and folder): quick, and start nothing.
RUN = {("--help",), ("wallet", "create"), ("wallet", "list"), ("chain", "genesis")}


def readme_commands() -> list[list[str]]:
    """Each ``subnet`` command of the README's code blocks, hotkey placeholders filled."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for raw in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", raw).strip()
            line = re.sub(r"5[A-Z]\.\.\.", HOTKEY, line)
            for part in line.split("&&"):
                words = shlex.split(part)
                if words and words[0] == ".venv/bin/subnet":
                    commands.append(words[1:])
                elif words:
                    assert words[0] == "make", f"README runs {words[0]!r}: teach this test"
                    targets = (ROOT / "Makefile").read_text()
                    assert re.search(rf"^{words[1]}:", targets, re.M), f"no make {words[1]}"
    return commands


def resolve(words: list[str]) -> tuple[tuple[str, ...], click.Command, list[str]]:
    command: click.Command = main
    path: list[str] = []
    ctx = click.Context(main)
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        found = command.get_command(ctx, words[0])
        assert found is not None, f"no command {' '.join([*path, words[0]])}"
        path.append(words.pop(0))
        command = found
    return tuple(path), command, words


def test_every_readme_command_parses_and_its_settings_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the folders the README names exist
    for folder in ("data", "copy"):
        (tmp_path / folder).mkdir()
    commands = readme_commands()
    assert len(commands) >= 10
    for words in commands:
        path, command, args = resolve(list(words))
        if args == ["--help"]:
            continue
        ctx = command.make_context(" ".join(path), list(args))  # raises on a bad option
        if path in SERVICES:
            cls, prefix = SERVICES[path]
            flags = {k: v for k, v in ctx.params.items() if k != "config_file"}
            load_settings(cls, env_prefix=prefix, overrides=flags, env={})


def test_the_cheap_readme_commands_run(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    ran = set()
    for words in readme_commands():
        key = tuple(w for w in words[:2] if not w.startswith("-")) or ("--help",)
        if key not in RUN:
            continue
        result = subprocess.run(
            [sys.executable, "-m", "subnet", *words],
            capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert result.returncode == 0, (words, result.stderr)
        ran.add(key)
    assert ran == RUN
    assert (tmp_path / "genesis.json").exists()
