"""Downloads from real miner servers: whole, by range, with miners down or lying."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from erasure import Capability, ErasureParams
from erasure.objects import SegmentBuffers
from tests.validator.conftest import LiveMiner
from validator.budget import TransferBudget, download_charge
from validator.downloads import SENT_PAST, Downloader, DownloadError, Fetched, _Lent
from validator.miner_client import MinerClient
from validator.uploads import Uploader, UploadOptions, UploadResult

PARAMS = ErasureParams(k=4, m=8, segment_size=256 * 1024, leaf_size=4096)
DATA = random.Random(9).randbytes(900_017)


async def stream(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


async def stored(
    sessions: sessionmaker[Session], client: MinerClient, miners: list[LiveMiner], owner: int,
    encrypt: bool = True,
) -> UploadResult:  # fmt: skip
    """DATA stored; sealed by the validator (a download decodes and decrypts each segment),
    or with ``encrypt=False`` not (a download sends the primary shares as they came)."""
    up = Uploader(sessions, client, lambda: [m.candidate for m in miners], rng=random.Random(5))
    return await up.upload(owner, "obj", stream(DATA), UploadOptions(PARAMS, encrypt=encrypt))


async def read(
    down: Downloader, result: UploadResult, start: int = 0, end: int | None = None
) -> bytes:
    """The bytes a reader gets, taken as a GET takes them: each chunk copied out (sent)
    before the next is asked for, the download reusing its share buffers."""
    plan = await asyncio.to_thread(down.plan, result.object_id)
    key = Capability.parse(result.capability).key
    stream = down.stream(plan, key, start, end, reuse_buffers=True)
    return b"".join([bytes(chunk) async for chunk in stream])


ENCRYPT = pytest.mark.parametrize("encrypt", [True, False], ids=["decoded", "primaries"])


@ENCRYPT
async def test_whole_and_ranges_read_back(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int, encrypt: bool,
) -> None:  # fmt: skip
    result = await stored(sessions, miner_client, live_miners, seeded, encrypt)
    down = Downloader(sessions, miner_client)
    assert await read(down, result) == DATA
    for start, end in [(0, 1), (5, 300_000), (262_143, 262_145), (900_000, 900_017), (10, 10)]:
        assert await read(down, result, start, end) == DATA[start:end]


async def test_four_miners_down_still_reads_and_five_is_a_clear_error(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int,
) -> None:  # fmt: skip
    result = await stored(sessions, miner_client, live_miners, seeded)
    for miner in live_miners[:4]:
        await miner.server.close()
    down = Downloader(sessions, miner_client, hedge_after=0.05)
    assert await read(down, result) == DATA
    await live_miners[4].server.close()
    with pytest.raises(DownloadError) as caught:
        await read(down, result)
    assert caught.value.code == "not_enough_shards"
    assert "only 3 of the 4" in caught.value.message


@ENCRYPT
async def test_corrupt_shards_are_skipped(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int, encrypt: bool,
) -> None:  # fmt: skip
    result = await stored(sessions, miner_client, live_miners, seeded, encrypt)
    for miner in live_miners[:3]:  # three miners rot every shard they hold
        for path in (miner.service.settings.data_dir / "shards").rglob("*"):
            if path.is_file() and not path.suffix:
                raw = bytearray(path.read_bytes())
                raw[0] ^= 0xFF
                path.write_bytes(raw)
    assert await read(Downloader(sessions, miner_client), result) == DATA


@ENCRYPT
async def test_each_segment_s_shares_are_read_into_the_buffers_the_last_gave_back(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int, encrypt: bool,
) -> None:  # fmt: skip
    """A fresh 64 KiB+ buffer per share is a fresh mapping to zero: shares go into pooled
    buffers, lent with the pieces that are views of them (sent as they came) or given back
    at once (decoded into a segment of its own), and the next segment reuses them."""
    result = await stored(sessions, miner_client, live_miners, seeded, encrypt)
    down = Downloader(sessions, miner_client)
    plan = await asyncio.to_thread(down.plan, result.object_id)
    key = Capability.parse(result.capability).key
    size = plan.manifest.segments[0].shard_size
    buffers = SegmentBuffers(size, keep=8)
    seen: set[int] = set()
    for index in range(3):  # whole segments: the fourth, the last, is shorter
        got = await down.pieces(plan, index, key, buffers=buffers)
        start = index * PARAMS.segment_size
        assert b"".join(got.pieces) == DATA[start : start + PARAMS.segment_size]
        if encrypt:
            assert got.lent == [] and len(got.pieces) == 1
            pooled = [buffers.take() for _ in range(PARAMS.k)]  # what the shares went into
            assert all(len(b) == size for b in pooled)
            ids = {id(b) for b in pooled}
            for b in pooled:
                buffers.give(b)
        else:
            assert len(got.lent) == PARAMS.k and all(len(b) == size for b in got.lent)
            assert {id(memoryview(p).obj) for p in got.pieces} <= {id(b) for b in got.lent}
            ids = {id(b) for b in got.lent}
            got.pieces.clear()
            for b in got.lent:
                buffers.give(b)
        assert not seen or ids == seen  # the same buffers, segment after segment
        seen = ids


async def test_a_get_reads_every_segment_into_two_segments_worth_of_buffers(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int,
) -> None:  # fmt: skip
    """Streamed as a GET streams (each chunk out before the next), twelve segments of
    primary shares go through the buffers of two, and every byte is right."""
    data = random.Random(12).randbytes(12 * PARAMS.segment_size)
    up = Uploader(
        sessions, miner_client, lambda: [m.candidate for m in live_miners], rng=random.Random(5)
    )
    result = await up.upload(seeded, "twelve", stream(data), UploadOptions(PARAMS, encrypt=False))
    down = Downloader(sessions, miner_client)
    plan = await asyncio.to_thread(down.plan, result.object_id)
    held: list[object] = []  # every buffer a chunk came from, kept: ids are not reused
    got = bytearray()
    async for chunk in down.stream(plan, None, reuse_buffers=True):
        got += chunk
        if not any(chunk.obj is seen for seen in held):
            held.append(chunk.obj)
    assert got == data
    assert PARAMS.k <= len(held) <= 2 * PARAMS.k  # of the 48 shares sent


async def test_a_sent_segment_s_buffers_are_dropped_while_others_wait_for_memory(
    sessions: sessionmaker[Session], miner_client: MinerClient
) -> None:
    """A sent segment's grant has gone back: its buffers are kept for the next fetch only
    when nobody waits for the budget; else they would be held, uncounted, while it waits."""
    budget = TransferBudget(10)
    down = Downloader(sessions, miner_client, budget=budget)
    pool = SegmentBuffers(4, keep=4)
    buffer = pool.take()
    held = await budget.take(1, 10)
    waiting = asyncio.ensure_future(budget.take(2, 5))
    await asyncio.sleep(0)
    assert budget.waiting == 1
    down._take_back(pool, _Lent([buffer]))
    assert pool.take() is not buffer  # dropped: a fresh one is made
    waiting.cancel()
    held.release()
    await asyncio.sleep(0)
    assert budget.waiting == 0
    down._take_back(pool, _Lent([buffer]))
    assert pool.take() is buffer  # kept for the next fetch


async def upload_plain(
    sessions: sessionmaker[Session], client: MinerClient, miners: list[LiveMiner], owner: int,
    data: bytes, params: ErasureParams,
) -> UploadResult:  # fmt: skip
    """``data`` stored unsealed: a download sends its primary shares from lent buffers."""
    up = Uploader(sessions, client, lambda: [m.candidate for m in miners], rng=random.Random(5))
    return await up.upload(owner, "plain", stream(data), UploadOptions(params, encrypt=False))


async def test_a_sent_segment_s_buffers_stay_counted_until_they_are_taken_back(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int,
) -> None:  # fmt: skip
    """A sent segment's shares stay in its buffers until SENT_PAST more bytes are out (the
    client's transport may still hold views of them): its grant is held as long, so the
    budget counts every buffer the download holds."""
    params = ErasureParams(k=4, m=8, segment_size=4 * SENT_PAST, leaf_size=4096)
    data = random.Random(13).randbytes(3 * params.segment_size)
    result = await upload_plain(sessions, miner_client, live_miners, seeded, data, params)
    budget = TransferBudget(100 * 2**20)
    down = Downloader(sessions, miner_client, budget=budget)
    plan = await asyncio.to_thread(down.plan, result.object_id)
    charge = download_charge(params, hedge=down.hedge)
    held = []  # (bytes sent so far, bytes granted then), at every chunk
    sent = 0
    async for chunk in down.stream(plan, None, reuse_buffers=True):
        sent += len(chunk)
        held.append((sent, budget.total - budget.free))
    assert sent == len(data)
    segment = params.segment_size
    # The first segment, with the second fetched ahead: two grants.
    assert {h for s, h in held if s <= segment} == {2 * charge}
    # The second segment's first chunk is out: the first's buffers are lent until
    # SENT_PAST more is, under their grant, and the third segment is fetched only once
    # they are back. Before, the first's grant went back at once, its buffers uncounted.
    assert next(h for s, h in held if s > segment) == 2 * charge
    assert max(h for _, h in held) == 2 * charge  # never a third
    assert budget.free == budget.total  # everything back once the stream ends


@pytest.mark.parametrize("segment_size", [SENT_PAST // 4, SENT_PAST])
async def test_segments_shorter_than_sent_past_stream_under_two_grants(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int, segment_size: int,
) -> None:  # fmt: skip
    """A segment shorter than SENT_PAST ends before the one before it may be taken back:
    that one's buffers are dropped and its grant given back before the next fetch, so a
    reader allowed two segments' grants (the budget's least) never waits on itself."""
    params = ErasureParams(k=4, m=8, segment_size=segment_size, leaf_size=4096)
    data = random.Random(14).randbytes(9 * segment_size + 1234)
    result = await upload_plain(sessions, miner_client, live_miners, seeded, data, params)
    down = Downloader(sessions, miner_client)
    charge = download_charge(params, hedge=down.hedge)
    budget = down.budget = TransferBudget(2 * charge)
    plan = await asyncio.to_thread(down.plan, result.object_id)
    stream = down.stream(plan, None, reuse_buffers=True)
    async with asyncio.timeout(20):
        got = b"".join([bytes(chunk) async for chunk in stream])
    assert got == data
    assert budget.free == budget.total


async def test_one_user_s_downloads_side_by_side_never_wait_on_each_other(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int,
) -> None:  # fmt: skip
    """Two GETs by one user allowed two segments' grants in all: a sent segment's grant,
    held with its lent buffers, must not be what the other waits for while this one waits
    for its next segment (each would hold one and wait for the other's)."""
    params = ErasureParams(k=4, m=8, segment_size=4 * SENT_PAST, leaf_size=4096)
    data = random.Random(15).randbytes(6 * params.segment_size)
    result = await upload_plain(sessions, miner_client, live_miners, seeded, data, params)
    down = Downloader(sessions, miner_client)
    charge = download_charge(params, hedge=down.hedge)
    budget = down.budget = TransferBudget(8 * charge, per_user=2 * charge)
    plan = await asyncio.to_thread(down.plan, result.object_id)

    async def read_all() -> bytes:
        got = bytearray()
        async for chunk in down.stream(plan, None, reader=seeded, reuse_buffers=True):
            got += chunk
            await asyncio.sleep(0)  # the other reader's turn: the two interleave
        return bytes(got)

    async with asyncio.timeout(30):
        both = await asyncio.gather(read_all(), read_all())
    assert both == [data, data]
    assert budget.free == budget.total


async def test_a_sent_segment_s_buffers_are_held_by_the_lent_list_or_by_nothing() -> None:
    """The Fetched a segment came in lives on while the next is awaited: it must not keep
    the buffers, or dropping them (a fetch waits for the budget) would free nothing."""
    budget = TransferBudget(10)
    buffer = bytearray(4)
    got = Fetched([memoryview(buffer)], grant=await budget.take(1, 4), lent=[buffer])
    lent = _Lent()
    lent.lend(got)
    assert got.lent == [] and lent.buffers == [buffer] and budget.free == 6  # held, counted
    lent.drop()
    assert lent.buffers == [] and budget.free == 10
    waited = Fetched([memoryview(buffer)], grant=await budget.take(1, 4), lent=[buffer])
    lent.waiting = 1  # a fetch of this download waits for the budget
    lent.lend(waited)
    assert waited.lent == [] and lent.buffers == [] and budget.free == 10  # let go at once
