"""The validator under hostile clients (issue 14): a cut stream, a trickling body, input that
used to become a 500. Real miners, a real server, requests written byte by byte."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from bittensor_wallet import Keypair
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from yarl import URL

from erasure import Capability
from protocol.epistula import sign_headers
from protocol.signing import SigningClient, wall_clock_ms
from tests.rawhttp import RawResponse, read_response, request_head, send
from tests.validator.conftest import VALIDATOR, LiveMiner
from tests.validator.test_challenger import challenger
from validator.app import GATEWAY, make_app
from validator.gateway import Gateway
from validator.miner_client import MinerClient
from validator.models import Placement, StoredObject
from validator.settings import ValidatorSettings

ALICE = Keypair.create_from_uri("//GatewayAlice")
BOB = Keypair.create_from_uri("//GatewayBob")
MiB = 2**20
STALL_SECONDS = 2.0


@pytest.fixture
async def api(
    sessions: sessionmaker[Session], miner_client: MinerClient, live_miners: list[LiveMiner]
) -> Any:
    async with serve_api(sessions, miner_client, live_miners) as live:
        yield live


@contextlib.asynccontextmanager
async def serve_api(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    stall_seconds: float = STALL_SECONDS,
) -> AsyncIterator[LiveApi]:
    """The validator's API on a real socket, alice and bob its users, the clients' pace
    (both ways) a MiB over every ``stall_seconds``: tests need not wait long."""
    settings = ValidatorSettings(
        users=(f"alice={ALICE.ss58_address}", f"bob={BOB.ss58_address}"),
        miners=tuple(f"{m.key.ss58_address}@{m.server.host}:{m.server.port}" for m in live_miners),
        segment_size=256 * 1024,
        leaf_size=4096,
        upload_stall_seconds=stall_seconds,
        upload_min_rate=MiB,
    )
    gateway = Gateway(sessions, miner_client)
    gateway.sync_users(settings.users)
    gateway.sync_tokens(("carol=carol-s3cret-token",))
    gateway.sync_miners(settings.miners)
    await gateway.refresh_miners()
    app = make_app(
        gateway,
        settings,
        VALIDATOR.ss58_address,
        challenger=challenger(sessions, miner_client),
        background=False,
    )
    # As `subnet validator run` serves it: aiohttp's test server cancels a handler whose
    # client hangs up, production lets it run on and see the body fail.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session:
        yield LiveApi(app, "127.0.0.1", port, session)
    await runner.cleanup()


@dataclass
class LiveApi:
    app: web.Application
    host: str
    port: int
    session: aiohttp.ClientSession

    def make_url(self, path: str) -> URL:
        return URL(f"http://{self.host}:{self.port}{path}")


def upload_head(user: Keypair, name: str, data: bytes, *, length: int | None = None) -> bytes:
    signed = sign_headers(
        user,
        body_hash="sha256:" + hashlib.sha256(data).hexdigest(),
        signed_for=VALIDATOR.ss58_address,
        now_ms=wall_clock_ms(),
        declared=True,
    )
    headers = {**signed, "Content-Length": str(len(data) if length is None else length)}
    return request_head("PUT", f"/v1/objects?name={quote(name)}", headers)


async def upload(api: LiveApi, user: Keypair, name: str, data: bytes) -> RawResponse:
    return await send(api.host, api.port, upload_head(user, name, data), data)


async def cut_upload(api: LiveApi, name: str, data: bytes, sent: int) -> None:
    """Declare all of ``data``, send ``sent`` bytes of it, hang up."""
    _, writer = await asyncio.open_connection(api.host, api.port)
    writer.write(upload_head(ALICE, name, data) + data[:sent])
    await writer.drain()
    await asyncio.sleep(0.3)  # the validator is encoding and pushing what it got
    writer.transport.abort()  # a reset, as a dropped connection


def pending(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        query = select(func.count()).select_from(StoredObject)
        return session.scalar(query.where(StoredObject.state == "pending")) or 0


def live_shards(live_miners: list[LiveMiner]) -> int:
    return sum(m.service.index.counts()["ok"] for m in live_miners)


def placements(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Placement)) or 0


async def test_a_cut_stream_frees_its_name_slot_and_shards_at_once(
    api: LiveApi,
    sessions: sessionmaker[Session],
    live_miners: list[LiveMiner],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    uploader = api.app[GATEWAY].uploader
    for attempt in range(2):  # the second cut used to wedge every upload
        name = f"cut-{attempt}.bin"
        data = random.Random(attempt).randbytes(3 * MiB)
        await cut_upload(api, name, data, sent=1 * MiB)
        started = time.monotonic()
        retry = await upload(api, ALICE, name, data)
        while retry.error == "upload_in_progress" and time.monotonic() - started < 5:
            await asyncio.sleep(0.1)  # the abandon is under way: rows, then miners
            retry = await upload(api, ALICE, name, data)
        assert (retry.status, retry.error) == (201, None), retry.body
        assert time.monotonic() - started < 5
        assert uploader.slots.held == 0
    # Another user's upload works as before, and nothing of the cut uploads is left.
    assert (await upload(api, BOB, "after.bin", b"still here" * 1000)).status == 201
    assert pending(sessions) == 0
    for _ in range(50):  # the miners' deletes are best effort, after the rows
        if live_shards(live_miners) == placements(sessions):
            break
        await asyncio.sleep(0.1)
    assert live_shards(live_miners) == placements(sessions)
    # A hang-up is one INFO line, never an error with a traceback.
    assert any(r.getMessage() == "client hung up" for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def trickle(api: LiveApi, user: Keypair, name: str, data: bytes, fast: int) -> RawResponse:
    """An upload that sends ``fast`` bytes at once, then one byte every 0.2 s."""
    reader, writer = await asyncio.open_connection(api.host, api.port)
    writer.write(upload_head(user, name, data) + data[:fast])

    async def drip() -> None:
        for i in range(fast, len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.2)

    dripping = asyncio.create_task(drip())
    try:
        return await read_response(reader)
    finally:
        dripping.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await dripping
        writer.close()


async def test_trickling_bodies_are_timed_out_and_block_no_other_user(
    api: LiveApi, sessions: sessionmaker[Session]
) -> None:
    uploader = api.app[GATEWAY].uploader
    data = random.Random(4).randbytes(2 * MiB)
    # Two of alice's uploads whose first MiB flows (each may take a slot), then trickle.
    slow = [asyncio.create_task(trickle(api, ALICE, f"slow-{i}", data, MiB + 1)) for i in range(2)]
    await asyncio.sleep(0.5)
    assert uploader.slots.held == 1  # alice holds her one slot, not both of the validator's
    fast = await upload(api, BOB, "fast.bin", random.Random(3).randbytes(200_000))
    assert fast.status == 201, fast.body
    assert not any(task.done() for task in slow)  # bob did not wait for them
    for answer in await asyncio.gather(*slow):
        assert (answer.status, answer.error) == (408, "body_too_slow")
    assert uploader.slots.held == 0
    assert pending(sessions) == 0


async def test_a_body_that_never_starts_holds_no_slot_and_is_timed_out(
    api: LiveApi, sessions: sessionmaker[Session]
) -> None:
    uploader = api.app[GATEWAY].uploader
    reader, writer = await asyncio.open_connection(api.host, api.port)
    writer.write(upload_head(ALICE, "silent", b"never sent"))
    await writer.drain()
    await asyncio.sleep(0.5)
    assert pending(sessions) == 1  # the name is taken while the request lives...
    assert uploader.slots.held == 0  # ...but no slot: nothing flows
    answer = await asyncio.wait_for(read_response(reader), STALL_SECONDS * 3)
    writer.close()
    assert (answer.status, answer.error) == (408, "body_too_slow")
    assert pending(sessions) == 0


async def test_input_that_used_to_be_a_500_is_a_4xx_with_the_json_error(api: LiveApi) -> None:
    async def get(target: str, headers: dict[str, str | bytes]) -> RawResponse:
        return await send(api.host, api.port, request_head("GET", target, headers))

    # A Bearer token that is not UTF-8, or not ASCII, even on /healthz.
    answer = await get("/healthz", {"Authorization": b"Bearer \xff\xfe\xc3"})
    assert (answer.status, answer.error) == (400, "bad_header")
    answer = await get("/healthz", {"Authorization": "Bearer tökén".encode()})
    assert (answer.status, answer.error) == (401, "bad_token")
    # 20-digit integers, and numbers beyond any date.
    for query in ("after=99999999999999999999", "limit=1" + "0" * 40, "since=1e308"):
        answer = await get(f"/v1/audit/log?{query}", {})
        assert (answer.status, answer.error) == (400, "bad_query"), query
    answer = await get("/v1/audit/summary?until=-inf&since=1e999", {})
    assert (answer.status, answer.error) == (400, "bad_query")
    # NUL in a query or a path.
    answer = await get("/v1/audit/log?miner=a%00b", {})
    assert (answer.status, answer.error) == (400, "bad_query")


async def test_a_capability_that_is_too_long_or_has_the_wrong_key_is_refused(
    api: LiveApi,
) -> None:
    data = b"secret" * 5000
    stored = await upload(api, ALICE, "capped", data)
    assert stored.status == 201
    capability = Capability.parse(stored.json()["capability"])
    alice = SigningClient(api.session, ALICE)
    url = api.make_url(f"/v1/objects/{stored.json()['object_id']}")

    async def read_with(cap: str) -> tuple[int, str]:
        async with alice.request(
            "GET", url, headers={"X-Capability": cap}, signed_for=VALIDATOR.ss58_address
        ) as r:
            return r.status, (await r.json())["error"]

    too_long = str(capability).rsplit(":", 1)[0] + ":" + "9" * 5000
    assert await read_with(too_long) == (400, "bad_capability")
    over_long_size = str(capability).rsplit(":", 1)[0] + ":" + "9" * 40
    assert await read_with(over_long_size) == (400, "bad_capability")
    wrong_key = Capability(capability.verifier, capability.k, capability.m, capability.size,
                           key=bytes(32))  # fmt: skip
    assert await read_with(str(wrong_key)) == (403, "wrong_key")
    async with alice.request(
        "GET", url, headers={"X-Capability": str(capability)}, signed_for=VALIDATOR.ss58_address
    ) as r:
        assert (r.status, await r.read()) == (200, data)
