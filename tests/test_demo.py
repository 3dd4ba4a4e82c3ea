"""``subnet demo --quick``: the whole story as processes, checked from its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_tells_the_whole_story(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "subnet", "demo", "--quick", "--dir", str(work), "--json"],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env={**os.environ, "HOME": str(tmp_path / "home"), "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["services"] == 11  # chain, 8 miners, 2 validators
    detected = report["detected"]
    # The killed miner missed deadlines, the corrupt shard answered wrong (or the miner's
    # scrubber found it first: then it is missing), and both were rebuilt elsewhere.
    assert detected["killed"]["verdict"] == "timeout"
    assert detected["corrupt"]["verdict"] in {"wrong", "missing"}
    assert detected["corrupt"]["miner"] == report["corrupted"]["miner"]
    assert detected["killed_repaired"]["verdict"] == "repaired"
    assert detected["corrupt_repaired"]["miner"] != report["corrupted"]["miner"]
    assert report["halving_epoch"] is not None
    miners = {name: eras for name, eras in report["eras"].items() if name.startswith("miner")}
    assert len(miners) == 8
    assert all("1" in eras for eras in miners.values())  # paid after the halving too
    assert report["verified_files"] > 0
    # Nothing is left running.
    assert [pid for pid, line in processes() if str(work) in line] == []


def processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found.append((int(entry.name), line))
    return found
