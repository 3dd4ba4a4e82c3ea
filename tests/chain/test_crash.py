"""A chain SIGKILLed while it produces blocks and closes epochs credits every epoch exactly
once after a restart. Real processes: ``python -m subnet chain run``, killed and restarted;
the genesis file, metagraph and rewards go through the real CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from bittensor_wallet import Keypair
from click.testing import CliRunner

from chain.client import ChainClient
from chain.emission import RAO_PER_TAO
from subnet.cli import main
from tests.seaweedfs import free_port

TEMPO = 5


@contextmanager
def chain_process(
    genesis: Path, data_dir: Path, port: int
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    args = [
        sys.executable, "-m", "subnet", "chain", "run", "--genesis", str(genesis),
        "--data-dir", str(data_dir), "--port", str(port), "--block-interval", "0.01",
    ]  # fmt: skip
    log = (data_dir.parent / f"chain-{port}-{time.monotonic_ns()}.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chain did not start; see {log.name}") from None
                time.sleep(0.05)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for_epochs(url: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(get(f"{url}/v1/epochs")["epochs"]) < count:
        assert time.monotonic() < deadline, "the chain stopped closing epochs"
        time.sleep(0.02)


async def join(url: str, validator: Keypair, miners: list[Keypair]) -> None:
    async with aiohttp.ClientSession() as session:
        v = ChainClient(url, validator, session)
        await v.register()
        uids = [await ChainClient(url, m, session).register() for m in miners]
        await v.set_weights(uids, [1.0 + i for i in range(len(uids))], 0, {uids[0]: (2**30, 1.0)})


def test_sigkill_mid_run_then_restart_credits_each_epoch_once(tmp_path: Path) -> None:
    owner, validator = Keypair.create_from_uri("//Owner"), Keypair.create_from_uri("//Alice")
    miners = [Keypair.create_from_uri(f"//Miner{i}") for i in range(3)]
    genesis = tmp_path / "genesis.json"
    runner = CliRunner()
    made = runner.invoke(
        main,
        [
            "chain", "genesis", "--out", str(genesis), "--owner", owner.ss58_address,
            "--stake", f"{validator.ss58_address}=1000", "--tempo", str(TEMPO),
        ],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    data_dir = tmp_path / "chain"

    with chain_process(genesis, data_dir, free_port()) as (url, proc):
        asyncio.run(join(url, validator, miners))
        wait_for_epochs(url, 3)
        time.sleep(0.037)  # land the kill at an arbitrary point of a block
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    with chain_process(genesis, data_dir, free_port()) as (url, proc):
        wait_for_epochs(url, 8)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert proc.returncode == 0

    with chain_process(genesis, data_dir, free_port()) as (url, _proc):
        epochs = sorted(get(f"{url}/v1/epochs?limit=1000")["epochs"], key=lambda e: e["number"])
        credits = get(f"{url}/v1/ledger")["credits"]
        block = get(f"{url}/v1/block")
        numbers = [e["number"] for e in epochs]
        assert numbers == list(range(1, len(numbers) + 1))  # none missing, none twice
        for epoch in epochs:
            assert epoch["emission"] == TEMPO * RAO_PER_TAO
            assert (
                sum(c["amount"] for c in credits if c["epoch"] == epoch["number"])
                == (epoch["emission"])
            )
        assert block["issuance"] >= len(numbers) * TEMPO * RAO_PER_TAO

        last = str(numbers[-1])  # early epochs may close before the weights are set
        shown = runner.invoke(main, ["rewards", "--url", url, "--epoch", last, "--json"])
        assert shown.exit_code == 0, shown.output
        report = json.loads(shown.output)
        assert report["totals_per_era"] == {"0": TEMPO * RAO_PER_TAO}
        top_miner = next(c for c in report["credits"] if c["hotkey"] == miners[0].ss58_address)
        assert (top_miner["capacity_bytes"], top_miner["availability"]) == (2**30, 1.0)
        recent = runner.invoke(main, ["rewards", "--url", url, "--last", "2", "--json"])
        assert recent.exit_code == 0, recent.output
        shown_epochs = sorted({c["epoch"] for c in json.loads(recent.output)["credits"]})
        # The chain runs on meanwhile: the newest two when the command asked.
        assert len(shown_epochs) == 2 and shown_epochs[1] == shown_epochs[0] + 1
        assert shown_epochs[0] >= numbers[-2]
        both = runner.invoke(main, ["rewards", "--url", url, "--last", "2", "--epoch", last])
        assert both.exit_code == 2 and "not both" in both.output
        table = runner.invoke(main, ["rewards", "--url", url, "--hotkey", owner.ss58_address])
        assert table.exit_code == 0, table.output
        assert "credited τ" in table.output
        graph = runner.invoke(main, ["metagraph", "--url", url, "--json"])
        assert graph.exit_code == 0, graph.output
        hotkeys = [n["hotkey"] for n in json.loads(graph.output)["neurons"]]
        assert hotkeys == [validator.ss58_address] + [m.ss58_address for m in miners]
        assert "Metagraph at block" in runner.invoke(main, ["metagraph", "--url", url]).output
