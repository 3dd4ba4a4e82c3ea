"""The ``subnet`` command as a user runs it: a real process, real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SUBNET = [sys.executable, "-m", "subnet"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUBNET, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_help_names_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    commands = result.stdout.split("Commands:")[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert {"demo", "wallet"} <= listed


def test_miner_run_explains_bad_settings_and_missing_wallets(tmp_path: Path) -> None:
    bad = run("miner", "run", "--capacity", "lots", "--wallet-path", str(tmp_path))
    assert bad.returncode == 2
    assert "capacity (from --capacity)" in bad.stderr
    missing = run("miner", "run", "--wallet-name", "nobody", "--wallet-path", str(tmp_path),
                  "--validators", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")  # fmt: skip
    assert missing.returncode == 1
    assert "subnet wallet create" in missing.stderr
    for result in (bad, missing):
        assert "Traceback" not in result.stderr


def test_a_service_takes_one_chain_and_says_so(tmp_path: Path) -> None:
    half = run("validator", "run", "--network", "test", "--wallet-path", str(tmp_path))
    assert half.returncode == 2
    assert "--network test needs --netuid" in half.stderr
    both = run(
        "miner", "run", "--chain-url", "http://127.0.0.1:9944", "--network", "test",
        "--netuid", "3", "--external-host", "203.0.113.7", "--wallet-path", str(tmp_path),
    )  # fmt: skip
    assert both.returncode == 2
    assert "not both" in both.stderr
    for result in (half, both):
        assert "Traceback" not in result.stderr


def test_upload_and_download_help_say_where_keys_live_and_what_a_rerun_does() -> None:
    upload = run("upload", "--help")
    assert upload.returncode == 0
    text = " ".join(upload.stdout.split())
    promises = ("--overwrite", "--seal", "~/.subnet/capabilities", "back that folder up",
                "Re-running an interrupted upload finishes it", "exit status is 1")  # fmt: skip
    for promise in promises:
        assert promise in text, promise
    download = run("download", "--help")
    text = " ".join(download.stdout.split())
    for promise in ("--capability", "~/.subnet/capabilities", "back that folder up"):
        assert promise in text, promise
