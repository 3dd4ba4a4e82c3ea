"""Scenario 2: a miner hangs (SIGSTOP) through reads and a challenge round, then resumes.

Downloads do not wait for it: after 0.5 s without an answer the validator asks two more
miners (hedging). Its challenges time out, which only puts its placements in containment;
once continued (well within the rechecks containment allows) it answers again, and nothing
it held is given up or repaired away. The validator's own calls to it give up after
MinerClient's timeout instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from erasure.merkle import root_of
from protocol.signing import SigningClient
from tests.faults.harness import Harness
from validator.miner_client import MinerAddress, MinerClient, MinerError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LEAF = 16 * 1024


async def test_a_hung_miner_is_contained_then_recovers(
    harness: Harness, http: aiohttp.ClientSession
) -> None:
    victim = harness.miners[1]
    hotkey = harness.hotkey(victim)
    service = harness.net.service(victim)
    after = await harness.log_head(http, "validator0")
    client = MinerClient(SigningClient(http, harness.net.keypair("validator0")), timeout=1)
    address = MinerAddress(hotkey, service.host, service.port)
    data = os.urandom(4 * LEAF)
    shard_id = root_of(data, LEAF).hex()
    challenge = {"shard_id": shard_id, "nonce": "00" * 16, "indices": [0]}
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "info": lambda: client.info(address),
        "put_shard": lambda: client.put_shard(address, shard_id, [data], len(data), LEAF),
        "get_shard": lambda: client.get_shard(address, shard_id),
        "challenge": lambda: client.challenge(address, [challenge], LEAF + 1024),
        "delete_shard": lambda: client.delete_shard(address, shard_id),
    }

    async def read_everything() -> None:
        """Every object, byte-identical, through hedged requests."""
        started = time.monotonic()
        await harness.check_objects(http)
        harness.totals.notes["reading every object with a hung miner, s"] = round(
            time.monotonic() - started, 1
        )

    async def calls_time_out(what: str, call: Callable[[], Awaitable[object]]) -> None:
        """A validator's calls to a hung miner end with MinerClient's timeout."""
        started = time.monotonic()
        with pytest.raises(MinerError) as caught:
            await call()
        assert "timeout" in str(caught.value), (what, caught.value)
        assert time.monotonic() - started < 5, what

    async def timed_out() -> bool:
        entries = await harness.log(http, "validator0", after=after, miner=hotkey)
        return any(e["verdict"] == "timeout" for e in entries)

    # All at once, so the miner hangs for about one challenge round: well within the
    # containment rechecks, after which its shards would count as lost.
    stopped_at = time.time()
    harness.signal(signal.SIGSTOP, victim)
    try:
        await asyncio.gather(
            read_everything(),
            *(calls_time_out(what, call) for what, call in calls.items()),
            harness.wait_until(f"{victim}'s challenges to time out", timed_out),
        )
    finally:
        harness.resume(victim)
    resumed_at = time.time()
    harness.totals.notes["miner hung for, s"] = round(resumed_at - stopped_at, 1)

    # It recovers: fresh challenges and the containment rechecks (full retrievals) pass.
    async def recovered() -> bool:
        entries = await harness.log(http, "validator0", after=after, miner=hotkey)
        fresh = [e for e in entries if e["issued_at"] > resumed_at]
        kinds = {e["kind"] for e in fresh if e["verdict"] == "pass"}
        return {"merkle", "retrieval"} <= kinds

    await harness.wait_until(f"{victim}'s challenges to pass again", recovered)
    # A hung miner is slow, not wrong: no answer of it was wrong or missing, then or since.
    entries = await harness.log(http, "validator0", after=after, miner=hotkey)
    wrong = [e for e in entries if e["verdict"] in {"wrong", "missing"}]
    assert not wrong, wrong[:3]
    # Nothing it held was given up: no repair names it as where a share was lost.
    repairs = await harness.log(http, "validator0", after=after, kind="repair")
    assert not [e for e in repairs if hotkey in e["reason"]], repairs[:3]
    await harness.check_all(http)


async def test_an_upload_does_not_wait_out_a_hung_miner(
    harness: Harness, http: aiohttp.ClientSession
) -> None:
    """A push to a hung miner is given up after its size's push deadline (~10 s for small
    shards) and the shard goes to a spare miner, not after MinerClient's 60 s."""
    victim = harness.miners[2]
    # One-segment objects, one at a time, until one of them asked the victim (each picks 4
    # of the 6 miners, so that is nearly always the first or second).
    harness.signal(signal.SIGSTOP, victim)
    try:
        for _ in range(10):
            path, digest = harness.make_file(64 * 1024, "during-hang")
            offset = harness.log_size("validator0")
            started = time.monotonic()
            await harness.upload(http, "validator0", f"during-hang/{path.name}", path, digest)
            took = time.monotonic() - started
            # Only the victim is hung, so any push given up now was to the victim.
            if "shard push failed" in harness.log_since("validator0", offset):
                break
        else:
            pytest.fail(f"ten uploads in a row never asked {victim} for a shard")
    finally:
        harness.resume(victim)
    harness.totals.notes["an upload that asked a hung miner, s"] = round(took, 1)
    assert took < 30, f"an upload waited {took:.1f} s on a hung miner"
    await harness.check_all(http)
