"""``subnet localnet`` end to end: real processes on loopback, driven through the real CLI.

``up --detach`` runs as its own process (as from a shell) and exits, leaving the services
running; ``status`` and ``down`` find them from the state file alone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from minio import Minio

from subnet.cli import main
from subnet.localnet import LocalNet, LocalNetConfig
from subnet.miner_cmd import run as miner_run
from tests.adversaries.__main__ import main as adversary

FAST = ["--miners", "4", "--validators", "1", "--block-time", "0.05", "--tempo", "10",
        "--capacity", "1GiB"]  # fmt: skip


def up_detached(root: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "subnet", "localnet", "up", "--dir", str(root), "--detach"]
    return subprocess.run([*args, *flags], check=False, capture_output=True, text=True, timeout=100)


def status(root: Path) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["localnet", "status", "--dir", str(root), "--json"])
    report: dict[str, Any] = json.loads(result.output)
    assert result.exit_code == (0 if report["healthy"] else 1)
    return report


def running(pid: int) -> bool:
    """Independent of the code under test: a PID that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_for_axons(root: Path) -> dict[str, Any]:
    """Until every miner is on the chain's metagraph with its axon (they register at start)."""
    deadline = time.monotonic() + 15
    while True:
        report = status(root)
        miners = [s for s in report["services"] if s["role"] == "miner"]
        if report["healthy"] and all(s["axon"] for s in miners):
            return report
        assert time.monotonic() < deadline, json.dumps(report, indent=2)
        time.sleep(0.2)


def test_up_status_down_then_up_again_with_the_same_wallets(tmp_path: Path) -> None:
    root = tmp_path / "net"
    try:
        started = up_detached(root, *FAST)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "subnet localnet down" in started.stdout
        assert "dashboards (open in a browser)" in started.stdout

        report = wait_for_axons(root)
        services = report["services"]
        assert [s["role"] for s in services] == ["chain"] + ["miner"] * 4 + ["validator"]
        miners = [s for s in services if s["role"] == "miner"]
        assert len({s["host"] for s in miners}) == 4  # one loopback address each
        chain_url = services[0]["url"]
        graph = CliRunner().invoke(main, ["metagraph", "--url", chain_url, "--json"])
        neurons = {n["hotkey"]: n for n in json.loads(graph.output)["neurons"]}
        for miner in miners:
            assert neurons[miner["hotkey"]]["axon"] == f"{miner['host']}:{miner['port']}"
            assert not neurons[miner["hotkey"]]["validator_permit"]  # no stake at genesis
        [validator] = [s for s in services if s["role"] == "validator"]
        # The validator announced its address too (it does so before it serves).
        assert neurons[validator["hotkey"]]["axon"] == f"{validator['host']}:{validator['port']}"

        refused = CliRunner().invoke(main, ["localnet", "up", "--dir", str(root), "--detach"])
        assert refused.exit_code == 1
        assert "already running" in refused.output
        assert "subnet localnet down" in refused.output

        pids = [s["pid"] for s in services]
        assert all(running(pid) for pid in pids)
        stopped = CliRunner().invoke(main, ["localnet", "down", "--dir", str(root)])
        assert stopped.exit_code == 0, stopped.output
        assert not [pid for pid in pids if running(pid)]
        assert not status(root)["running"]

        again = up_detached(root)  # no flags: the last run's settings
        assert again.returncode == 0, again.stdout + again.stderr
        second = wait_for_axons(root)["services"]
        assert [s["hotkey"] for s in second] == [s["hotkey"] for s in services]
        assert [s["url"] for s in second] == [s["url"] for s in services]  # ports were free
        assert not set(pids) & {s["pid"] for s in second}
    finally:
        LocalNet(root).down()
    assert not [s for s in LocalNet(root).services if s.pid is not None]


def all_five_healthy(report: dict[str, Any]) -> bool:
    # The state file grows as `up` starts each service: wait for the last one too.
    return bool(report["healthy"]) and len(report["services"]) == 5


def test_foreground_s3_net_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    root = tmp_path / "net"
    args = [sys.executable, "-m", "subnet", "localnet", "up", "--dir", str(root),
            "--backend", "s3", "--miners", "2", "--block-time", "0.05"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    try:
        deadline = time.monotonic() + 90
        # Ctrl-C is meant for the foreground loop: wait until `up` says it is there.
        while not any("Ctrl-C stops every service" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the local net did not come up"
            time.sleep(0.2)
        assert all_five_healthy(status(root))
        net = LocalNet(root)
        assert [s.role for s in net.services] == ["seaweedfs", "chain", "miner", "miner",
                                                  "validator"]  # fmt: skip
        assert len(net.miner_urls) == 2 and len(net.validator_urls) == 1
        assert net.user.ss58_address != net.keypair("validator0").ss58_address
        weed = net.service("seaweedfs")
        s3 = Minio(f"{weed.host}:{weed.port}", "localnet", "-", secure=False)
        assert s3.bucket_exists("localnet-miner0") and s3.bucket_exists("localnet-miner1")

        pids = [s.pid for s in net.services if s.pid is not None]
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does to the foreground `up`
        proc.wait(timeout=60)
        reader.join(timeout=10)
        output = "".join(lines)
        assert proc.returncode == 0, output
        assert "stopped 5 services" in output
        assert not [pid for pid in pids if running(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        LocalNet(root).down()


def test_a_miner_program_replaces_subnet_miner_run_and_gets_the_same_flags(tmp_path: Path) -> None:
    """``miner_programs`` swaps one miner's program and keeps its flags; the adversary parses
    every flag a local net gives a miner, as ``subnet miner run`` does (bench.incentives runs
    it end to end)."""
    program = [sys.executable, "-m", "tests.adversaries", "noserve"]
    net = LocalNet(tmp_path / "net", LocalNetConfig(miners=2), miner_programs={"miner1": program})
    args = [
        "miner", "run", "--wallet-name", "miner1", "--wallet-path", str(tmp_path / "wallets"),
        "--host", "127.0.0.3", "--port", "20001", "--data-dir", str(tmp_path / "m1"),
        "--capacity", "1GiB", "--chain-url", "http://127.0.0.1:20000",
        "--validators", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        "--metagraph-seconds", "1",
    ]  # fmt: skip
    flags = [*args[2:], "--log-format", "text"]
    assert net.miner_command("miner0", args) == [sys.executable, "-m", "subnet", *args,
                                                 "--log-format", "text"]  # fmt: skip
    assert net.miner_command("miner1", args) == [*program, *flags]
    miner_run.make_context("run", list(flags))  # parses, does not run
    adversary.make_context("tests.adversaries", ["noserve", *flags])
