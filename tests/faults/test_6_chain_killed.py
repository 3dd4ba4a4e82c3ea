"""Scenario 6: the chain SIGKILLed mid-epoch, three times, and restarted each time.

Blocks continue from where the chain was (each block is its own commit), every epoch whose
last block exists is closed exactly once, in order (a close cut by the kill is redone at
start: ``close_due_epochs``), and each epoch's credits sum exactly to its emission. Miners
and validators ride it out: they retry the chain and keep serving meanwhile.

Two of the kills are aimed at the moment an epoch's last block is produced, to try to land
between that block's commit and the epoch's close; the chain's log says whether a restart
had a missed epoch to close (``epoch closed on restart``). That window is milliseconds wide, so
it is reported, not required; tests/chain/test_crash.py covers it at a tighter pace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.faults.harness import Harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

KILLS = 3
AIM = 1.03  # blocks after we saw the one before an epoch's last: its commit, and a hair


async def test_chain_killed_mid_epoch(harness: Harness, http: aiohttp.ClientSession) -> None:
    chain = harness.net.chain_url
    tempo = harness.net.config.tempo
    block_time = harness.net.config.block_time
    closed_on_restart = 0
    for attempt in range(KILLS):
        log_offset = harness.log_size("chain")
        if attempt == 0:
            before = await _until(http, chain, lambda b: b % tempo == tempo // 2)  # mid-epoch
        else:
            # Aim just after an epoch's last block is committed, before its close is.
            before = await _until(http, chain, lambda b: b % tempo == tempo - 1)
            await asyncio.sleep(block_time * AIM)
        harness.kill("chain")
        await asyncio.sleep(1.0)  # the net runs a moment without its chain
        await harness.restart("chain")
        after = await _block(http, chain)
        assert after >= before, f"the chain went back from block {before} to {after}"
        closed_on_restart += harness.log_since("chain", log_offset).count("epoch closed on restart")
        started = time.monotonic()
        while await _block(http, chain) <= after:  # blocks continue
            assert time.monotonic() - started < 10, "no block after the restart"
            await asyncio.sleep(block_time)
        await harness.check_ledger(http)
    harness.totals.notes["chain restarts that closed a missed epoch"] = closed_on_restart

    # The validator rides it out: it sets weights again on the restarted chain. (validator1
    # holds nothing yet, so has nothing verified to weigh.)
    validator = harness.hotkey("validator0")

    async def weights_again() -> bool:
        graph = await _get(http, f"{chain}/v1/metagraph")
        updated = [n["last_update"] for n in graph["neurons"] if n["hotkey"] == validator]
        return bool(updated) and updated[0] is not None and updated[0] > after

    await harness.wait_until("validator0's weights on the restarted chain", weights_again)
    await harness.check_all(http)


async def _get(http: aiohttp.ClientSession, url: str, **query: str) -> dict[str, Any]:
    async with http.get(url, params=query or None) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def _until(http: aiohttp.ClientSession, chain: str, wanted: Callable[[int], bool]) -> int:
    """Poll the height quickly until ``wanted`` holds for a newly seen block."""
    last = await _block(http, chain)
    while True:
        await asyncio.sleep(0.002)
        block = await _block(http, chain)
        if block != last and wanted(block):
            return block
        last = block


async def _block(http: aiohttp.ClientSession, chain: str) -> int:
    async with http.get(f"{chain}/v1/block") as response:
        assert response.status == 200
        return int((await response.json())["block"])
