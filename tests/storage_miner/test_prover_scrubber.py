"""The prover answers from saved trees; the scrubber sets corrupt shards aside."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from erasure import BadProofError, MerkleTree, verify
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.prover import ChallengeRejected, TreeCache, answer
from storage_miner.scrubber import find_corruption, run_scrubber, scrub_batch
from storage_miner.store import ShardKey, ShardNotFound

NS = "5FPKneG8EgVf2B2S3916PWt2yMb8oLAzimf73f9vMCdHAMtR"
LEAF = 16384


def stored(store: FsShardStore, index: ShardIndex, data: bytes) -> ShardKey:
    tree = MerkleTree.build(data, LEAF)
    key = ShardKey(NS, tree.root.hex())
    writer = store.writer(key)
    writer.write(data)
    writer.commit(tree.to_bytes())
    index.add(NS, key.shard_id, len(data), now=0.0)
    return key


@pytest.fixture
def store(tmp_path: Path) -> FsShardStore:
    return FsShardStore(tmp_path / "fs")


@pytest.fixture
def index(tmp_path: Path) -> ShardIndex:
    return ShardIndex(tmp_path / "index.sqlite")


def test_answers_verify_against_the_validators_root(store: FsShardStore, index: ShardIndex) -> None:
    data = os.urandom(10 * LEAF + 5)
    key = stored(store, index, data)
    reply = answer(store, TreeCache(1 << 20), key, [10, 3, 7])
    leaf_count = 11
    verify(bytes.fromhex(key.shard_id), leaf_count, [10, 3, 7], reply.leaves, reply.proof)
    assert reply.leaves[0] == data[10 * LEAF :]


def test_an_answer_from_altered_bytes_fails_verification(
    store: FsShardStore, index: ShardIndex
) -> None:
    data = os.urandom(4 * LEAF)
    key = stored(store, index, data)
    path = store.path(key)
    raw = bytearray(path.read_bytes())
    raw[LEAF + 9] ^= 1
    path.write_bytes(raw)
    reply = answer(store, TreeCache(1 << 20), key, [1])
    with pytest.raises(BadProofError):
        verify(bytes.fromhex(key.shard_id), 4, [1], reply.leaves, reply.proof)


@pytest.mark.parametrize(
    ("indices", "message"),
    [([], "at least one"), ([4], "out of range"), ([-1], "out of range"), ([1, 1], "repeat")],
)
def test_malformed_challenges_are_rejected(
    store: FsShardStore, index: ShardIndex, indices: list[int], message: str
) -> None:
    key = stored(store, index, os.urandom(4 * LEAF))
    with pytest.raises(ChallengeRejected, match=message):
        answer(store, TreeCache(1 << 20), key, indices)


def test_unknown_shard_is_not_found(store: FsShardStore) -> None:
    with pytest.raises(ShardNotFound):
        answer(store, TreeCache(1 << 20), ShardKey(NS, "ab" * 32), [0])


def test_tree_cache_stays_within_its_budget(store: FsShardStore, index: ShardIndex) -> None:
    keys = [stored(store, index, os.urandom(64 * LEAF)) for _ in range(5)]
    one_tree = sum(len(level) for level in MerkleTree.from_bytes(store.read_tree(keys[0])).levels)
    cache = TreeCache(2 * one_tree)
    for key in keys:
        cache.get(key, store)
    assert cache._bytes <= 2 * one_tree
    assert len(cache._trees) == 2


def test_scrubber_quarantines_flipped_truncated_and_missing_shards(
    store: FsShardStore, index: ShardIndex
) -> None:
    good = stored(store, index, os.urandom(3 * LEAF))
    flipped = stored(store, index, os.urandom(3 * LEAF))
    truncated = stored(store, index, os.urandom(3 * LEAF))
    missing = stored(store, index, os.urandom(3 * LEAF))
    raw = bytearray(store.path(flipped).read_bytes())
    raw[-1] ^= 0x80
    store.path(flipped).write_bytes(raw)
    with store.path(truncated).open("r+b") as f:
        f.truncate(LEAF)
    store.path(missing).unlink()

    assert find_corruption(store, good) is None
    result = scrub_batch(store, index, limit=10)
    assert result.checked == 4
    assert set(result.quarantined) == {flipped.shard_id, truncated.shard_id, missing.shard_id}
    reasons = {r.shard_id: r.reason for r in index.quarantined()}
    assert reasons[truncated.shard_id] == f"shard holds {LEAF} bytes, {3 * LEAF} were stored"
    assert reasons[flipped.shard_id] == "shard bytes do not hash to the shard id"
    assert "missing" in (reasons[missing.shard_id] or "")
    for key in (flipped, truncated):
        assert not store.exists(key)  # never served as good again
    record = index.get(NS, good.shard_id)
    assert record is not None
    assert record.state == "ok"
    assert record.scrubbed_at is not None


async def test_scrubber_loop_paces_reads_to_its_rate_and_idles_when_empty(
    store: FsShardStore, index: ShardIndex
) -> None:
    for seed in range(3):
        stored(store, index, bytes([seed]) * (2 * LEAF))
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_scrubber(store, index, bytes_per_second=LEAF, idle_seconds=7.0, sleep=fake_sleep)
    # Each pass reads one 2-leaf shard, so it sleeps 2 s at one leaf per second; the loop
    # re-scrubs from the least recently scrubbed, so it never idles while shards exist.
    assert sleeps == [2.0, 2.0, 2.0, 2.0]
    for record in index.next_to_scrub(10):
        index.set_state(NS, record.shard_id, "trash", 0.0, None)
    sleeps.clear()
    with pytest.raises(asyncio.CancelledError):
        await run_scrubber(store, index, bytes_per_second=LEAF, idle_seconds=7.0, sleep=fake_sleep)
    assert sleeps == [7.0] * 4
