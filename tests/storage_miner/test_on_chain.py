"""A miner with ``chain_url`` joins a real local chain: both are real aiohttp servers on
loopback, and every request is signed by real sr25519 hotkeys.

The miner starts before the chain is listening, so it has to retry; once the chain is up it
registers and announces its axon. Who may store is then the static ``validators`` list plus
the metagraph's permitted validators: stake (a permit) gets in, no stake gets 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from bittensor_wallet import Keypair, Wallet

from chain.app import make_app as make_chain_app
from chain.client import ChainClient
from chain.emission import RAO_PER_TAO
from chain.genesis import Genesis
from chain.metagraph import Metagraph
from chain.service import ChainService
from chain.state import LocalChain
from protocol.settings import SettingsError, load_settings
from protocol.signing import SigningClient
from protocol.wallet import create_wallet
from storage_miner.app import make_app
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.on_chain import ChainPresence
from storage_miner.service import MinerService
from storage_miner.settings import MinerSettings
from subnet.processes import free_port
from tests.chain.conftest import open_chain
from tests.chain.fake_subtensor import FakeSubtensor
from tests.storage_miner.helpers import chunks, shard
from validator.settings import ValidatorSettings

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
    announced = MinerSettings(host="::1", chain_url="http://127.0.0.1:9944").axon
    assert announced == ("[::1]", 8091)
    behind = MinerSettings(host="0.0.0.0", external_host="10.0.0.5", external_port=443)
    assert behind.axon == ("10.0.0.5", 443)


async def test_on_subtensor_the_miner_registers_with_yes_serves_its_ip_and_rejoins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``ChainPresence`` over :class:`SubtensorChain` (the real SDK, the in-memory subtensor):
    with --yes it registers (the coldkey pays), announces its IP and port, allows permitted
    validators, and registers again after losing its UID; without --yes that is refused and
    logged, and nothing is burned."""
    from chain.subtensor import SubtensorChain  # noqa: PLC0415 - as on_chain imports it

    wallets = tmp_path / "wallets"
    hotkey = create_wallet("miner", "default", wallets).ss58_address
    coldkey = Wallet(name="miner", path=str(wallets)).get_coldkeypub().ss58_address
    fake = FakeSubtensor()
    fake.balances[coldkey] = 2 * RAO_PER_TAO
    fake.add_neuron(KEYS["Staked"].ss58_address, "cold", stake=1000 * RAO_PER_TAO)
    fake.add_neuron(KEYS["Unstaked"].ss58_address, "cold")

    def presence(yes: bool) -> ChainPresence:
        def open_chain() -> SubtensorChain:
            return SubtensorChain(
                "local",
                fake.netuid,
                wallet_name="miner",
                wallet_hotkey="default",
                wallet_path=wallets,
                confirm=(lambda _quote: True) if yes else None,
                substrate=fake,
            )

        return ChainPresence(open_chain, hotkey, "203.0.113.7", 8091, 0.05, name="local/7")

    async def until(check: Callable[[], bool], what: str) -> None:
        async def ready() -> bool:
            return check()

        await eventually(ready, what)

    joined = presence(yes=True)
    task = asyncio.create_task(joined.run())
    try:
        await until(lambda: joined.uid == 2, "the miner's UID")
        [registration] = fake.calls("burned_register")
        assert (registration.signer, registration.params["hotkey"]) == (coldkey, hotkey)
        [served] = fake.calls("serve_axon")
        assert served.signer == hotkey
        assert (served.params["ip"], served.params["port"]) == (0xCB007107, 8091)
        await until(lambda: joined.policy.is_allowed(KEYS["Staked"].ss58_address), "a permit")
        assert not joined.policy.is_allowed(KEYS["Unstaked"].ss58_address)

        del fake.neurons[2]  # pruned: it has to register again
        await until(lambda: len(fake.calls("burned_register")) == 2, "a second registration")
        await until(lambda: len(fake.calls("serve_axon")) == 2, "a second announcement")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    del fake.neurons[2]
    unconfirmed = presence(yes=False)
    task = asyncio.create_task(unconfirmed.run())
    try:
        await until(
            lambda: any("registration_not_confirmed" in str(r.__dict__) for r in caplog.records),
            "the refusal in the log",
        )
        assert len(fake.calls("burned_register")) == 2  # nothing more was burned
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_subtensor_settings_come_from_flags_env_and_toml(tmp_path: Path) -> None:
    config = tmp_path / "miner.toml"
    config.write_text('network = "test"\nnetuid = 42\nexternal_host = "203.0.113.7"\n')
    from_file = load_settings(MinerSettings, env_prefix="SUBNET_MINER", config_file=config, env={})
    assert (from_file.network, from_file.netuid, from_file.yes) == ("test", 42, False)
    env = {"SUBNET_MINER_NETWORK": "ws://10.0.0.9:9944", "SUBNET_MINER_YES": "true"}
    from_env = load_settings(MinerSettings, env_prefix="SUBNET_MINER", config_file=config, env=env)
    assert (from_env.network, from_env.netuid, from_env.yes) == ("ws://10.0.0.9:9944", 42, True)
    with pytest.raises(SettingsError, match="not both"):
        load_settings(
            MinerSettings,
            env_prefix="SUBNET_MINER",
            config_file=config,
            env={},
            overrides={"chain_url": "http://127.0.0.1:9944"},
        )
    with pytest.raises(SettingsError, match="needs --netuid"):
        load_settings(ValidatorSettings, env_prefix="V", env={"V_NETWORK": "finney"})
    with pytest.raises(SettingsError, match="needs --network"):
        load_settings(ValidatorSettings, env_prefix="V", env={"V_NETUID": "3"})
    with pytest.raises(SettingsError, match="not one of"):
        load_settings(
            ValidatorSettings, env_prefix="V", env={"V_NETWORK": "mainnet", "V_NETUID": "3"}
        )
    with pytest.raises(ValueError, match="IP address"):
        MinerSettings(network="test", netuid=42, host="0.0.0.0", external_host="miner.example.org")
