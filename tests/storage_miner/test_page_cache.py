"""A miner's shard bytes leave the page cache once durable, and once scrubbed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from erasure import MerkleTree
from storage_miner.fs_store import FsShardStore
from storage_miner.scrubber import find_corruption
from storage_miner.store import ShardKey
from tests.page_cache_probe import cached_bytes, needs_probe, require_visible_cache

VALIDATOR = "5FPKneG8EgVf2B2S3916PWt2yMb8oLAzimf73f9vMCdHAMtR"
LEAF = 16384
SIZE = 64 * LEAF  # 1 MiB

pytestmark = needs_probe


@pytest.fixture
def store(tmp_path: Path) -> FsShardStore:
    require_visible_cache(tmp_path)
    return FsShardStore(tmp_path / "fs")


def put(store: FsShardStore, data: bytes) -> ShardKey:
    tree = MerkleTree.build(data, LEAF)
    key = ShardKey(VALIDATOR, tree.root.hex())
    writer = store.writer(key)
    writer.write(data)
    writer.commit(tree.to_bytes())
    return key


def test_a_committed_shard_is_not_kept_in_the_page_cache(store: FsShardStore) -> None:
    data = os.urandom(SIZE)
    key = put(store, data)
    assert cached_bytes(store.path(key)) == 0
    # Dropped from memory, not lost: it reads back whole, from the disk.
    assert b"".join(store.read(key)) == data
    assert store.read_leaves(key, LEAF, [5]) == [data[5 * LEAF : 6 * LEAF]]


def test_a_scrubbed_shard_leaves_the_page_cache(store: FsShardStore) -> None:
    key = put(store, os.urandom(SIZE))
    with store.open_file(key) as file:  # a download reads it into the cache
        assert len(file.read()) == SIZE
    assert cached_bytes(store.path(key)) == SIZE
    assert find_corruption(store, key) is None
    assert cached_bytes(store.path(key)) == 0
