"""Readers that stop reading (issue 20's byte budget, issue 14's class): they hold at most
their user's share of the segments in hand, never anyone else's, and are cut off once they
fall under the pace; another user's download goes through meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from erasure import ErasureParams
from protocol.epistula import sign_headers
from protocol.signing import SigningClient, wall_clock_ms
from tests.rawhttp import request_head
from tests.validator.conftest import VALIDATOR, LiveMiner
from tests.validator.test_hardening import ALICE, BOB, LiveApi, serve_api, upload
from validator.app import GATEWAY
from validator.budget import TransferBudget, download_charge
from validator.miner_client import MinerClient

MiB = 2**20
SEGMENT = 256 * 1024  # serve_api's segment size
STALL_SECONDS = 6.0  # long enough for bob's download on a loaded machine


@pytest.fixture
async def api(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner]
) -> AsyncIterator[LiveApi]:
    async with serve_api(sessions, miner_client, live_miners, STALL_SECONDS) as live:
        yield live


async def until(what: str, check: Callable[[], bool], seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 - polls the budget, which has no Event
            await asyncio.sleep(0.05)
    assert check(), what


async def stalled_reader(
    api: LiveApi, object_id: str, capability: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A GET whose reader takes nothing (a 4 KiB receive buffer, so the validator's sends
    back up at once)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (api.host, api.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    signed = sign_headers(
        ALICE,
        body_hash="sha256:" + hashlib.sha256(b"").hexdigest(),
        signed_for=VALIDATOR.ss58_address,
        now_ms=wall_clock_ms(),
        declared=True,
    )
    target = f"/v1/objects/{object_id}"
    writer.write(request_head("GET", target, {**signed, "X-Capability": capability}))
    await writer.drain()
    return reader, writer


async def drain_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    got = 0
    while chunk := await reader.read(MiB):
        got += len(chunk)
    writer.close()
    return got


# The budget and the pace are the app's, not the database's: one database suffices, and
# each run waits out the stall window (~20 s).
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_stalled_readers_hold_their_share_only_and_are_cut_off(api: LiveApi) -> None:
    downloader = api.app[GATEWAY].downloader
    # Four decrypted segments in all, two per user (each charged its shares, hedged ones
    # too, and the decoded segment beside them).
    charge = download_charge(ErasureParams(segment_size=SEGMENT), decoded=True)
    budget = downloader.budget = TransferBudget(4 * charge, per_user=2 * charge)
    data = random.Random(7).randbytes(12 * MiB)
    stored = await upload(api, ALICE, "big.bin", data)
    assert stored.status == 201, stored.body
    object_id, capability = stored.json()["object_id"], stored.json()["capability"]

    stalled = [await stalled_reader(api, object_id, capability) for _ in range(3)]
    # Alice's three stalled reads hold her share (two segments), and no more.
    await until("alice holds her share", lambda: budget.free == budget.total - budget.per_user)
    await asyncio.sleep(0.5)
    assert budget.free == budget.total - budget.per_user

    small = random.Random(8).randbytes(3 * SEGMENT)
    bobs = await upload(api, BOB, "bobs.bin", small)
    assert bobs.status == 201, bobs.body
    bob = SigningClient(api.session, BOB)
    url = api.make_url(f"/v1/objects/{bobs.json()['object_id']}")
    headers = {"X-Capability": bobs.json()["capability"]}
    async with bob.request("GET", url, headers=headers, signed_for=VALIDATOR.ss58_address) as r:
        assert (r.status, await r.read()) == (200, small)
    assert budget.free == budget.total - budget.per_user  # alice's reads were still stalled

    # Past the pace window each stalled read is cut (the third once it got its turn, and
    # stalled in its turn): a short body, and every byte back.
    await asyncio.sleep(STALL_SECONDS * 3)
    received = await asyncio.wait_for(
        asyncio.gather(*(drain_all(*pair) for pair in stalled)), STALL_SECONDS * 20
    )
    assert all(got < len(data) for got in received)
    await until("every grant is back", lambda: budget.free == budget.total)
