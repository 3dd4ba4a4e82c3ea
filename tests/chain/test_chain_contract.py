"""One contract for :class:`chain.client.Chain`, run against every implementation:

- ``embedded``: :class:`ChainClient` over the embedded chain's real HTTP app (a loopback
  server, requests signed by real sr25519 hotkeys);
- ``subtensor``: :class:`SubtensorChain` driving the real bittensor SDK, whose chain backend
  is the in-memory subtensor of ``fake_subtensor.py`` (the SDK's own ``Substrate`` seam);
  wallets are files in the btcli layout, written by ``subnet wallet create``'s code;
- ``live``: :class:`SubtensorChain` against a real subtensor at ``$SUBTENSOR_URL``, opt-in
  with ``-m live_subtensor`` and skipped (with the reason) when the variable is unset.

The same statements hold for each: registration is idempotent and shows in the metagraph,
an announced axon is what the metagraph reports, permits follow stake, weights are accepted
and stamped with their block, the weights rate limit refuses a second setting until enough
blocks passed, and a stale version key or a miner without a permit is refused.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from bittensor_wallet import Keypair, Wallet

from chain.app import make_app
from chain.client import Chain, ChainClient, ChainRequestError
from chain.emission import RAO_PER_TAO
from chain.genesis import Genesis
from chain.service import ChainService
from chain.state import ChainParams
from protocol.wallet import create_wallet
from tests.chain.conftest import open_chain
from tests.chain.fake_subtensor import FakeSubtensor

RATE_LIMIT = 5
VERSION_KEY = 3
NAMES = ("validator", "miner0", "miner1")


@dataclass
class Net:
    """A subnet to test against: a staked validator, two unstaked miners, and a clock."""

    chains: dict[str, Chain]
    hotkeys: dict[str, str]
    rate_limit: int
    version_key: int
    advance: Callable[[int], Awaitable[object]]

    @property
    def validator(self) -> Chain:
        return self.chains["validator"]


async def embedded(tmp_path: Path) -> AsyncIterator[Net]:
    keys = {name: Keypair.create_from_uri(f"//{name.title()}") for name in NAMES}
    genesis = Genesis(
        "owner",
        stakes={keys["validator"].ss58_address: 1000 * RAO_PER_TAO},
        tempo=360,
        block_interval=0.01,
    )
    params = ChainParams(weights_rate_limit=RATE_LIMIT, version_key=VERSION_KEY)
    for chain in open_chain(f"sqlite:///{tmp_path / 'chain.sqlite'}", genesis, params):
        service = ChainService(chain, block_interval=0.01)
        try:
            async with TestClient(TestServer(make_app(service, background=False))) as client:
                url = str(client.make_url(""))
                yield Net(
                    chains={n: ChainClient(url, k, client.session) for n, k in keys.items()},
                    hotkeys={n: k.ss58_address for n, k in keys.items()},
                    rate_limit=RATE_LIMIT,
                    version_key=VERSION_KEY,
                    advance=service.advance,
                )
        finally:
            service._db.shutdown(wait=True)


def btcli_wallets(root: Path) -> dict[str, tuple[str, str]]:
    """Wallets in the btcli layout: name -> (hotkey address, coldkey address)."""
    made = {}
    for name in NAMES:
        hotkey = create_wallet(name, "default", root)
        coldkey = Wallet(name=name, path=str(root)).get_coldkeypub().ss58_address
        made[name] = (hotkey.ss58_address, coldkey)
    return made


async def subtensor(tmp_path: Path) -> AsyncIterator[Net]:
    from chain.subtensor import SubtensorChain  # noqa: PLC0415 - as the services import it

    wallets = btcli_wallets(tmp_path / "wallets")
    fake = FakeSubtensor(weights_rate_limit=RATE_LIMIT, version_key=VERSION_KEY)
    for _, coldkey in wallets.values():
        fake.balances[coldkey] = 10 * RAO_PER_TAO
    fake.stake_of[wallets["validator"][0]] = 1000 * RAO_PER_TAO  # btcli stake add, in short
    chains = {
        name: SubtensorChain(
            "local",
            fake.netuid,
            wallet_name=name,
            wallet_hotkey="default",
            wallet_path=tmp_path / "wallets",
            confirm=lambda _quote: True,
            substrate=fake,
        )
        for name in NAMES
    }

    async def advance(blocks: int) -> None:
        fake.advance(blocks)

    try:
        yield Net(
            chains=dict(chains),
            hotkeys={name: hotkey for name, (hotkey, _) in wallets.items()},
            rate_limit=RATE_LIMIT,
            version_key=VERSION_KEY,
            advance=advance,
        )
    finally:
        for chain in chains.values():
            await chain.close()


def live_settings() -> tuple[str, int, Path]:
    url = os.environ.get("SUBTENSOR_URL")
    if not url:
        pytest.skip("SUBTENSOR_URL is not set: no subtensor to test against (opt-in)")
    netuid = int(os.environ["SUBTENSOR_NETUID"])
    path = Path(os.environ.get("SUBTENSOR_WALLETS", "~/.bittensor/wallets")).expanduser()
    return url, netuid, path


async def live(_tmp_path: Path) -> AsyncIterator[Net]:
    """A real subtensor: $SUBTENSOR_URL (ws://...), $SUBTENSOR_NETUID, and funded wallets
    named validator (staked enough for a permit), miner0 and miner1 under
    $SUBTENSOR_WALLETS (default ~/.bittensor/wallets). Registration happens for real."""
    from chain.subtensor import SubtensorChain  # noqa: PLC0415

    url, netuid, path = live_settings()
    chains = {
        name: SubtensorChain(
            url,
            netuid,
            wallet_name=name,
            wallet_hotkey="default",
            wallet_path=path,
            confirm=lambda _quote: True,
        )
        for name in NAMES
    }
    probe = chains["validator"]
    client, _ = await probe._ready()
    rate_limit = int(await client.query(("SubtensorModule", "WeightsSetRateLimit"), [netuid]))
    block_time = await client.block_time()
    version_key = (await probe.metagraph()).version_key

    async def advance(blocks: int) -> None:
        target = await probe.block() + blocks
        while await probe.block() < target:  # noqa: ASYNC110 - the chain's head, not an Event
            await asyncio.sleep(block_time / 2)

    try:
        yield Net(
            chains=dict(chains),
            hotkeys={name: chain.hotkey for name, chain in chains.items()},
            rate_limit=rate_limit,
            version_key=version_key,
            advance=advance,
        )
    finally:
        for chain in chains.values():
            await chain.close()


@pytest.fixture(
    params=[
        "embedded",
        "subtensor",
        pytest.param("live", marks=pytest.mark.live_subtensor),
    ]
)
async def net(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Net]:
    make: Callable[[Path], AsyncIterator[Net]] = {
        "embedded": embedded,
        "subtensor": subtensor,
        "live": live,
    }[request.param]
    async for value in make(tmp_path):
        yield value


async def register_all(net: Net) -> dict[str, int]:
    return {name: await chain.register() for name, chain in net.chains.items()}


async def refusal(call: Awaitable[Any]) -> ChainRequestError:
    with pytest.raises(ChainRequestError) as info:
        await call
    return info.value


async def test_registration_is_idempotent_and_in_the_metagraph(net: Net) -> None:
    uids = await register_all(net)
    assert len(set(uids.values())) == len(NAMES)
    assert await net.chains["miner0"].register() == uids["miner0"]  # again: the same UID
    graph = await net.validator.metagraph()
    for name, uid in uids.items():
        neuron = graph.by_hotkey(net.hotkeys[name])
        assert neuron is not None
        assert neuron.uid == uid
        assert neuron.registered_at <= graph.block
    assert graph.version_key == net.version_key


async def test_an_announced_axon_is_what_the_metagraph_reports(net: Net) -> None:
    await register_all(net)
    await net.chains["miner0"].serve_axon("10.0.0.2", 8091)
    await net.chains["miner1"].serve_axon("[2001:db8::7]", 8092)
    graph = await net.validator.metagraph()
    axons = {name: graph.by_hotkey(hotkey) for name, hotkey in net.hotkeys.items()}
    assert axons["miner0"] is not None and axons["miner0"].axon == "10.0.0.2:8091"
    assert axons["miner1"] is not None and axons["miner1"].axon == "[2001:db8::7]:8092"
    assert axons["validator"] is not None and axons["validator"].axon is None


async def test_permits_follow_stake(net: Net) -> None:
    await register_all(net)
    graph = await net.validator.metagraph()
    assert net.hotkeys["validator"] in graph.validators
    assert not {net.hotkeys["miner0"], net.hotkeys["miner1"]} & graph.validators
    staked = graph.by_hotkey(net.hotkeys["validator"])
    assert staked is not None and staked.stake > 0


async def test_weights_are_stamped_then_rate_limited_until_enough_blocks(net: Net) -> None:
    uids = await register_all(net)
    miners = [uids["miner0"], uids["miner1"]]
    await net.advance(net.rate_limit)  # a live validator may have set weights just before
    block = await net.validator.set_weights(miners, [0.25, 0.75], net.version_key)
    graph = await net.validator.metagraph()
    me = graph.by_hotkey(net.hotkeys["validator"])
    assert me is not None and me.last_update == block

    refused = await refusal(net.validator.set_weights(miners, [0.5, 0.5], net.version_key))
    assert (refused.status, refused.code) == (429, "rate_limited")

    await net.advance(net.rate_limit)
    later = await net.validator.set_weights(miners, [0.5, 0.5], net.version_key)
    assert later >= block + net.rate_limit


async def test_stale_version_keys_and_miners_without_permits_are_refused(net: Net) -> None:
    uids = await register_all(net)
    miners = [uids["miner0"], uids["miner1"]]
    before = await net.validator.metagraph()
    stale = await refusal(net.validator.set_weights(miners, [0.5, 0.5], net.version_key - 1))
    assert 400 <= stale.status < 500
    assert stale.code != "rate_limited"
    no_permit = await refusal(
        net.chains["miner0"].set_weights([uids["miner1"]], [1.0], net.version_key)
    )
    assert no_permit.status == 403
    after = await net.validator.metagraph()
    for name in ("validator", "miner0"):
        was, now = before.by_hotkey(net.hotkeys[name]), after.by_hotkey(net.hotkeys[name])
        assert was is not None and now is not None
        assert now.last_update == was.last_update  # nothing was set


async def test_blocks_advance(net: Net) -> None:
    before = await net.validator.block()
    await net.advance(2)
    assert await net.validator.block() >= before + 2
