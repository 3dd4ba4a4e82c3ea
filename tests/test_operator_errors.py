"""An operator's mistakes, made with the real command: one line naming the setting, where it
came from and the fix; exit status 2; no traceback; nothing started (no database made)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from erasure import ErasureParams
from validator.budget import LEAST_DEPTH, upload_window

SUBNET = [sys.executable, "-m", "subnet"]
HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUBNET, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "SUBNET_HUGE_PAGES": "0", **(env or {})},
    )


def one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_port_in_use_is_one_line_for_every_service(tmp_path: Path, busy_port: int) -> None:
    port = str(busy_port)
    for service, extra in (
        ("chain", []),
        ("miner", ["--validators", HOTKEY, "--wallet-path", str(tmp_path)]),
        ("validator", ["--wallet-path", str(tmp_path)]),
    ):
        args = [service, "run", "--port", port, "--data-dir", str(tmp_path / service), *extra]
        one_clear_line(run(*args), f"port {port}", "already in use", "--port")
        assert not (tmp_path / service).exists()  # checked before anything was made


def test_bad_lists_are_refused_before_the_database_is_made(tmp_path: Path) -> None:
    data = tmp_path / "v"
    base = ["validator", "run", "--data-dir", str(data), "--wallet-path", str(tmp_path)]
    one_clear_line(run(*base, "--miners", "foo"), "miners (from --miners)", "ss58hotkey@host:port")
    one_clear_line(
        run(*base, env={"SUBNET_VALIDATOR_USERS": "alice"}),
        "users (from $SUBNET_VALIDATOR_USERS)",
        "name=ss58hotkey",
    )
    config = tmp_path / "v.toml"
    config.write_text('users = ["alice=notakey"]\n')
    one_clear_line(run(*base, "--config", str(config)), f"users (from {config})", "ss58")
    one_clear_line(run(*base, "--k", "6", "--m", "4"), "m (from --m)", "1 <= k <= m")
    # A transfer budget that could not hold one upload's least window names the least.
    params = ErasureParams(k=4, m=8, segment_size=16 * 2**20)
    least = upload_window(params, LEAST_DEPTH, size=None, presealed=False, seals=True)
    one_clear_line(
        run(*base, "--transfer-memory", "64MiB"),
        "transfer_memory (from --transfer-memory)",
        f"at least {least // 2**20}MiB",
        "4-of-8 with 16MiB segments",
    )
    assert not data.exists()


def test_genesis_refuses_what_is_not_a_hotkey(tmp_path: Path) -> None:
    out = tmp_path / "genesis.json"
    one_clear_line(
        run("chain", "genesis", "--out", str(out), "--owner", "notanaddress"),
        "--owner",
        "not an ss58 hotkey",
    )
    one_clear_line(
        run("chain", "genesis", "--out", str(out), "--owner", HOTKEY, "--stake", "foo=1000"),
        "--stake foo=1000",
        "not an ss58 hotkey",
    )
    assert not out.exists()


def test_a_miner_that_would_serve_nobody_is_refused(tmp_path: Path) -> None:
    one_clear_line(
        run("miner", "run", "--wallet-path", str(tmp_path)), "--chain-url", "--validators"
    )


def test_a_validator_on_a_chain_needs_an_address_to_announce(tmp_path: Path) -> None:
    # As a miner: listening everywhere is no address to put on the metagraph.
    one_clear_line(
        run(
            "validator", "run", "--wallet-path", str(tmp_path), "--data-dir",
            str(tmp_path / "v"), "--chain-url", "http://127.0.0.1:9944", "--host", "0.0.0.0",
        ),
        "--external-host",
    )  # fmt: skip
    one_clear_line(
        run(
            "validator", "run", "--wallet-path", str(tmp_path), "--data-dir",
            str(tmp_path / "v"), "--chain-url", "http://127.0.0.1:9944",
            "--external-port", "70000",
        ),
        "external_port", "70000",
    )  # fmt: skip
    assert not (tmp_path / "v").exists()  # refused before anything was made
