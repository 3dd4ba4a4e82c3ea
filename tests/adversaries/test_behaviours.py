"""Each fake miner, as a real process, shows its behaviour to a validator's challenges, and an
honest miner started the same way passes the very same challenges.

All the miners start once, in parallel, for the module.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from bittensor_wallet import Keypair

from protocol.signing import SigningClient
from tests.adversaries import CLAIMED_CAPACITY, Behaviour, flipped_leaves, is_dropped
from tests.adversaries.probes import LEAF, Probe, SampleShard, challenge, make_shard, store
from tests.adversaries.process import MinerProcess, running_miners
from validator.challenges import derive_indices, new_nonce
from validator.miner_client import MinerClient, MinerError

VALIDATOR = Keypair.create_from_uri("//AdversaryTestValidator")
SLOW = 1.0
FAKECAP = 256 * 1024
SPECS = {
    "honest": "honest",
    "drop": "drop:0.5",
    "bitflip": "bitflip:1.0",
    "bitflip_some": "bitflip:0.25",
    "wrongproof": "wrongproof",
    "replay": "replay",
    "slow": f"slow:{SLOW}",
    "rebuild": "rebuild:4",
    "fakecap": f"fakecap:{FAKECAP}",
    "flood": "flood",
}

Miners = dict[str, MinerProcess]


@pytest.fixture(scope="module")
def miners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Miners]:
    workdir = tmp_path_factory.mktemp("adversaries")
    with running_miners(list(SPECS.values()), workdir, [VALIDATOR.ss58_address]) as started:
        yield dict(zip(SPECS, started, strict=True))


@pytest.fixture
async def client() -> AsyncIterator[MinerClient]:
    async with aiohttp.ClientSession() as session:
        yield MinerClient(SigningClient(session, VALIDATOR), timeout=30)


def shards(n: int, size: int, seed: int) -> list[SampleShard]:
    return [make_shard(size, seed + i) for i in range(n)]


async def store_all(client: MinerClient, miner: MinerProcess, items: list[SampleShard]) -> None:
    for item in items:
        await store(client, miner.address, item)


async def honest_passes(
    client: MinerClient, honest: MinerProcess, items: list[SampleShard], probes: list[Probe]
) -> None:
    """The honest miner passes exactly the challenges the fake was given."""
    await store_all(client, honest, items)
    again = await challenge(client, honest.address, items, nonces=[p.nonce for p in probes])
    assert [p.indices for p in again] == [p.indices for p in probes]
    assert [p.verdict for p in again] == ["pass"] * len(items), [p.result for p in again]


async def test_drop_loses_the_predicted_shards_after_signing_their_receipts(
    miners: Miners, client: MinerClient
) -> None:
    items = shards(8, 64 * 1024, seed=100)
    fraction = Behaviour.parse(SPECS["drop"]).fraction
    lost = {s.id for s in items if is_dropped(s.id, fraction)}
    assert 0 < len(lost) < len(items), "pick seeds that split the shards"
    await store_all(client, miners["drop"], items)  # every receipt verified
    probes = await challenge(client, miners["drop"].address, items)
    for probe in probes:
        if probe.shard_id in lost:
            assert (probe.status, probe.error) == (404, "not_found")
        else:
            assert probe.verdict == "pass"
    info = await client.info(miners["drop"].address)
    assert info["shards"] == len(items)  # it still claims every one
    await honest_passes(client, miners["honest"], items, probes)


async def test_bitflip_everywhere_fails_every_challenge(
    miners: Miners, client: MinerClient
) -> None:
    items = shards(3, 128 * 1024, seed=200)
    await store_all(client, miners["bitflip"], items)
    for _ in range(3):
        probes = await challenge(client, miners["bitflip"].address, items)
        assert [p.verdict for p in probes] == ["wrong"] * len(items)
        assert all(p.result and "proof" in p.result.reason.lower() for p in probes), probes
    await honest_passes(client, miners["honest"], items, probes)


async def test_bitflip_corrupts_exactly_the_predicted_leaves(
    miners: Miners, client: MinerClient
) -> None:
    fake = miners["bitflip_some"]
    fraction = Behaviour.parse(SPECS["bitflip_some"]).fraction
    item = make_shard(256 * 1024, seed=300)
    flipped = flipped_leaves(item.id, item.leaf_count, fraction)
    assert 0 < len(flipped) < item.leaf_count, "pick a seed that flips some leaves, not all"
    await store(client, fake.address, item)
    served = await client.get_shard(fake.address, item.id)
    assert len(served) == item.size
    for i in range(item.leaf_count):
        got, want = served[i * 16384 : (i + 1) * 16384], item.leaf(i)
        bits = sum((a ^ b).bit_count() for a, b in zip(got, want, strict=True))
        assert bits == (1 if i in flipped else 0), f"leaf {i}"
    # A challenge is caught exactly when it names a flipped leaf: try 3 that do, 3 that don't.
    nonces: dict[bool, list[bytes]] = {True: [], False: []}
    while min(len(found) for found in nonces.values()) < 3:
        nonce = new_nonce()
        touched = bool(set(derive_indices(nonce, item.id, item.leaf_count, 4)) & flipped)
        nonces[touched].append(nonce)
    chosen = nonces[True][:3] + nonces[False][:3]
    probes = await challenge(client, fake.address, [item] * 6, nonces=chosen)
    assert [p.verdict for p in probes] == ["wrong"] * 3 + ["pass"] * 3
    await honest_passes(client, miners["honest"], [item] * len(probes), probes)


async def test_wrongproof_answers_with_another_shards_leaves(
    miners: Miners, client: MinerClient
) -> None:
    items = shards(3, 128 * 1024, seed=400)
    await store_all(client, miners["wrongproof"], items)
    probes = await challenge(client, miners["wrongproof"].address, items)
    assert [p.status for p in probes] == [200] * len(items)
    assert [p.verdict for p in probes] == ["wrong"] * len(items)
    await honest_passes(client, miners["honest"], items, probes)


async def test_replay_passes_once_then_replays_a_stale_answer(
    miners: Miners, client: MinerClient
) -> None:
    fake = miners["replay"]
    item = make_shard(256 * 1024, seed=500)
    await store(client, fake.address, item)
    (first,) = await challenge(client, fake.address, [item])
    assert first.verdict == "pass"
    later: list[Probe] = []
    while len(later) < 3:  # nonces whose leaves differ from the first challenge's
        nonce = new_nonce()
        if derive_indices(nonce, item.id, item.leaf_count, 4) != first.indices:
            later.extend(await challenge(client, fake.address, [item], nonces=[nonce]))
    assert [p.verdict for p in later] == ["wrong"] * 3
    probes = [first, *later]
    await honest_passes(client, miners["honest"], [item] * len(probes), probes)


async def test_slow_answers_and_serves_after_its_delay(miners: Miners, client: MinerClient) -> None:
    fake = miners["slow"]
    item = make_shard(128 * 1024, seed=600)
    await store(client, fake.address, item)
    probes = await challenge(client, fake.address, [item], allowed=SLOW / 2)
    assert probes[0].latency >= SLOW
    assert probes[0].verdict == "timeout"
    started = time.perf_counter()
    assert await client.get_shard(fake.address, item.id) == item.data
    assert time.perf_counter() - started >= SLOW
    (late_but_right,) = await challenge(
        client, fake.address, [item], nonces=[probes[0].nonce], allowed=30
    )
    assert late_but_right.verdict == "pass"  # honest data, only late
    await store(client, miners["honest"].address, item)
    (honest,) = await challenge(
        client, miners["honest"].address, [item], nonces=[probes[0].nonce], allowed=SLOW / 2
    )
    assert honest.verdict == "pass"


async def test_rebuild_answers_right_but_clearly_slower_than_honest(
    miners: Miners, client: MinerClient
) -> None:
    fake, honest = miners["rebuild"], miners["honest"]
    item = make_shard(4 * 1024 * 1024, seed=700)
    await store(client, fake.address, item)
    await store(client, honest.address, item)
    fake_latency, honest_latency = [], []
    for _ in range(5):
        nonce = new_nonce()
        (slow,) = await challenge(client, fake.address, [item], nonces=[nonce])
        (fast,) = await challenge(client, honest.address, [item], nonces=[nonce])
        assert (slow.verdict, fast.verdict) == ("pass", "pass")
        fake_latency.append(slow.latency)
        honest_latency.append(fast.latency)
    # Here ~80 ms against ~3 ms; the margins leave room for a loaded machine.
    assert min(fake_latency) > statistics.median(honest_latency), (fake_latency, honest_latency)
    assert statistics.median(fake_latency) > 3 * statistics.median(honest_latency)

    async def get_seconds(miner: MinerProcess) -> float:
        started = time.perf_counter()
        assert await client.get_shard(miner.address, item.id) == item.data
        return time.perf_counter() - started

    fake_gets = [await get_seconds(fake) for _ in range(3)]
    honest_gets = [await get_seconds(honest) for _ in range(3)]
    assert statistics.median(fake_gets) > statistics.median(honest_gets), (fake_gets, honest_gets)


async def test_fakecap_claims_a_huge_disk_but_keeps_only_its_budget(
    miners: Miners, client: MinerClient
) -> None:
    fake = miners["fakecap"]
    info = await client.info(fake.address)
    assert info["capacity"] == CLAIMED_CAPACITY > FAKECAP
    assert info["free"] > FAKECAP
    size = 64 * 1024
    items = shards(6, size, seed=800)
    await store_all(client, fake, items)  # every receipt signed, in this order
    kept = FAKECAP // size
    probes = await challenge(client, fake.address, items)
    assert [p.verdict for p in probes[:kept]] == ["pass"] * kept
    assert [(p.status, p.error) for p in probes[kept:]] == [(404, "not_found")] * (
        len(items) - kept
    )
    info = await client.info(fake.address)
    assert info["used"] == len(items) * size
    assert info["free"] > FAKECAP  # it still claims room
    await honest_passes(client, miners["honest"], items, probes)


async def test_the_fakes_still_speak_the_real_protocol(miners: Miners, client: MinerClient) -> None:
    """Unsigned and wrong-validator requests are refused exactly as by the real miner."""
    stranger = Keypair.create_from_uri("//AdversaryStranger")
    async with aiohttp.ClientSession() as session:
        outsider = MinerClient(SigningClient(session, stranger), timeout=10)
        for name in ("honest", "drop"):
            with pytest.raises(MinerError, match="403 unknown_hotkey"):
                await store(outsider, miners[name].address, make_shard(16384, seed=900))


async def test_a_miner_whose_replies_never_end_is_refused_without_being_held(
    miners: Miners, client: MinerClient
) -> None:
    """A reply longer than what was asked is a bad reply as soon as that shows (a declared
    length, or the bytes as they come), never read whole: else one miner could make the
    validator hold any amount of memory."""
    fake = miners["flood"].address
    item = make_shard(64 * 1024, seed=900)
    wire = [{"shard_id": item.id, "nonce": "00" * 16, "indices": [0]}]
    calls = {
        "put_shard": client.put_shard(fake, item.id, [item.data], item.size, LEAF),
        "get_shard": client.get_shard(fake, item.id, size=item.size),
        "challenge": client.challenge(fake, wire, LEAF + 1024),
        "quarantined": client.quarantined(fake),
    }
    for name, call in calls.items():
        started = time.perf_counter()
        with pytest.raises(MinerError) as caught:
            await asyncio.wait_for(call, 20)
        assert caught.value.kind == "bad_reply", (name, caught.value)
        assert time.perf_counter() - started < 10, name  # refused early, not at a timeout
