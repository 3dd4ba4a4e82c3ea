"""Downloads from real miner servers: whole, by range, with miners down or lying."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from erasure import Capability, ErasureParams
from tests.validator.conftest import LiveMiner
from validator.downloads import Downloader, DownloadError
from validator.miner_client import MinerClient
from validator.uploads import Uploader, UploadOptions, UploadResult

PARAMS = ErasureParams(k=4, m=8, segment_size=256 * 1024, leaf_size=4096)
DATA = random.Random(9).randbytes(900_017)


async def stream(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


async def stored(
    sessions: sessionmaker[Session], client: MinerClient, miners: list[LiveMiner], owner: int
) -> UploadResult:
    up = Uploader(sessions, client, lambda: [m.candidate for m in miners], rng=random.Random(5))
    return await up.upload(owner, "obj", stream(DATA), UploadOptions(PARAMS))


async def read(
    down: Downloader, result: UploadResult, start: int = 0, end: int | None = None
) -> bytes:
    plan = await asyncio.to_thread(down.plan, result.object_id)
    key = Capability.parse(result.capability).key
    return b"".join([c async for c in down.stream(plan, key, start, end)])


async def test_whole_and_ranges_read_back(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int,
) -> None:  # fmt: skip
    result = await stored(sessions, miner_client, live_miners, seeded)
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


async def test_corrupt_shards_are_skipped(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner],
    seeded: int,
) -> None:  # fmt: skip
    result = await stored(sessions, miner_client, live_miners, seeded)
    for miner in live_miners[:3]:  # three miners rot every shard they hold
        for path in (miner.service.settings.data_dir / "shards").rglob("*"):
            if path.is_file() and not path.suffix:
                raw = bytearray(path.read_bytes())
                raw[0] ^= 0xFF
                path.write_bytes(raw)
    assert await read(Downloader(sessions, miner_client), result) == DATA
