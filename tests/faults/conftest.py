"""One local net of real processes for every fault scenario in this folder (issue 7).

6 miners, 2 validators (k=2, m=4 with one extra receipt: a segment survives m - k = 2 lost
miners), a chain of 0.1 s blocks and 2 s epochs. The validators challenge and repair every
2 s, 8 shards per miner a round, so faults are seen within seconds. validator1 keeps its
database in a scratch PostgreSQL database when one is reachable (scenario 7).

The totals (faults injected, objects lost, time per scenario) are printed at the end of the
run and written to ``faults.json`` in pytest's base temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiohttp
import pytest

from subnet.dataset import generate
from subnet.localnet import LocalNet, LocalNetConfig
from tests.db import postgres_database, postgres_error
from tests.faults.harness import Harness, MiB

T = TypeVar("T")
NET = LocalNetConfig(miners=6, validators=2, block_time=0.1, tempo=20, capacity="256MiB")
VALIDATOR_FLAGS = [
    "--challenge-seconds", "2", "--repair-seconds", "2", "--challenge-batch", "8",
]  # fmt: skip
DATASET_BYTES, DATASET_FILES = 10 * MiB, 10
REPORT: dict[str, Any] = {}  # what the last harness wrote, for the terminal summary


def run_async(job: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from a synchronous fixture, on its own loop in its own thread."""

    async def main() -> T:
        return await job()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def seed(harness: Harness) -> None:
    """The dataset every scenario must keep: 10 files of 0 B to a few MiB, on validator0."""
    folder = harness.work / "dataset"
    files = await asyncio.to_thread(generate, folder, DATASET_BYTES, DATASET_FILES, 7)
    async with aiohttp.ClientSession() as http:
        for file in files:
            await harness.upload(
                http, "validator0", f"dataset/{file.path}", folder / file.path, file.sha256
            )


@pytest.fixture(scope="package")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    work = tmp_path_factory.mktemp("faults")
    with contextlib.ExitStack() as stack:
        pg_url = None
        if postgres_error() is None:  # scenario 7 skips (or fails under CI=true) without it
            pg_url = stack.enter_context(postgres_database())
        database = ["--database-url", pg_url] if pg_url else []
        net = LocalNet(
            work / "net",
            NET,
            service_args={
                "validator0": VALIDATOR_FLAGS,
                "validator1": [*VALIDATOR_FLAGS, *database],
            },
        )
        stack.callback(net.down)
        started = time.monotonic()
        net.up()
        up = time.monotonic() - started
        harness = Harness(net, work, pg_url)
        run_async(lambda: seed(harness))
        harness.totals.notes |= {
            "net": f"{NET.miners} miners, {NET.validators} validators, k-of-m "
            f"{NET.erasure[0]}-of-{NET.erasure[1]}, {NET.block_time} s blocks, tempo {NET.tempo}",
            "up_seconds": round(up, 1),
            "setup_seconds": round(time.monotonic() - started, 1),
        }
        yield harness
        REPORT.clear()
        REPORT.update(harness.write(tmp_path_factory.getbasetemp() / "faults.json"))
        REPORT["file"] = str(tmp_path_factory.getbasetemp() / "faults.json")


@pytest.fixture(autouse=True)
async def scenario(request: pytest.FixtureRequest, harness: Harness) -> AsyncIterator[None]:
    """Heal the net first (a failed scenario must not break the next), then time it."""
    await harness.heal()
    faults = sum(harness.totals.faults.values())
    started = time.monotonic()
    yield
    harness.totals.scenarios[request.node.name] = {
        "seconds": round(time.monotonic() - started, 1),
        "faults": sum(harness.totals.faults.values()) - faults,
    }


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    terminalreporter.write_sep("-", "fault suite totals")
    summary = {k: REPORT[k] for k in ("faults_injected", "objects_lost", "downloads_verified")}
    terminalreporter.write_line(json.dumps(summary) + f"  (details: {REPORT['file']})")
    for name, figures in REPORT["scenarios"].items():
        terminalreporter.write_line(f"  {name}: {figures['seconds']} s, {figures['faults']} faults")
    terminalreporter.write_line(f"  faults by kind: {json.dumps(REPORT['faults'])}")
