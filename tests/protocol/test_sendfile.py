"""``protocol.sendfile``: a file's range after what the transport holds, a short file, and
readers that hang up or stop reading; real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from protocol.sendfile import sendfile


@asynccontextmanager
async def serving(
    path: Path, offset: int, count: int, prefix: bytes = b"", stall: float = 30.0
) -> AsyncIterator[tuple[int, asyncio.Queue[int | BaseException]]]:
    """(port, results) of a server whose GET sends ``count`` bytes of ``path`` from ``offset``
    by :func:`sendfile` after its headers and ``prefix`` (handed to the transport, which
    holds what the socket cannot take yet), and puts what it sent (or raised) on results."""
    results: asyncio.Queue[int | BaseException] = asyncio.Queue()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(prefix) + count
        await response.prepare(request)
        assert request.transport is not None
        request.transport.write(prefix)  # not drained: the transport holds what won't fit
        try:
            with path.open("rb") as file:
                sent = await sendfile(request.transport, file, offset, count, stall_seconds=stall)
        except BaseException as exc:
            results.put_nowait(exc)
            raise
        results.put_nowait(sent)
        if sent < count:  # as the miner does: the reader sees a cut body, not a wait
            request.transport.close()
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1], results
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("size", "offset", "count", "prefix"), [
    (5 * 2**20 + 3, 0, 5 * 2**20 + 3, 0),  # more than a socket buffer: it waits for room
    (5 * 2**20 + 3, 12_345, 2**20, 0),  # a range
    (1000, 10, 990, 0),
    (2**20, 0, 2**20, 8 * 2**20),  # the transport still holds bytes: they go first
])  # fmt: skip
async def test_sendfile_sends_the_range_after_what_came_before(
    tmp_path: Path, size: int, offset: int, count: int, prefix: int
) -> None:
    before = os.urandom(prefix)
    data = os.urandom(size)
    path = tmp_path / "shard"
    path.write_bytes(data)

    async with (
        serving(path, offset, count, before) as (port, results),
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/") as r,
    ):
        await asyncio.sleep(0.2)  # read late, so that the sender finds the socket full
        body = await r.read()
        sent = await results.get()
    assert (r.status, sent) == (200, count)
    assert body == before + data[offset : offset + count]


async def test_sendfile_of_a_short_file_returns_what_it_sent(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    path.write_bytes(b"x" * 1000)  # the index says 5000: truncated behind the miner's back

    async with (
        serving(path, 0, 5000) as (port, results),
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/") as r,
    ):
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()  # the server ends the response short
        assert await results.get() == 1000


async def test_a_reader_that_hangs_up_mid_send_ends_the_send(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    path.write_bytes(os.urandom(32 * 2**20))

    async with serving(path, 0, 32 * 2**20) as (port, results):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.read(65536)
        writer.transport.abort()  # gone, with most of the file unsent
        outcome = await results.get()
    assert isinstance(outcome, ConnectionResetError)  # one class for the services to log


async def test_a_reader_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    path.write_bytes(os.urandom(32 * 2**20))

    async with serving(path, 0, 32 * 2**20, stall=0.5) as (port, results):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.read(65536)  # then reads nothing more, and keeps the connection
        started = time.monotonic()
        outcome = await results.get()
        waited = time.monotonic() - started
        with contextlib.suppress(ConnectionError):
            while await reader.read(2**20):  # what the socket held, then the end
                pass
        writer.close()
    assert isinstance(outcome, ConnectionResetError)
    assert "took nothing for 0.5 s" in str(outcome)
    assert 0.4 < waited < 10  # cut off after the stall, not at once and not never
