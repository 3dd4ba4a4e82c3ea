"""A miner whose S3 store is down at start: it starts, says so once, reports itself unhealthy
on /healthz with the reason, and keeps retrying (no traceback, no exit)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def healthz(port: int) -> tuple[int, dict[str, object]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


def test_a_miner_with_its_s3_store_down_starts_unhealthy_and_retries(tmp_path: Path) -> None:
    subnet = [sys.executable, "-m", "subnet"]
    env = {**os.environ, "SUBNET_HUGE_PAGES": "0"}
    wallet = ["--wallet-path", str(tmp_path / "w")]
    subprocess.run(
        [*subnet, "wallet", "create", "--name", "miner", "--path", str(tmp_path / "w")],
        check=True, capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    dead, port = free_port(), free_port()
    miner = subprocess.Popen(
        [*subnet, "miner", "run", *wallet, "--backend", "s3", "--s3-endpoint",
         f"127.0.0.1:{dead}", "--port", str(port), "--data-dir", str(tmp_path / "m"),
         "--validators", HOTKEY, "--log-format", "json"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        seen = None
        while time.monotonic() < deadline and miner.poll() is None:
            seen = healthz(port)
            if seen is not None and "unreachable" in str(seen[1].get("store")):
                break
            time.sleep(0.3)
        assert miner.poll() is None, "the miner exited instead of retrying"
        assert seen is not None
        status, body = seen
        assert status == 503
        assert body["ok"] is False
        assert f"S3 at 127.0.0.1:{dead} unreachable" in str(body["store"])
    finally:
        miner.terminate()
        _, stderr = miner.communicate(timeout=30)
    assert "Traceback" not in stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    down = [e for e in lines if e["event"] == "the shard store is unreachable; retrying"]
    assert len(down) == 1  # once per change, not per retry
    assert not [e for e in lines if e["logger"].startswith("urllib3")]
