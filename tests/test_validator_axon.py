"""The validator announces its own address on the metagraph, as a miner announces its axon:
a chain process, a validator process with --chain-url and --external-host/--external-port,
and the metagraph read through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from protocol.wallet import create_wallet
from subnet.processes import free_port, running, start_subnet_command, wait_healthy
from tests.chain.test_crash import chain_process


def test_the_validator_is_on_the_metagraph_at_its_announced_address(tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    validator = create_wallet("v", "default", wallets).ss58_address
    owner = create_wallet("owner", "default", wallets).ss58_address
    genesis = tmp_path / "genesis.json"
    made = subprocess.run(
        [sys.executable, "-m", "subnet", "chain", "genesis", "--out", str(genesis),
         "--owner", owner, "--stake", f"{validator}=1000", "--tempo", "10"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with chain_process(genesis, tmp_path / "chain", free_port()) as (url, _chain):
        port = free_port()
        log = tmp_path / "validator.log"
        argv = [
            "validator", "run", "--wallet-name", "v", "--wallet-path", str(wallets),
            "--port", str(port), "--data-dir", str(tmp_path / "v"), "--chain-url", url,
            "--external-host", "127.0.0.77", "--external-port", "18090",
            "--metagraph-seconds", "0.5", "--log-format", "json",
        ]  # fmt: skip
        env = {**os.environ, "HOME": str(tmp_path)}
        with running(start_subnet_command(argv, log, env)) as proc:
            wait_healthy(f"http://127.0.0.1:{port}", proc, log)
            deadline = time.monotonic() + 30
            while True:
                shown = subprocess.run(
                    [sys.executable, "-m", "subnet", "metagraph", "--url", url, "--json"],
                    capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                neurons = {n["hotkey"]: n for n in json.loads(shown.stdout)["neurons"]}
                me = neurons.get(validator)
                if me is not None and me["axon"] is not None:
                    break
                assert time.monotonic() < deadline, shown.stdout
                time.sleep(0.3)
            assert me["axon"] == "127.0.0.77:18090"
            assert me["validator_permit"] is True
        announced = [
            json.loads(line) for line in log.read_text().splitlines()
            if "announced the validator's address" in line
        ]  # fmt: skip
        assert [a["axon"] for a in announced] == ["127.0.0.77:18090"]  # once, not per read
