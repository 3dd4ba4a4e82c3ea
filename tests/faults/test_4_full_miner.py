"""Scenario 4: a miner full to capacity while a validator uploads.

Another validator (validator1, through the miner's real API) fills the miner: it starts
shard uploads as big as all the miner's free space and holds them open, so the miner
reserves that space and refuses everything else with 507. A validator learns each miner's
free space every couple of seconds, so until its next look validator0 still places shards
there: each is refused (507) and goes to a replacement miner. Every upload commits, and the
full miner stays healthy: what it holds keeps passing its challenges. The fill is released
and taken again a few times, until refusals are seen; the held uploads leave nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from protocol.signing import SigningClient
from subnet.localnet import Service
from tests.faults.harness import Harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SHARDS = "/v1/shards/{shard_id}"
MAX_SHARD = 256 * 2**20  # a miner's default max_shard_size: one held upload at most this
LEFT = 16 * 1024  # free space left over: less than any shard validator0 sends
OBJECT = 200_000  # bytes per object uploaded meanwhile (shards of ~100 kB)
CYCLES = 6


class Filler:
    """validator1's shard uploads to ``miner``, each sending one byte and then waiting: the
    miner reserves their full Content-Length until they are cut."""

    def __init__(self, harness: Harness, http: aiohttp.ClientSession, miner: Service) -> None:
        self.harness = harness
        self.signer = SigningClient(http, harness.net.keypair("validator1"))
        self.http = http
        self.miner = miner
        self.held: list[asyncio.Task[int]] = []
        self.refused = 0  # our own uploads the miner refused (507): not validator0's

    async def free(self) -> int:
        async with self.http.get(f"{self.miner.url}/v1/info") as response:
            return int((await response.json())["free"])

    async def fill(self) -> bool:
        """Hold uploads for all but ``LEFT`` of the free space; False if the miner refused
        one (validator0 stored a shard meanwhile: try again)."""
        release = asyncio.Event()
        self.release = release
        wanted = await self.free() - LEFT
        while wanted > 0:
            size = min(wanted, MAX_SHARD)
            self.held.append(asyncio.create_task(self._hold(size, release)))
            wanted -= size
        deadline = time.monotonic() + 10
        while await self.free() > LEFT:
            done = [t for t in self.held if t.done()]
            if done:  # refused at once
                self.refused += sum(t.result() == 507 for t in done)
                await self.empty()
                return False
            assert time.monotonic() < deadline, "the held uploads were not reserved"
            await asyncio.sleep(0.05)
        return True

    async def _hold(self, size: int, release: asyncio.Event) -> int:
        shard_id = secrets.token_hex(32)  # never checked: the body never ends

        async def body() -> AsyncIterator[bytes]:
            yield b"\0"
            await release.wait()

        async with self.signer.request_stream(
            "PUT",
            f"{self.miner.url}/v1/shards/{shard_id}?leaf_size=16384",
            signed_for=self.miner.hotkey or "",
            content_hash=shard_id,
            body=body(),
            headers={"Content-Length": str(size)},
        ) as response:
            return response.status

    async def empty(self) -> None:
        """Cut the held uploads; the miner drops what they staged and frees their space."""
        for task in self.held:
            task.cancel()
        for task in self.held:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task
        self.held.clear()


async def test_uploads_commit_past_a_full_miner(
    harness: Harness, http: aiohttp.ClientSession
) -> None:
    victim = harness.miners[5]
    hotkey = harness.hotkey(victim)
    service = harness.net.service(victim)
    after = await harness.log_head(http, "validator0")
    began = time.time()
    filler = Filler(harness, http, service)
    stop = asyncio.Event()
    uploads = 0

    async def upload_meanwhile() -> None:
        nonlocal uploads
        while not stop.is_set():
            path, sha256 = harness.make_file(OBJECT, "past-a-full-miner")
            uploads += 1
            await harness.upload(http, "validator0", f"full-miner/{uploads}.bin", path, sha256)

    refused_before = (await harness.requests(http, victim, SHARDS, "PUT"))["507"]
    uploading = asyncio.create_task(upload_meanwhile())
    refused = fills = 0
    try:
        for _ in range(CYCLES):
            if not await filler.fill():
                continue
            fills += 1
            harness.fault("miner full")
            # validator0 still thinks there is room until its next look (~2 s).
            await asyncio.sleep(3)
            assert not uploading.done(), uploading
            await filler.empty()
            statuses = await harness.requests(http, victim, SHARDS, "PUT")
            refused = statuses["507"] - refused_before - filler.refused
            if refused > 0:
                break
            await asyncio.sleep(2.5)  # let validator0 see the room again
    finally:
        stop.set()
        await filler.empty()
        await uploading  # every upload committed, or this raises
    harness.totals.notes["full miner"] = {
        "fills": fills,
        "uploads meanwhile (all committed)": uploads,
        "shards it refused (507)": refused,
    }
    assert refused > 0, "validator0 never offered the full miner a shard"

    # The held uploads left nothing behind, and the miner is healthy and keeps passing.
    incoming = harness.net.root / "miners" / victim / "incoming"

    async def nothing_staged() -> bool:
        return not list(incoming.iterdir())

    await harness.wait_until(f"{victim}'s incoming/ to be empty", nothing_staged, 10)
    assert await filler.free() > LEFT

    async def challenged() -> bool:
        entries = await harness.log(http, "validator0", after=after, miner=hotkey)
        return any(e["issued_at"] > began and e["verdict"] == "pass" for e in entries)

    await harness.wait_until(f"{victim} challenged while full", challenged)
    entries = await harness.log(http, "validator0", after=after, miner=hotkey)
    # (A timeout is possible on a busy machine and only means a recheck; not these.)
    failed = [e for e in entries if e["verdict"] in {"wrong", "missing"}]
    assert not failed, failed[:3]
    await harness.check_all(http)
