"""A miner's shard bytes leave the page cache once durable, and once scrubbed.

Whether a page is cached is read with ``preadv(..., RWF_NOWAIT)``: the kernel answers from
the page cache or refuses with EAGAIN rather than go to the disk. A file written and fsynced
by hand first shows that the probe can see cached pages on this filesystem, so a test cannot
pass because nothing is ever cached here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from erasure import MerkleTree
from storage_miner.fs_store import FsShardStore
from storage_miner.scrubber import find_corruption
from storage_miner.store import ShardKey

VALIDATOR = "5FPKneG8EgVf2B2S3916PWt2yMb8oLAzimf73f9vMCdHAMtR"
LEAF = 16384
SIZE = 64 * LEAF  # 1 MiB

pytestmark = pytest.mark.skipif(
    not hasattr(os, "RWF_NOWAIT") or not hasattr(os, "posix_fadvise"),
    reason="needs Linux's preadv(RWF_NOWAIT) and posix_fadvise",
)


def cached_bytes(path: Path) -> int:
    """How many of ``path``'s first bytes the page cache holds (0: the first page is not)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buffer = bytearray(os.fstat(fd).st_size)
        try:
            return os.preadv(fd, [buffer], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return 0
    finally:
        os.close(fd)


@pytest.fixture
def store(tmp_path: Path) -> FsShardStore:
    control = tmp_path / "control"
    with control.open("wb") as out:
        out.write(os.urandom(SIZE))
        out.flush()
        os.fsync(out.fileno())
    if cached_bytes(control) != SIZE:
        pytest.skip("this filesystem does not report cached pages to RWF_NOWAIT")
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
