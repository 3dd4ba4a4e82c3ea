"""The chain's HTTP API on a real loopback server, driven by signed requests from real
sr25519 hotkeys through :class:`ChainClient`."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from bittensor_wallet import Keypair

from chain.app import make_app
from chain.client import ChainClient, ChainRequestError, MetagraphPolicy
from chain.emission import RAO_PER_TAO
from chain.genesis import Genesis
from chain.service import ChainService
from chain.state import ChainParams, LocalChain
from protocol.epistula import sign_headers
from protocol.signing import wall_clock_ms
from tests.chain.conftest import open_chain

Client = TestClient[Any, Any]
TAO = RAO_PER_TAO
TEMPO = 10


@pytest.fixture(scope="module")
def keys() -> dict[str, Keypair]:
    names = ("owner", "alice", "bob", "carol", "miner1", "miner2")
    return {name: Keypair.create_from_uri(f"//{name.title()}") for name in names}


@pytest.fixture
def chain(tmp_path: Path, keys: dict[str, Keypair]) -> Iterator[LocalChain]:
    genesis = Genesis(
        keys["owner"].ss58_address,
        stakes={keys["alice"].ss58_address: 700 * TAO, keys["bob"].ss58_address: 300 * TAO},
        tempo=TEMPO,
        block_interval=0.01,
    )
    params = ChainParams(max_validators=2, version_key=3)
    yield from open_chain(f"sqlite:///{tmp_path / 'chain.sqlite'}", genesis, params)


@pytest.fixture
async def service(chain: LocalChain) -> AsyncIterator[ChainService]:
    service = ChainService(chain, block_interval=0.01)
    yield service
    service._db.shutdown(wait=True)


@pytest.fixture
async def client(service: ChainService, aiohttp_client: Any) -> Client:
    # service first: set up before the app's client, so torn down after the app
    return await aiohttp_client(make_app(service, background=False))  # type: ignore[no-any-return]


def chain_client(client: Client, key: Keypair) -> ChainClient:
    return ChainClient(str(client.make_url("")), key, client.session)


async def setup_subnet(client: Client, keys: dict[str, Keypair]) -> dict[str, ChainClient]:
    clients = {name: chain_client(client, key) for name, key in keys.items() if name != "owner"}
    for name in ("alice", "bob", "carol", "miner1", "miner2"):
        await clients[name].register()
    return clients


async def rejection(coro: Any) -> tuple[int, str]:
    with pytest.raises(ChainRequestError) as info:
        await coro
    return info.value.status, info.value.code


async def test_register_serve_and_read_the_metagraph(
    client: Client, keys: dict[str, Keypair]
) -> None:
    alice = chain_client(client, keys["alice"])
    miner = chain_client(client, keys["miner1"])
    assert await alice.register() == 0
    assert await miner.register() == 1
    assert await miner.register() == 1  # idempotent
    await miner.serve_axon("10.0.0.7", 8091)
    graph = await miner.metagraph()
    assert graph.block == 0
    assert (graph.tempo, graph.version_key) == (TEMPO, 3)
    assert [n.hotkey for n in graph.neurons] == [alice.hotkey, miner.hotkey]
    assert [n.stake for n in graph.neurons] == [700 * TAO, 0]
    assert [n.validator_permit for n in graph.neurons] == [True, False]
    assert [n.axon for n in graph.neurons] == [None, "10.0.0.7:8091"]
    assert graph.validators == {alice.hotkey}
    assert all(n.registered_at == 0 and n.last_update is None for n in graph.neurons)


async def test_each_weights_rejection_has_its_own_status_and_reason(
    client: Client, service: ChainService, keys: dict[str, Keypair]
) -> None:
    stranger = chain_client(client, keys["owner"])
    assert await rejection(stranger.set_weights([0], [1.0], 3)) == (403, "not_registered")
    c = await setup_subnet(client, keys)
    alice = c["alice"]
    assert await rejection(c["carol"].set_weights([3], [1.0], 3)) == (403, "no_permit")
    assert await rejection(alice.set_weights([3, 99], [1.0, 1.0], 3)) == (400, "unknown_uid")
    assert await rejection(alice.set_weights([3, 3], [1.0, 1.0], 3)) == (400, "duplicate_uid")
    assert await rejection(alice.set_weights([3], [1.0], 4)) == (400, "bad_version")
    assert await rejection(alice.set_weights([3, 4], [1.0], 3)) == (400, "bad_weights")
    assert await rejection(alice.set_weights([3], [-1.0], 3)) == (400, "bad_weights")
    assert await rejection(alice.set_weights([3], [0.0], 3)) == (400, "bad_weights")
    bad_figures = alice.set_weights([3], [1.0], 3, {4: (10, 0.5)})
    assert await rejection(bad_figures) == (400, "bad_figures")
    assert await alice.set_weights([3, 4], [1.0, 1.0], 3) == 0
    assert await rejection(alice.set_weights([3], [1.0], 3)) == (429, "rate_limited")
    await service.advance(100)
    assert await alice.set_weights([3], [1.0], 3) == 100


async def test_malformed_bodies_get_a_4xx(client: Client, keys: dict[str, Keypair]) -> None:
    await setup_subnet(client, keys)
    alice = chain_client(client, keys["alice"])
    url = client.make_url("/v1/weights")
    for body, code in [
        (b"not json", "bad_weights"),
        (b"[1, 2]", "bad_weights"),
        (json.dumps({"uids": [3], "weights": [1.0]}).encode(), "bad_version"),
        (json.dumps({"uids": ["a"], "weights": [1.0], "version_key": 3}).encode(), "bad_weights"),
        (
            json.dumps({"uids": [3], "weights": ["x"], "version_key": 3}).encode(),
            "bad_weights",
        ),
        (
            json.dumps(
                {"uids": [3], "weights": [1], "version_key": 3, "figures": {"3": {"a": 1}}}
            ).encode(),
            "bad_figures",
        ),
    ]:
        async with alice.signer.request("POST", url, signed_for="", body=body) as r:
            assert r.status == 400, body
            assert (await r.json())["error"] == code
    serve = client.make_url("/v1/serve")
    for axon in ({"host": "a b", "port": 1}, {"host": "h", "port": 70000}, {"port": 1}):
        async with alice.signer.request("POST", serve, signed_for="", json=axon) as r:
            assert r.status == 400
            assert (await r.json())["error"] == "bad_axon"


async def test_unsigned_forged_and_impersonating_requests_are_refused(
    client: Client, keys: dict[str, Keypair]
) -> None:
    await setup_subnet(client, keys)
    body = json.dumps({"uids": [3], "weights": [1.0], "version_key": 3}).encode()
    r = await client.post("/v1/weights", data=body)
    assert r.status == 401
    assert (await r.json())["error"] == "missing_header"

    # Mallory signs, then claims the request came from Alice.
    headers = sign_headers(
        keys["miner2"], body_hash=_sha256(body), signed_for="", now_ms=wall_clock_ms()
    )
    headers["Epistula-Signed-By"] = keys["alice"].ss58_address
    r = await client.post("/v1/weights", data=body, headers=headers)
    assert r.status == 401
    assert (await r.json())["error"] == "bad_signature"

    # Signed for another service: refused even with a valid signature.
    headers = sign_headers(
        keys["alice"],
        body_hash=_sha256(body),
        signed_for=keys["miner1"].ss58_address,
        now_ms=wall_clock_ms(),
    )
    r = await client.post("/v1/weights", data=body, headers=headers)
    assert r.status == 401
    assert (await r.json())["error"] == "wrong_signed_for"

    # A validly signed request may only act for its signer.
    carol = chain_client(client, keys["carol"])
    url = client.make_url("/v1/register")
    async with carol.signer.request(
        "POST", url, signed_for="", json={"hotkey": keys["alice"].ss58_address}
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"] == "not_signer"


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def test_round_trip_weights_to_credits_with_figures(
    client: Client, service: ChainService, keys: dict[str, Keypair]
) -> None:
    c = await setup_subnet(client, keys)
    miner1, miner2 = 3, 4
    await c["alice"].set_weights([miner1, miner2], [3.0, 1.0], 3, {miner1: (2**40, 0.99)})
    await c["bob"].set_weights([miner1, miner2], [1.0, 1.0], 3, {miner1: (2**39, 0.5)})
    await service.advance(TEMPO)
    reader = c["carol"]
    assert await reader.block() == TEMPO
    epochs = (await reader.get("/v1/epochs"))["epochs"]
    assert [(e["number"], e["emission"]) for e in epochs] == [(1, TEMPO * TAO)]
    credits = (await reader.get("/v1/ledger", epoch=1))["credits"]
    assert sum(cr["amount"] for cr in credits) == TEMPO * TAO
    by_hotkey = {cr["hotkey"]: cr for cr in credits}
    m1 = by_hotkey[keys["miner1"].ss58_address]
    # Stake-weighted means of what the two validators reported (700 : 300).
    assert m1["capacity_bytes"] == (700 * 2**40 + 300 * 2**39) // 1000
    assert m1["availability"] == pytest.approx(0.7 * 0.99 + 0.3 * 0.5)
    assert m1["incentive"] > by_hotkey[keys["miner2"].ss58_address]["incentive"] > 0
    assert by_hotkey[keys["alice"].ss58_address]["dividends"] > 0
    graph = await reader.metagraph()
    assert graph.neurons[miner1].incentive > graph.neurons[miner2].incentive > 0
    assert graph.neurons[0].last_update == 0
    assert graph.neurons[0].trust > 0
    balances = (await reader.get("/v1/balances"))["balances"]
    assert sum(b["total"] for b in balances) == TEMPO * TAO
    one = (await reader.get("/v1/balances", hotkey=keys["miner1"].ss58_address))["balances"]
    assert one == [
        {"hotkey": keys["miner1"].ss58_address, "total": m1["amount"], "eras": {"0": m1["amount"]}}
    ]
    metrics = await client.get("/metrics")
    assert "chain_block 10.0" in await metrics.text()


async def test_metagraph_policy_allows_permitted_validators(
    client: Client, keys: dict[str, Keypair]
) -> None:
    c = await setup_subnet(client, keys)
    policy = MetagraphPolicy(c["miner1"], refresh_seconds=3600)
    assert not policy.is_allowed(keys["alice"].ss58_address)  # nothing fetched yet
    await policy.refresh()
    assert policy.is_allowed(keys["alice"].ss58_address)
    assert policy.is_allowed(keys["bob"].ss58_address)
    assert not policy.is_allowed(keys["carol"].ss58_address)  # registered, no stake
    assert not policy.is_allowed(keys["owner"].ss58_address)


async def test_the_app_produces_blocks_and_closes_epochs(
    aiohttp_client: Any, service: ChainService, keys: dict[str, Keypair]
) -> None:
    client = await aiohttp_client(make_app(service))
    reader = chain_client(client, keys["carol"])
    for _ in range(200):
        if (await reader.get("/v1/epochs"))["epochs"]:
            break
        await asyncio.sleep(0.02)
    assert await reader.block() >= TEMPO
    health = await client.get("/healthz")
    assert health.status == 200
