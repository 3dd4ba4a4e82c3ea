"""The validator on a real chain app: miners from the metagraph, weights with figures."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from bittensor_wallet import Keypair, Wallet
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from chain.app import make_app as make_chain_app
from chain.client import ChainClient, ChainRequestError
from chain.emission import RAO_PER_TAO as TAO
from chain.genesis import Genesis
from chain.service import ChainService
from chain.state import ChainParams
from tests.chain.conftest import open_chain
from tests.chain.fake_subtensor import FakeSubtensor
from tests.validator.conftest import VALIDATOR, LiveMiner
from tests.validator.test_challenger import challenger
from validator.chain_sync import ChainSync, ChainSyncMetrics
from validator.gateway import Gateway
from validator.miner_client import MinerClient
from validator.models import Miner, User
from validator.uploads import UploadOptions

from .test_uploads import PARAMS, stream

TEMPO = 10


@pytest.fixture
def chain_service(tmp_path: Path) -> Iterator[ChainService]:
    genesis = Genesis(
        "owner", stakes={VALIDATOR.ss58_address: 1000 * TAO}, tempo=TEMPO, block_interval=0.01
    )
    for chain in open_chain(f"sqlite:///{tmp_path / 'chain.sqlite'}", genesis, ChainParams()):
        service = ChainService(chain, block_interval=0.01)
        yield service
        service._db.shutdown(wait=True)


@pytest.fixture
async def chain_http(chain_service: ChainService) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_chain_app(chain_service, background=False))) as client:
        yield client


async def test_miners_come_from_the_metagraph_and_weights_carry_figures(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    chain_service: ChainService,
    chain_http: TestClient[Any, Any],
) -> None:
    url = str(chain_http.make_url(""))
    for miner in live_miners:  # what a miner with --chain-url does at start
        own = ChainClient(url, miner.key, chain_http.session)
        await own.register()
        await own.serve_axon(miner.server.host, miner.server.port)
    gateway = Gateway(sessions, miner_client)
    checker = challenger(sessions, miner_client)
    sync = ChainSync(
        ChainClient(url, VALIDATOR, chain_http.session),
        gateway,
        checker,
        VALIDATOR.ss58_address,
        metagraph_seconds=1,
        weights_seconds=1,
        disqualify_below=0.6,
        axon=("127.0.0.9", 8090),
    )
    uid = await sync.register()
    assert uid == await sync.register()  # idempotent
    graph = await sync.sync_miners()
    assert len(gateway.candidates()) == 8  # its own axon is not taken for a miner's
    # The validator announced its address, as a miner does, and the next read shows it.
    shown = (await sync.sync_miners()).by_hotkey(VALIDATOR.ss58_address)
    assert shown is not None and (shown.uid, shown.axon) == (uid, "127.0.0.9:8090")
    with sessions() as session:
        uids = dict(session.execute(select(Miner.hotkey, Miner.uid)).all())
    assert uids == {n.hotkey: n.uid for n in graph.neurons if n.hotkey != VALIDATOR.ss58_address}
    assert await sync.send_weights() is None  # nothing verified yet: nothing sent

    with sessions.begin() as session:
        user = User(name="alice", created_at=datetime.now(UTC))
        session.add(user)
        session.flush()
        owner = user.id
    data = random.Random(5).randbytes(500_000)
    await gateway.uploader.upload(owner, "a", stream(data), UploadOptions(PARAMS))
    await checker.run_round()
    sent = await sync.send_weights()
    assert sent is not None
    assert abs(sum(sent.weights.values()) - 1) < 1e-9
    verified = {hotkey: figures[0] for hotkey, figures in sent.figures.items()}
    assert all(v > 0 for v in verified.values())
    await chain_service.advance(TEMPO)
    credits = (await ChainClient(url, VALIDATOR, chain_http.session).get("/v1/ledger", epoch=1))[
        "credits"
    ]
    by_hotkey = {c["hotkey"]: c for c in credits}
    for miner in live_miners:
        row = by_hotkey[miner.key.ss58_address]
        assert row["incentive"] > 0
        assert row["capacity_bytes"] == verified[miner.key.ss58_address]
        assert row["availability"] == pytest.approx(1.0)
    # A miner that leaves the metagraph is no longer placed on.
    with sessions.begin() as session:
        gone = session.scalar(select(Miner).where(Miner.hotkey == live_miners[0].key.ss58_address))
        assert gone is not None
    gateway.upsert_chain_miners(
        [
            (m.key.ss58_address, m.server.host, m.server.port, i)
            for i, m in enumerate(live_miners[1:])
        ]
    )
    with sessions() as session:
        row = session.scalar(select(Miner).where(Miner.hotkey == live_miners[0].key.ss58_address))
        assert row is not None
        assert (row.active, row.uid) == (False, None)
        assert row.deregistered_at is not None  # its shards go to repair


def btcli_wallet(root: Path, name: str, key: Keypair) -> None:
    """``key`` as btcli would store it: ``<root>/<name>/hotkeys/default`` and a coldkeypub."""
    wallet = Wallet(name=name, hotkey="default", path=str(root))
    wallet.set_hotkey(key, encrypt=False, overwrite=True)
    wallet.set_coldkeypub(key, overwrite=True)


async def test_on_subtensor_weights_go_out_as_u16_by_uid_and_figures_stay_home(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
) -> None:
    """The same validator loop over :class:`SubtensorChain` and the real SDK, against the
    in-memory subtensor: the miners it places on come from subtensor's metagraph, and the
    weights subtensor receives are the validator's, by UID, as u16, with the subnet's version
    key and none of the reward figures (those stay in its records and /metrics)."""
    from chain.subtensor import SubtensorChain  # noqa: PLC0415 - as the runner imports it

    fake = FakeSubtensor(version_key=2, weights_rate_limit=100)
    fake.add_neuron(VALIDATOR.ss58_address, VALIDATOR.ss58_address, stake=1000 * TAO)
    for miner in live_miners:  # miners that registered and served their axons
        uid = fake.add_neuron(miner.key.ss58_address, miner.key.ss58_address)
        fake.neurons[uid].axon = (
            int(ipaddress.ip_address(miner.server.host)),
            miner.server.port,
            4,
        )
    btcli_wallet(tmp_path / "wallets", "validator", VALIDATOR)
    chain = SubtensorChain(
        "local",
        fake.netuid,
        wallet_name="validator",
        wallet_hotkey="default",
        wallet_path=tmp_path / "wallets",
        substrate=fake,  # no confirm: registering now would be refused, and is not needed
    )
    gateway = Gateway(sessions, miner_client)
    checker = challenger(sessions, miner_client)
    sync = ChainSync(
        chain,
        gateway,
        checker,
        VALIDATOR.ss58_address,
        metagraph_seconds=1,
        weights_seconds=1,
        disqualify_below=0.6,
        axon=("10.0.0.9", 8090),
    )
    registry = CollectorRegistry()
    sync.metrics = ChainSyncMetrics(registry)
    assert await sync.register() == fake.uid(VALIDATOR.ss58_address) == 0
    await sync.sync_miners()
    assert len(gateway.candidates()) == 8
    # Its address went out through the SDK's ServeAxon, signed by its hotkey, once: the
    # next metagraph shows it there.
    [served] = fake.calls("serve_axon")
    assert served.signer == VALIDATOR.ss58_address
    assert (served.params["ip"], served.params["port"]) == (
        int(ipaddress.ip_address("10.0.0.9")), 8090,
    )  # fmt: skip
    await sync.sync_miners()
    assert len(fake.calls("serve_axon")) == 1
    with sessions() as session:
        uids = dict(session.execute(select(Miner.hotkey, Miner.uid)).all())
    assert uids == {m.key.ss58_address: fake.uid(m.key.ss58_address) for m in live_miners}

    with sessions.begin() as session:
        user = User(name="alice", created_at=datetime.now(UTC))
        session.add(user)
        session.flush()
        owner = user.id
    await gateway.uploader.upload(
        owner, "a", stream(random.Random(6).randbytes(500_000)), UploadOptions(PARAMS)
    )
    await checker.run_round()
    sent = await sync.send_weights()
    assert sent is not None

    [call] = fake.calls("set_mechanism_weights")
    assert call.signer == VALIDATOR.ss58_address
    assert set(call.params) == {"netuid", "mecid", "dests", "weights", "version_key"}
    assert (call.params["netuid"], call.params["version_key"]) == (fake.netuid, 2)
    top = max(sent.weights.values())
    by_uid = {fake.uid(hotkey): weight for hotkey, weight in sent.weights.items() if weight > 0}
    assert call.params["dests"] == sorted(by_uid)
    assert call.params["weights"] == [round(by_uid[u] / top * 65535) for u in sorted(by_uid)]
    assert max(call.params["weights"]) == 65535
    for hotkey, (capacity, availability) in sent.figures.items():
        labels = {"hotkey": hotkey}
        assert registry.get_sample_value("validator_miner_capacity_bytes", labels) == capacity
        assert registry.get_sample_value("validator_miner_availability", labels) == availability
    assert registry.get_sample_value("validator_weights_block") == call.block

    # Too soon: refused before signing, with the wait until the next allowed block.
    with pytest.raises(ChainRequestError) as refused:
        await sync.send_weights()
    assert refused.value.code == "rate_limited"
    assert refused.value.retry_after == pytest.approx(100 * 12.0)
    assert registry.get_sample_value("validator_weights_refused_total", {"code": "rate_limited"})
    assert len(fake.calls("set_mechanism_weights")) == 1
