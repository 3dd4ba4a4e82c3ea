"""The validator's HTTP API with real miner servers behind it."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from bittensor_wallet import Keypair
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from yarl import URL

from protocol.signing import SigningClient
from subnet.gateway_client import GatewayClient, GatewayError
from tests.validator.conftest import VALIDATOR, DatabaseOutage, LiveMiner
from validator.app import make_app
from validator.budget import TransferBudget
from validator.gateway import Gateway
from validator.miner_client import MinerClient
from validator.models import StoredObject
from validator.settings import ValidatorSettings

ALICE = Keypair.create_from_uri("//GatewayAlice")
BOB = Keypair.create_from_uri("//GatewayBob")
Client = TestClient[Any, Any]


@pytest.fixture
async def api(
    aiohttp_client: Any,
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
) -> Client:
    settings = ValidatorSettings(
        users=(f"alice={ALICE.ss58_address}", f"bob={BOB.ss58_address}"),
        miners=tuple(f"{m.key.ss58_address}@{m.server.host}:{m.server.port}" for m in live_miners),
        segment_size=256 * 1024,
        leaf_size=4096,
    )
    gateway = Gateway(sessions, miner_client)
    gateway.sync_users(settings.users)
    gateway.sync_tokens(("carol=carol-s3cret-token",))
    gateway.sync_miners(settings.miners)
    await gateway.refresh_miners()
    app = make_app(gateway, settings, VALIDATOR.ss58_address, background=False)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def upload(
    api: Client, user: Keypair, name: str, data: bytes, *, declared: bytes | None = None, **q: str
) -> tuple[int, dict[str, Any]]:
    signer = SigningClient(api.session, user)
    digest = "sha256:" + hashlib.sha256(data if declared is None else declared).hexdigest()
    async with signer.request_stream(
        "PUT", api.make_url("/v1/objects").with_query({"name": name, **q}),
        signed_for=VALIDATOR.ss58_address, content_hash=digest, body=data,
    ) as r:  # fmt: skip
        return r.status, await r.json()


async def test_upload_list_download_range_delete(api: Client) -> None:
    data = random.Random(1).randbytes(600_000)
    status, body = await upload(api, ALICE, "set/one.bin", data)
    assert status == 201, body
    assert body["capability"].startswith("URI:SN-CHK:")
    alice = SigningClient(api.session, ALICE)
    sign = {"signed_for": VALIDATOR.ss58_address}
    async with alice.request("GET", api.make_url("/v1/objects"), **sign) as r:
        listed = (await r.json())["objects"]
    assert [(o["name"], o["size"]) for o in listed] == [("set/one.bin", 600_000)]
    url = api.make_url(f"/v1/objects/{body['object_id']}")
    cap = {"X-Capability": body["capability"]}
    async with alice.request("GET", url, headers=cap, **sign) as r:
        assert (r.status, await r.read()) == (200, data)
    async with alice.request("GET", url, headers={**cap, "Range": "bytes=1000-1999"}, **sign) as r:
        assert (r.status, await r.read()) == (206, data[1000:2000])
    async with alice.request("GET", url, headers={**cap, "Range": "bytes=700000-"}, **sign) as r:
        assert r.status == 416
    async with alice.request("GET", url, **sign) as r:
        assert (r.status, (await r.json())["error"]) == (403, "key_needed")
    async with alice.request("DELETE", url, **sign) as r:
        assert (r.status, (await r.json())["shards"]) == (200, 24)
    async with alice.request("GET", url, headers=cap, **sign) as r:
        assert r.status == 404


async def test_another_user_can_neither_read_nor_delete(api: Client) -> None:
    status, body = await upload(api, ALICE, "private", b"secret bytes" * 100)
    assert status == 201
    bob = SigningClient(api.session, BOB)
    url = api.make_url(f"/v1/objects/{body['object_id']}")
    for method in ("GET", "DELETE"):
        async with bob.request(
            method, url, headers={"X-Capability": body["capability"]},
            signed_for=VALIDATOR.ss58_address,
        ) as r:  # fmt: skip
            assert (r.status, (await r.json())["error"]) == (403, "not_yours")


async def test_a_body_that_is_not_the_signed_one_leaves_nothing_visible(
    api: Client, sessions: sessionmaker[Session]
) -> None:
    status, body = await upload(api, ALICE, "forged", b"a" * 50_000, declared=b"b" * 50_000)
    assert (status, body["error"]) == (401, "body_mismatch")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoredObject)) == 0


@pytest.mark.parametrize(
    ("name", "code"), [("", "bad_name"), ("x" * 1025, "bad_name"), ("nul\x00l", "bad_query")]
)
async def test_bad_names_get_400(api: Client, name: str, code: str) -> None:
    status, body = await upload(api, ALICE, name, b"data")
    assert (status, body["error"]) == (400, code)


async def test_unsigned_and_unknown_users_are_refused(api: Client) -> None:
    async with api.get("/v1/objects") as r:
        assert r.status == 401
    stranger = SigningClient(api.session, Keypair.create_from_uri("//Stranger"))
    async with stranger.request(
        "GET", api.make_url("/v1/objects"), signed_for=VALIDATOR.ss58_address
    ) as r:
        assert (r.status, (await r.json())["error"]) == (403, "unknown_hotkey")


async def test_same_name_again_is_a_conflict_and_unencrypted_objects_need_no_key(
    api: Client,
) -> None:
    status, body = await upload(api, ALICE, "plain", b"hello world", encrypt="0")
    assert status == 201
    assert body["capability"].startswith("URI:SN-CHK-Verifier:")
    status, again = await upload(api, ALICE, "plain", b"hello world", encrypt="0")
    assert (status, again["error"]) == (409, "already_exists")
    alice = SigningClient(api.session, ALICE)
    async with alice.request(
        "GET", api.make_url("/v1/objects/plain"), signed_for=VALIDATOR.ss58_address
    ) as r:
        assert (r.status, await r.read()) == (200, b"hello world")


async def test_a_client_that_disconnects_mid_upload_leaves_nothing(
    api: Client, sessions: sessionmaker[Session], live_miners: list[LiveMiner]
) -> None:
    data = random.Random(7).randbytes(2_000_000)

    async def dies_halfway() -> AsyncIterator[bytes]:
        for i in range(0, 900_000, 100_000):
            yield data[i : i + 100_000]
            await asyncio.sleep(0.02)
        raise ConnectionAbortedError("the user's laptop lid closed")

    signer = SigningClient(api.session, ALICE)
    with pytest.raises((ConnectionAbortedError, aiohttp.ClientError)):
        async with signer.request_stream(
            "PUT", api.make_url("/v1/objects").with_query({"name": "interrupted"}),
            signed_for=VALIDATOR.ss58_address,
            content_hash="sha256:" + hashlib.sha256(data).hexdigest(),
            body=dies_halfway(), headers={"Content-Length": str(len(data))},
        ) as r:  # fmt: skip
            await r.read()
    for _ in range(100):  # the server notices the broken stream and cleans up
        with sessions() as session:
            rows = session.scalar(select(func.count()).select_from(StoredObject))
        live = sum(m.service.index.counts()["ok"] for m in live_miners)
        if rows == 0 and live == 0:
            break
        await asyncio.sleep(0.05)
    assert (rows, live) == (0, 0)


async def test_objects_are_found_by_names_with_slashes_and_spaces(api: Client) -> None:
    status, _ = await upload(api, ALICE, "deep/er path/file 1.bin", b"x" * 10, encrypt="0")
    assert status == 201
    alice = SigningClient(api.session, ALICE)
    url = URL(f"{api.make_url('/')}v1/objects/deep/er%20path/file%201.bin", encoded=True)
    async with alice.request("GET", url, signed_for=VALIDATOR.ss58_address) as r:
        assert (r.status, await r.read()) == (200, b"x" * 10)


async def test_api_tokens_work_for_scripts_and_stay_in_their_lane(
    api: Client, tmp_path: Path
) -> None:
    status, alices = await upload(api, ALICE, "alice-only", b"mine", encrypt="0")
    assert status == 201
    data = tmp_path / "report.csv"
    data.write_bytes(b"a,b\n1,2\n" * 1000)
    carol = GatewayClient(api.session, None, str(api.make_url("")), tmp_path / "caps",
                          token="carol-s3cret-token")  # fmt: skip
    await carol.connect()
    stored = await carol.upload(data, "report.csv")
    assert [o["name"] for o in await carol.list()] == ["report.csv"]
    await carol.download(stored["object_id"], tmp_path / "back.csv")
    assert (tmp_path / "back.csv").read_bytes() == data.read_bytes()
    with pytest.raises(GatewayError) as caught:
        await carol.download(alices["object_id"], tmp_path / "stolen")
    assert (caught.value.status, caught.value.code) == (403, "not_yours")
    async with api.get("/v1/objects", headers={"Authorization": "Bearer wrong"}) as r:
        assert (r.status, (await r.json())["error"]) == (401, "bad_token")


async def test_ranges_across_shares_and_segments_of_a_plain_object(api: Client) -> None:
    """Unsealed objects are served as the primary shares themselves (no joined copy):
    every range, over share, segment and padding edges, is the object's bytes."""
    data = random.Random(7).randbytes(3 * 256 * 1024 + 1001)  # a short, padded last segment
    status, body = await upload(api, ALICE, "plain/ranges.bin", data, seal="none")
    assert status == 201, body
    alice = SigningClient(api.session, ALICE)
    url = api.make_url(f"/v1/objects/{body['object_id']}")
    sign = {"signed_for": VALIDATOR.ss58_address}
    async with alice.request("GET", url, **sign) as r:
        assert (r.status, await r.read()) == (200, data)
    edges = [0, 1, 65535, 65536, 131071, 262143, 262144, 262145, 786431, 786432, len(data) - 1]
    for lo in edges:
        for hi in (lo, lo + 1, lo + 70000, len(data) - 1):
            if hi >= len(data) or hi < lo:
                continue
            headers = {"Range": f"bytes={lo}-{hi}"}
            whole = (lo, hi) == (0, len(data) - 1)  # served as a plain 200
            async with alice.request("GET", url, headers=headers, **sign) as r:
                got = (r.status, await r.read())
            assert got == (200 if whole else 206, data[lo : hi + 1]), (lo, hi)


async def test_an_upload_whose_commit_landed_is_reported_stored_whatever_follows(
    api: Client, sessions: sessionmaker[Session]
) -> None:
    """The database goes away the moment the object is committed: the reply is still 201
    (no later step may turn a stored, listed object into a reported failure)."""
    data = random.Random(21).randbytes(300_000)
    outage = DatabaseOutage(sessions, lose_the_commit_reply=False)
    try:
        status, body = await upload(api, ALICE, "landed.bin", data)
        assert outage.down  # the outage did begin right after the commit
    finally:
        outage.end()
    assert status == 201, body
    with sessions() as session:
        row = session.get(StoredObject, body["object_id"])
        assert row is not None
        assert row.state == "committed"


async def test_the_transfer_budget_is_on_metrics(
    aiohttp_client: Any, sessions: sessionmaker[Session], miner_client: MinerClient
) -> None:
    budget = TransferBudget(64 * 2**20)
    gateway = Gateway(sessions, miner_client, budget=budget)
    client = await aiohttp_client(
        make_app(gateway, ValidatorSettings(), VALIDATOR.ss58_address, background=False)
    )

    async def figures() -> dict[str, float]:
        text = await (await client.get("/metrics")).text()
        return {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in text.splitlines())
            if name.startswith("validator_transfer_memory")
        }

    assert await figures() == {
        "validator_transfer_memory_bytes": 64 * 2**20,
        "validator_transfer_memory_held_bytes": 0,
        "validator_transfer_memory_waiting": 0,
    }
    grant = await budget.take(1, 48 * 2**20)
    waiting = asyncio.create_task(budget.take(2, 32 * 2**20))
    await asyncio.sleep(0)
    held = await figures()
    assert held["validator_transfer_memory_held_bytes"] == 48 * 2**20
    assert held["validator_transfer_memory_waiting"] == 1
    grant.release()
    (await waiting).release()
    assert (await figures())["validator_transfer_memory_held_bytes"] == 0
