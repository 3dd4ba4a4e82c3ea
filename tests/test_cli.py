"""The ``subnet`` command as a user runs it: a real process, real files."""

from __future__ import annotations

import json
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
    missing = run("miner", "run", "--wallet-name", "nobody", "--wallet-path", str(tmp_path))
    assert missing.returncode == 1
    assert "subnet wallet create" in missing.stderr
    for result in (bad, missing):
        assert "Traceback" not in result.stderr


def test_durability_prints_the_table_and_json() -> None:
    table = run("durability", "--k", "4", "--m", "8", "--churn", "5%/day")
    assert table.returncode == 0, table.stderr
    assert "4-of-8, churn 5%/day" in table.stdout
    assert "segment nines" in table.stdout
    as_json = run("durability", "--k", "10", "--m", "16", "--churn", "5%/day", "--json")
    figures = json.loads(as_json.stdout)
    assert (figures["k"], figures["m"], figures["repair_threshold"]) == (10, 16, 6)
    assert figures["object_nines"] < figures["segment_nines"]
    bad = run("durability", "--churn", "lots")
    assert bad.returncode == 2
    assert "5%/day" in bad.stderr
    assert "Traceback" not in bad.stderr
