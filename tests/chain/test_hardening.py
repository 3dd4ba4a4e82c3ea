"""The chain under hostile input (issue 14): figures that overflow the ledger are refused at
the door, a bad row already stored never stops an epoch close, and input that used to be a
500 is a 4xx JSON error. A real loopback server, signed by real sr25519 hotkeys."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from bittensor_wallet import Keypair
from sqlalchemy import select

from chain.app import make_app
from chain.client import ChainClient, ChainRequestError
from chain.emission import RAO_PER_TAO
from chain.genesis import Genesis
from chain.models import WeightsRow
from chain.service import ChainService
from chain.state import ChainParams, LocalChain
from tests.chain.conftest import open_chain

TEMPO = 10
VERSION = 3
KEYS = {name: Keypair.create_from_uri(f"//Hardening{name}") for name in ("v1", "v2", "m1", "m2")}
Client = TestClient[Any, Any]


@pytest.fixture
def chain(db_url: str) -> Iterator[LocalChain]:
    genesis = Genesis(
        "owner",
        stakes={KEYS["v1"].ss58_address: 6 * RAO_PER_TAO, KEYS["v2"].ss58_address: 4 * RAO_PER_TAO},
        tempo=TEMPO,
        block_interval=0.01,
    )  # fmt: skip
    yield from open_chain(db_url, genesis, ChainParams(version_key=VERSION, weights_rate_limit=0))


@pytest.fixture
async def service(chain: LocalChain) -> AsyncIterator[ChainService]:
    service = ChainService(chain, block_interval=0.01)
    yield service
    service._db.shutdown(wait=True)


@pytest.fixture
async def client(service: ChainService) -> AsyncIterator[Client]:
    async with TestClient(TestServer(make_app(service, background=False))) as client:
        for key in KEYS.values():  # uids 0..3 in this order
            await as_(client, key).register()
        yield client


def as_(client: Client, key: Keypair) -> ChainClient:
    return ChainClient(str(client.make_url("")), key, client.session)


async def post(client: Client, key: Keypair, path: str, body: bytes, **headers: str) -> Any:
    signer = as_(client, key).signer
    url = client.make_url(path)
    async with signer.request("POST", url, signed_for="", body=body, headers=headers) as r:
        return r.status, (await r.json())["error"] if r.status >= 400 else await r.json()


def weights(figures: Any, values: Any = (1.0, 1.0)) -> bytes:
    body = {"uids": [2, 3], "weights": list(values), "version_key": VERSION, "figures": figures}
    return json.dumps(body).encode()


async def test_figures_that_would_overflow_the_ledger_are_refused_at_the_door(
    client: Client,
) -> None:
    v1 = KEYS["v1"]
    for figures in (
        {"2": {"capacity_bytes": 10**30, "availability": 0.5}},
        {"2": {"capacity_bytes": 2**63, "availability": 0.5}},
        {"2": {"capacity_bytes": -1, "availability": 0.5}},
        {"2": {"capacity_bytes": 1.5, "availability": 0.5}},
        {"2": {"capacity_bytes": 10, "availability": 1.0000001}},
        {"2": {"capacity_bytes": 10, "availability": 1e308}},
        {"2": {"capacity_bytes": 10, "availability": True}},
        {"9" * 30: {"capacity_bytes": 10, "availability": 0.5}},
        {"1_0": {"capacity_bytes": 10, "availability": 0.5}},
    ):
        assert await post(client, v1, "/v1/weights", weights(figures)) == (400, "bad_figures")
    nan = weights({"2": {"capacity_bytes": 10, "availability": float("nan")}})
    assert await post(client, v1, "/v1/weights", nan) == (400, "bad_weights")  # not JSON
    biggest = {"2": {"capacity_bytes": 2**63 - 1, "availability": 1.0}}
    status, _ = await post(client, v1, "/v1/weights", weights(biggest))
    assert status == 200


async def test_weights_near_the_float_limit_are_normalised_not_a_500(client: Client) -> None:
    v1 = KEYS["v1"]
    status, _ = await post(client, v1, "/v1/weights", weights(None, (1e308, 1e308)))
    assert status == 200
    for values in ((10**400, 1), (1e308, -1e308), (0, 0)):
        code = await post(client, v1, "/v1/weights", weights(None, values))
        assert code[0] == 400, values
    # A stranger with weights of 1e308 is refused for who it is, not for a crash.
    stranger = Keypair.create_from_uri("//HardeningStranger")
    answer = await post(client, stranger, "/v1/weights", weights(None, (1e308, 1e308)))
    assert answer == (403, "not_registered")


async def test_a_bad_row_already_stored_is_skipped_and_reported_and_the_close_goes_on(
    client: Client, service: ChainService, chain: LocalChain, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"2": {"capacity_bytes": 2**40, "availability": 0.9}}
    assert (await post(client, KEYS["v1"], "/v1/weights", weights(good)))[0] == 200
    assert (await post(client, KEYS["v2"], "/v1/weights", weights(good)))[0] == 200
    # As an older version (or a hand edit) might have left them: figures that do not fit
    # the ledger on v1's row, weights on a uid nobody holds on v2's.
    with chain.sessions.begin() as s:
        rows = {r.validator_uid: r for r in s.scalars(select(WeightsRow))}
        rows[0].figures = {"2": {"capacity_bytes": 10**30, "availability": 0.5}}
        rows[1].uids = [2, 99]
    caplog.set_level(logging.WARNING)
    closed = await service.advance(TEMPO)
    assert [e.number for e in closed] == [1]
    assert len(closed[0].skipped) == 2
    assert any("figures of uid 0" in why for why in closed[0].skipped)
    assert any("weights of uid 1" in why for why in closed[0].skipped)
    assert (
        sum(r.getMessage() == "epoch close left out a malformed row" for r in caplog.records) == 2
    )
    credits = await service.ledger(epoch=1, era=None, hotkey=None)
    assert sum(c.amount for c in credits) == (await service.run(chain.epochs))[0].emission
    miner = next(c for c in credits if c.uid == 2)
    # v1's figures were left out; v2's (its weights row aside) stand alone.
    assert (miner.capacity_bytes, miner.availability) == (2**40, 0.9)
    # And the next epochs close too: nothing stored halts issuance.
    assert [e.number for e in await service.advance(2 * TEMPO)] == [2, 3]
    metrics = await (await client.get("/metrics")).text()
    assert "chain_epoch_rows_skipped 6.0" in metrics


async def test_input_that_used_to_be_a_500_is_a_4xx(client: Client) -> None:
    v1 = KEYS["v1"]
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert await post(client, v1, "/v1/register", deep) == (400, "bad_request")
    just_deep_enough = b'{"a": ' + b"[" * 31 + b"]" * 31 + b"}"
    assert (await post(client, v1, "/v1/register", just_deep_enough))[0] == 200
    brackets_in_strings = json.dumps({"a": "[" * 1000}).encode()
    assert (await post(client, v1, "/v1/register", brackets_in_strings))[0] == 200
    charset = {"Content-Type": "application/json; charset=klingon"}
    assert await post(client, v1, "/v1/register", b"{}", **charset) == (415, "unsupported_charset")
    latin1 = {"Content-Type": "application/json; charset=latin-1"}
    assert await post(client, v1, "/v1/register", b"{}", **latin1) == (415, "unsupported_charset")
    surrogate = b'{"host": "a\\ud800b", "port": 8091}'
    assert await post(client, v1, "/v1/serve", surrogate) == (400, "bad_axon")
    pair = b'{"host": "\\ud83d\\ude00", "port": 8091}'  # a valid pair: not a 500
    assert (await post(client, v1, "/v1/serve", pair))[0] == 400
    assert await post(client, v1, "/v1/register", b"\xff\xfe{}") == (400, "bad_request")
    for target in (
        "/v1/ledger?epoch=99999999999999999999",
        "/v1/ledger?era=-1",
        "/v1/ledger?epoch=%D9%A3",  # an Arabic-Indic digit: int() takes it, we do not
        "/v1/epochs?limit=1" + "0" * 30,
        "/v1/balances?hotkey=a%00b",
    ):
        response = await client.get(target)
        assert (response.status, (await response.json())["error"]) == (400, "bad_query")


async def test_the_chain_client_sees_a_4xx_for_figures_out_of_range(client: Client) -> None:
    with pytest.raises(ChainRequestError) as caught:
        await as_(client, KEYS["v1"]).set_weights([2], [1.0], VERSION, {2: (10**30, 0.5)})
    assert (caught.value.status, caught.value.code) == (400, "bad_figures")
