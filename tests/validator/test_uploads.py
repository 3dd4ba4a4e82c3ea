"""Uploads through the pipeline to eight real miner servers on distinct loopback hosts."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from erasure import Capability, ErasureParams, Manifest, decode_segment_shares
from tests.validator.conftest import DatabaseOutage, LiveMiner
from validator import uploads
from validator.budget import (
    BODY_QUEUE,
    LEAST_DEPTH,
    Depth,
    TransferBudget,
    download_charge,
    upload_window,
)
from validator.miner_client import MinerAddress, MinerClient, MinerError
from validator.models import Placement, RepairItem, Shard, StoredObject
from validator.placement import Candidate
from validator.uploads import Uploader, UploadError, UploadOptions

PARAMS = ErasureParams(k=4, m=8, segment_size=256 * 1024, leaf_size=4096)


async def stream(data: bytes, chunk: int = 50_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


def uploader(
    sessions: sessionmaker[Session], client: MinerClient, miners: list[LiveMiner]
) -> Uploader:
    return Uploader(sessions, client, lambda: [m.candidate for m in miners], rng=random.Random(1))


async def test_upload_commits_with_every_shard_on_a_distinct_host(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    data = random.Random(2).randbytes(700_001)
    result = await uploader(sessions, miner_client, live_miners).upload(
        seeded, "data/a.bin", stream(data), UploadOptions(PARAMS)
    )
    assert (result.size, result.segments, result.queued_for_repair) == (700_001, 3, 0)
    with sessions() as session:
        row = session.get(StoredObject, result.object_id)
        assert row is not None
        assert row.state == "committed"
        assert row.key is None  # the key stays with the user unless asked
        manifest = Manifest.from_json(row.manifest_json or "")
        for segment in row.segments:
            hosts = [p.miner.host for s in segment.shards for p in s.placements]
            assert len(hosts) == 8
            assert len(set(hosts)) == 8
    cap = Capability.parse(result.capability)
    assert cap.verifier == manifest.verifier_hash()
    # Read it back from the miners: any 4 shares of each segment.
    by_host = {m.candidate.host: m for m in live_miners}
    out = b""
    with sessions() as session:
        row = session.get(StoredObject, result.object_id)
        assert row is not None
        for index, segment in enumerate(sorted(row.segments, key=lambda s: s.index)):
            shares = {}
            for shard in sorted(segment.shards, key=lambda s: s.share)[4:]:
                miner = by_host[shard.placements[0].miner.host].candidate
                address = MinerAddress(miner.hotkey, miner.host, miner.port)
                shares[shard.share] = await miner_client.get_shard(address, shard.shard_id)
            out += decode_segment_shares(manifest, index, shares, cap.key)
    assert out == data


async def test_same_name_twice_is_refused_without_duplicating(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    up = uploader(sessions, miner_client, live_miners)
    await up.upload(seeded, "x", stream(b"hello"), UploadOptions(PARAMS))
    with pytest.raises(UploadError) as caught:
        await up.upload(seeded, "x", stream(b"hello"), UploadOptions(PARAMS))
    assert caught.value.code == "already_exists"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoredObject)) == 1


async def test_too_few_miners_fails_cleanly_and_drops_pushed_shards(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    for miner in live_miners[4:]:
        await miner.server.close()  # 4 left; a segment needs k + r = 5 receipts
    data = random.Random(3).randbytes(300_000)
    with pytest.raises(UploadError) as caught:
        await uploader(sessions, miner_client, live_miners).upload(
            seeded, "doomed", stream(data), UploadOptions(PARAMS)
        )
    assert caught.value.code == "not_enough_receipts"
    with sessions() as session:
        for table in (StoredObject, Shard, Placement, RepairItem):
            assert session.scalar(select(func.count()).select_from(table)) == 0
    for miner in live_miners[:4]:
        assert miner.service.index.counts()["ok"] == 0  # whatever they got was dropped


async def test_a_lost_miner_mid_upload_goes_to_the_repair_queue(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    await live_miners[0].server.close()  # 7 of 8 reachable: 7 >= k + r, one share missing
    data = random.Random(4).randbytes(200_000)
    result = await uploader(sessions, miner_client, live_miners[:8]).upload(
        seeded, "partial", stream(data), UploadOptions(PARAMS)
    )
    assert result.queued_for_repair == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RepairItem)) == 1
        row = session.get(StoredObject, result.object_id)
        assert row is not None
        assert row.state == "committed"


async def test_uploads_interrupted_by_a_restart_are_abandoned_cleanly(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    up = uploader(sessions, miner_client, live_miners)
    data = random.Random(9).randbytes(300_000)
    result = await up.upload(seeded, "half.bin", stream(data), UploadOptions(PARAMS))
    with sessions.begin() as session:  # as a process killed before its commit leaves it
        row = session.get(StoredObject, result.object_id)
        assert row is not None
        row.state = "pending"
        held = [
            (p.miner.host, s.shard_id)
            for seg in row.segments
            for s in seg.shards
            for p in s.placements
        ]
    assert held
    restarted = uploader(sessions, miner_client, live_miners)
    assert await restarted.recover() == 1
    with sessions() as session:
        assert session.get(StoredObject, result.object_id) is None
    by_host = {m.candidate.host: m for m in live_miners}
    for host, shard_id in held:  # every miner was asked to drop what it held
        miner = by_host[host]
        address = MinerAddress(miner.key.ss58_address, host, miner.server.port)
        with pytest.raises(MinerError) as info:
            await miner_client.get_shard(address, shard_id)
        assert info.value.status == 404
    # The name is free again: a retry stores it.
    again = await restarted.upload(seeded, "half.bin", stream(data), UploadOptions(PARAMS))
    assert again.size == len(data)


async def test_miners_sharing_a_host_are_counted_as_hosts_and_the_fix_is_named(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    def one_host() -> list[Candidate]:
        return [dataclasses.replace(m.candidate, host="127.0.0.2") for m in live_miners]

    shared = Uploader(sessions, miner_client, one_host, rng=random.Random(1))
    with pytest.raises(UploadError) as caught:
        await shared.upload(seeded, "crowded", stream(b"x" * 1000), UploadOptions(PARAMS))
    assert caught.value.code == "not_enough_miners"
    message = str(caught.value)
    assert "8 miners with room, on 1 distinct hosts" in message
    assert "needs at least 5 hosts" in message
    assert "--external-host" in message


async def test_a_commit_whose_reply_is_lost_never_loses_the_shards_of_a_listed_object(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database committed the object, then went away before saying so: the upload fails
    and cannot remove its row. That row may be a listed object, so its shards stay."""
    monkeypatch.setattr(uploads, "ABANDON_FIRST_DELAY", 0.01)
    monkeypatch.setattr(uploads, "ABANDON_TRIES", 3)
    data = random.Random(12).randbytes(300_000)
    outage = DatabaseOutage(sessions, lose_the_commit_reply=True)
    try:
        with pytest.raises(OperationalError):
            await uploader(sessions, miner_client, live_miners).upload(
                seeded, "ambiguous.bin", stream(data), UploadOptions(PARAMS)
            )
    finally:
        outage.end()
    with sessions() as session:
        row = session.scalar(select(StoredObject).where(StoredObject.name == "ambiguous.bin"))
        assert row is not None
        assert row.state == "committed"
        manifest = Manifest.from_json(row.manifest_json or "")
    held = sum(m.service.index.counts()["ok"] for m in live_miners)
    assert held == PARAMS.m * len(manifest.segments)  # nothing was dropped


def window(options: UploadOptions, depth: Depth) -> int:
    return upload_window(
        options.params, depth, size=options.declared_size, presealed=False, seals=options.encrypt
    )


async def held_at_most(budget: TransferBudget, work: Awaitable[object]) -> int:
    """The most of ``budget`` held while ``work`` runs (sampled every event-loop turn)."""
    peak = 0
    task = asyncio.ensure_future(work)
    while not task.done():
        peak = max(peak, budget.total - budget.free)
        await asyncio.sleep(0)
    await task
    return peak


async def test_an_upload_asks_the_budget_once_for_its_window_and_gives_it_back(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    data = random.Random(31).randbytes(3 * 2**20)  # 12 segments: deeper than any window
    options = UploadOptions(PARAMS, declared_size=len(data))
    deepest, shallower = Depth(2, 2), Depth(2, 1)
    reserve = 2 * download_charge(PARAMS)  # what uploads leave to downloads
    budget = TransferBudget(window(options, deepest) + reserve)
    up = Uploader(sessions, miner_client, lambda: [m.candidate for m in live_miners], budget=budget)
    alone = await held_at_most(budget, up.upload(seeded, "alone", stream(data), options))
    assert alone == window(options, deepest)
    assert budget.free == budget.total
    # A download holds part of it: the upload runs one segment shallower, and completes.
    download = await budget.take(2, budget.total - window(options, shallower))
    beside = await held_at_most(budget, up.upload(seeded, "beside", stream(data), options))
    assert beside - download.size == window(options, shallower)
    download.release()
    assert budget.free == budget.total
    # A small object asks for what it is, not for a window of whole segments.
    small = UploadOptions(PARAMS, declared_size=1000)
    tiny = await held_at_most(budget, up.upload(seeded, "small", stream(b"x" * 1000), small))
    assert tiny == window(small, deepest) < 10_000


async def test_uploads_and_downloads_on_a_tight_budget_all_finish(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    """Room for one upload at its least depth and a little more: three uploads and a
    stream of download grants share it, in turn, and every one finishes (no upload waits
    on another's grant while holding its own)."""
    options = UploadOptions(PARAMS, declared_size=2 * 2**20)
    budget = TransferBudget(window(options, LEAST_DEPTH) + download_charge(PARAMS))
    up = Uploader(
        sessions, miner_client, lambda: [m.candidate for m in live_miners], budget=budget,
        slots_per_user=3,
    )  # fmt: skip
    stop = asyncio.Event()

    async def downloads() -> int:
        taken = 0
        while not stop.is_set():
            grant = await budget.take(7, download_charge(PARAMS))
            await asyncio.sleep(0.01)
            grant.release()
            taken += 1
        return taken

    reader = asyncio.create_task(downloads())
    data = [random.Random(40 + i).randbytes(2 * 2**20) for i in range(3)]
    results = await asyncio.wait_for(
        asyncio.gather(*(
            up.upload(seeded, f"tight-{i}", stream(d), options) for i, d in enumerate(data)
        )),
        120,
    )  # fmt: skip
    stop.set()
    assert await reader > 0
    assert [r.size for r in results] == [len(d) for d in data]
    assert budget.free == budget.total


async def test_the_body_waiting_for_the_encoder_is_bounded_in_bytes() -> None:
    """A body arrives faster than it is coded: what waits between the socket and the
    encoder thread stays within ``BODY_QUEUE`` bytes (part of the upload's grant), however
    large the chunks aiohttp hands over, and every byte still reaches the encoder in order."""
    params = ErasureParams(k=2, m=4, segment_size=1 << 20, leaf_size=16384)
    bridge = uploads._EncodingBridge(
        uploads.ObjectEncoder(params, encrypt=False), asyncio.get_running_loop()
    )
    chunks = [bytes([n]) * (768 << 10) for n in range(24)]  # 18 MiB, as aiohttp joins them

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    feeding = asyncio.create_task(bridge.feed(body()))
    await asyncio.sleep(0.3)  # nothing reads yet: the feed waits for room
    assert not feeding.done()
    assert 0 < bridge.queued <= BODY_QUEUE
    received = await asyncio.to_thread(lambda: b"".join(bridge._source()))
    await feeding
    assert received == b"".join(chunks)
    assert bridge.queued == 0
