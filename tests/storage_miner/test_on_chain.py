"""A miner with ``chain_url`` joins a real local chain: both are real aiohttp servers on
loopback, and every request is signed by real sr25519 hotkeys.

The miner starts before the chain is listening, so it has to retry; once the chain is up it
registers and announces its axon. Who may store is then the static ``validators`` list plus
the metagraph's permitted validators: stake (a permit) gets in, no stake gets 403.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from bittensor_wallet import Keypair

from chain.app import make_app as make_chain_app
from chain.client import ChainClient
from chain.emission import RAO_PER_TAO
from chain.genesis import Genesis
from chain.metagraph import Metagraph
from chain.service import ChainService
from chain.state import LocalChain
from protocol.http import SigningClient
from storage_miner.app import make_app
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.service import MinerService
from storage_miner.settings import MinerSettings
from subnet.processes import free_port
from tests.chain.conftest import open_chain
from tests.storage_miner.helpers import chunks, shard

NAMES = ("Owner", "Staked", "Unstaked", "Listed", "ChainMiner")
KEYS = {name: Keypair.create_from_uri(f"//{name}") for name in NAMES}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[LocalChain]:
    genesis = Genesis(
        KEYS["Owner"].ss58_address,
        stakes={KEYS["Staked"].ss58_address: 1000 * RAO_PER_TAO},
        tempo=10,
        block_interval=0.05,
    )
    yield from open_chain(f"sqlite:///{tmp_path / 'chain.sqlite'}", genesis)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_miner_registers_announces_and_serves_permitted_validators(
    tmp_path: Path,
    chain: LocalChain,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain_port, miner_port = free_port(), free_port()
    chain_url = f"http://127.0.0.1:{chain_port}"
    settings = MinerSettings(
        data_dir=tmp_path / "miner",
        port=miner_port,
        capacity=64 * 2**20,
        validators=(KEYS["Listed"].ss58_address,),
        chain_url=chain_url,
        metagraph_seconds=0.2,
    )
    index = ShardIndex(settings.data_dir / "index.sqlite")
    miner = MinerService(settings, KEYS["ChainMiner"], FsShardStore(settings.data_dir), index)
    miner_server = TestServer(make_app(miner, background=False), port=miner_port)
    service = ChainService(chain, block_interval=0.05)
    chain_server = TestServer(make_chain_app(service), port=chain_port)
    try:
        # The miner first: its chain is not listening yet, so it must retry.
        await miner_server.start_server()
        await asyncio.sleep(0.3)
        await chain_server.start_server()

        reader = ChainClient(chain_url, KEYS["Owner"], session)

        async def miner_listed() -> bool:
            graph: Metagraph = await reader.metagraph()
            neuron = graph.by_hotkey(miner.hotkey)
            return neuron is not None and neuron.axon == f"127.0.0.1:{miner_port}"

        await eventually(miner_listed, "the miner's axon on the metagraph")
        retried = [r for r in caplog.records if r.name == "storage_miner.on_chain"]
        assert retried[0].getMessage() == "chain unreachable or refusing; retrying"

        for name in ("Staked", "Unstaked", "Listed"):
            await ChainClient(chain_url, KEYS[name], session).register()
        graph = await reader.metagraph()
        assert graph.validators == {KEYS["Staked"].ss58_address}

        async def put(name: str, seed: int) -> tuple[int, dict[str, Any]]:
            data, tree = shard(50_000, seed)
            async with SigningClient(session, KEYS[name]).request_stream(
                "PUT",
                f"http://127.0.0.1:{miner_port}/v1/shards/{tree.root.hex()}?leaf_size=16384",
                signed_for=miner.hotkey,
                content_hash=tree.root.hex(),
                body=chunks(data),
                headers={"Content-Length": str(len(data))},
            ) as response:
                return response.status, await response.json()

        async def staked_may_store() -> bool:
            # The miner learns of the new permit at its next metagraph refresh.
            return (await put("Staked", 1))[0] == 201

        await eventually(staked_may_store, "the permitted validator to be allowed")
        status, body = await put("Unstaked", 2)
        assert (status, body["error"]) == (403, "unknown_hotkey")
        status, body = await put("Listed", 3)  # the static allowlist still counts
        assert status == 201, body
    finally:
        await miner_server.close()
        await chain_server.close()
        service.close()
        index.close()


def test_a_chain_miner_needs_an_address_to_announce(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--external-host"):
        MinerSettings(host="0.0.0.0", chain_url="http://127.0.0.1:9944")
    announced = MinerSettings(host="::1", chain_url="http://127.0.0.1:9944").axon_host
    assert announced == "[::1]"
    assert MinerSettings(host="0.0.0.0", external_host="10.0.0.5").axon_host == "10.0.0.5"
