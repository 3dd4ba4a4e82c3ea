"""The services the fuzz suite attacks: a chain (producing blocks), four miners and a validator
with a challenger, each a real aiohttp server on loopback, all on one event loop in a
background thread so that the (synchronous) hypothesis tests can drive them over sockets.

Each service holds data the fuzzer's identities cannot touch, checked after the run: the
``keeper`` user's object on the validator, the ``keeper`` validator's shard on miner 0, and
the chain's ledger (which must keep growing: epochs keep closing).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from bittensor_wallet import Keypair
from sqlalchemy.orm import sessionmaker

from chain.app import make_app as chain_app
from chain.client import ChainClient
from chain.db import make_engine as chain_engine
from chain.db import upgrade as chain_upgrade
from chain.emission import RAO_PER_TAO
from chain.genesis import Genesis
from chain.service import ChainService
from chain.state import ChainParams, LocalChain
from erasure import MerkleTree
from protocol.db import make_engine, upgrade
from protocol.signing import SigningClient
from storage_miner.app import make_app as miner_app
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.service import MinerService
from storage_miner.settings import MinerSettings
from validator.app import make_app as validator_app
from validator.challenger import ChallengePolicy, Challenger
from validator.gateway import Gateway
from validator.log_store import ChallengeLogStore
from validator.miner_client import MinerClient
from validator.settings import ValidatorSettings

T = TypeVar("T")
KEYS = {
    name: Keypair.create_from_uri(f"//Fuzz{name.title()}")
    for name in ("validator", "alice", "bob", "keeper", "v1", "v2")
}
MINER_KEYS = [Keypair.create_from_uri(f"//FuzzMiner{i}") for i in range(4)]
TOKEN = "fuzz-api-token"  # user carol's
CHAIN_VERSION = 3
LEAF = 4096


@dataclass
class Endpoint:
    name: str
    host: str
    port: int
    hotkey: str  # what a request to it is signed for


@dataclass
class Net:
    chain: Endpoint
    miner: Endpoint
    validator: Endpoint
    # Not printed: hypothesis prints the test's arguments when an example fails.
    keeper_object: tuple[str, bytes] = field(default=("", b""), repr=False)  # (id, bytes)
    keeper_shard: tuple[str, bytes] = field(default=("", b""), repr=False)
    chain_service: ChainService | None = field(default=None, repr=False)
    runners: list[web.AppRunner] = field(default_factory=list, repr=False)
    closers: list[Callable[[], Any]] = field(default_factory=list, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's printer
        printer.text(f"Net({self.chain}, {self.miner}, {self.validator})")

    def run(self, job: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(job(), self.loop).result(timeout)


async def _serve(net: Net, app: web.Application, host: str) -> int:
    runner = web.AppRunner(app, access_log=None)  # production's defaults: no cancellation
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    net.runners.append(runner)
    return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


async def _start(net: Net, work: Path) -> None:
    # The chain: v1 and v2 hold permits; weights are never rate limited, so fuzzed figures
    # reach the database and every epoch close (tempo 10 of 0.05 s blocks) meets them.
    chain_url = f"sqlite:///{work / 'chain.sqlite'}"
    chain_upgrade(chain_url)
    engine = chain_engine(chain_url)
    state = LocalChain(engine, ChainParams(version_key=CHAIN_VERSION, weights_rate_limit=0))
    stakes = {
        KEYS["v1"].ss58_address: 600 * RAO_PER_TAO,
        KEYS["v2"].ss58_address: 400 * RAO_PER_TAO,
    }
    state.initialise(Genesis("owner", stakes=stakes, tempo=10, block_interval=0.05))
    net.chain_service = ChainService(state, block_interval=0.05)
    port = await _serve(net, chain_app(net.chain_service), "127.0.0.1")
    net.chain = Endpoint("chain", "127.0.0.1", port, "")
    net.closers.append(net.chain_service.close)

    miners = []
    for i, key in enumerate(MINER_KEYS):
        folder = work / f"miner{i}"
        settings = MinerSettings(
            data_dir=folder,
            validators=(KEYS["validator"].ss58_address, KEYS["keeper"].ss58_address,
                        KEYS["alice"].ss58_address),
            capacity=2**30,
            max_shard_size=4 * 2**20,
        )  # fmt: skip
        service = MinerService(settings, key, FsShardStore(folder), ShardIndex(folder / "i.sqlite"))
        host = f"127.0.0.{20 + i}"
        port = await _serve(net, miner_app(service, background=False), host)
        miners.append((key, host, port))
        net.closers.append(service.index.close)
    key, host, port = miners[0]
    net.miner = Endpoint("miner", host, port, key.ss58_address)

    validator_url = f"sqlite:///{work / 'validator.sqlite'}"
    upgrade(validator_url, "validator")
    v_engine = make_engine(validator_url)
    sessions = sessionmaker(v_engine, expire_on_commit=False)
    http = aiohttp.ClientSession()
    client = MinerClient(SigningClient(http, KEYS["validator"]), timeout=10)
    settings = ValidatorSettings(
        users=tuple(f"{n}={KEYS[n].ss58_address}" for n in ("alice", "bob", "keeper")),
        miners=tuple(f"{k.ss58_address}@{h}:{p}" for k, h, p in miners),
        k=2,
        m=4,
        extra_receipts=0,
        segment_size=64 * 1024,
        leaf_size=LEAF,
        max_object_size=2**20,
        upload_stall_seconds=2.0,
    )
    gateway = Gateway(sessions, client)
    gateway.sync_users(settings.users)
    gateway.sync_tokens((f"carol={TOKEN}",))
    gateway.sync_miners(settings.miners)
    await gateway.refresh_miners()
    checker = Challenger(
        sessions, client, ChallengeLogStore(sessions, KEYS["validator"]), ChallengePolicy()
    )
    app = validator_app(
        gateway, settings, KEYS["validator"].ss58_address, challenger=checker, background=False
    )
    port = await _serve(net, app, "127.0.0.1")
    net.validator = Endpoint("validator", "127.0.0.1", port, KEYS["validator"].ss58_address)
    await checker.run_round()  # something in the challenge log to page through

    async def close_http() -> None:
        await http.close()

    net.closers.append(close_http)
    net.closers.append(v_engine.dispose)

    # The data the fuzzer must not be able to hurt.
    data = random.Random(14).randbytes(150_000)
    keeper = SigningClient(http, KEYS["keeper"])
    url = f"http://127.0.0.1:{port}/v1/objects?name=kept&encrypt=0"
    async with keeper.request_stream(
        "PUT", url, signed_for=net.validator.hotkey,
        content_hash="sha256:" + hashlib.sha256(data).hexdigest(), body=data,
    ) as r:  # fmt: skip
        assert r.status == 201, await r.text()
        net.keeper_object = ((await r.json())["object_id"], data)
    shard = random.Random(15).randbytes(20_000)
    root = MerkleTree.build(shard, LEAF).root.hex()
    async with keeper.request_stream(
        "PUT", f"http://{net.miner.host}:{net.miner.port}/v1/shards/{root}?leaf_size={LEAF}",
        signed_for=net.miner.hotkey, content_hash=root, body=shard,
    ) as r:  # fmt: skip
        assert r.status == 201, await r.text()
    net.keeper_shard = (root, shard)
    chain = f"http://127.0.0.1:{net.chain.port}"
    for name in ("v1", "v2"):
        await ChainClient(chain, KEYS[name], http).register()
    for key in MINER_KEYS:
        await ChainClient(chain, key, http).register()


def start(work: Path) -> Net:
    net = Net(*(Endpoint("", "", 0, "") for _ in range(3)))
    loop = asyncio.new_event_loop()
    net.loop = loop
    net.thread = threading.Thread(target=loop.run_forever, name="fuzzed-services", daemon=True)
    net.thread.start()
    net.run(lambda: _start(net, work))
    return net


def stop(net: Net) -> None:
    async def cleanup() -> None:
        for runner in reversed(net.runners):
            await runner.cleanup()
        for close in reversed(net.closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result

    net.run(cleanup)
    assert net.loop is not None and net.thread is not None
    net.loop.call_soon_threadsafe(net.loop.stop)
    net.thread.join(10)
    net.loop.close()
