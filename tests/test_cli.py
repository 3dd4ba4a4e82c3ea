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


def test_demo_round_trip_restores_every_file(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    result = run(
        "demo", "--dir", str(work), "--size-mib", "3", "--segment-kib", "256",
        "-k", "3", "-m", "7", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    files = report["files"]
    assert len(files) == 8
    assert {f["size"] for f in files} >= {0, 1, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1}
    for f in files:
        assert f["sha256_in"] == f["sha256_out"]
        assert f["shards_deleted"] == f["segments"] * (7 - 3)
        assert f["capability"].startswith("URI:SN-CHK:")
        restored = work / "restored" / f["name"]
        assert restored.stat().st_size == f["size"]
    # Only k shards per segment are left on disk, and each is named by its Merkle root.
    shard_files = [p for p in (work / "shards").rglob("*") if p.is_file() and not p.suffix]
    assert len(shard_files) == sum(f["segments"] for f in files) * 3


def test_demo_rejects_impossible_parameters(tmp_path: Path) -> None:
    result = run("demo", "--dir", str(tmp_path / "d"), "-k", "9", "-m", "8")
    assert result.returncode == 2
    assert "k <= m" in result.stderr
    assert "Traceback" not in result.stderr


def test_miner_run_explains_bad_settings_and_missing_wallets(tmp_path: Path) -> None:
    bad = run("miner", "run", "--capacity", "lots", "--wallet-path", str(tmp_path))
    assert bad.returncode == 2
    assert "capacity (from --capacity)" in bad.stderr
    missing = run("miner", "run", "--wallet-name", "nobody", "--wallet-path", str(tmp_path))
    assert missing.returncode == 1
    assert "subnet wallet create" in missing.stderr
    for result in (bad, missing):
        assert "Traceback" not in result.stderr
