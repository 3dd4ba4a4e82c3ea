"""One contract, both backends: the filesystem and a real SeaweedFS over S3."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from erasure import MerkleTree
from storage_miner.fs_store import FsShardStore
from storage_miner.s3_store import S3Location, S3ShardStore
from storage_miner.store import InvalidShardKey, ShardKey, ShardNotFound, ShardStore

VALIDATOR_A = "5FPKneG8EgVf2B2S3916PWt2yMb8oLAzimf73f9vMCdHAMtR"
VALIDATOR_B = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
LEAF = 16384


@pytest.fixture(params=["fs", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ShardStore]:
    if request.param == "fs":
        yield FsShardStore(tmp_path / "fs")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"contract-{secrets.token_hex(6)}"
        yield S3ShardStore(S3Location(endpoint, bucket, "any", "any"), tmp_path / "stage")


def put(store: ShardStore, data: bytes, namespace: str = VALIDATOR_A) -> ShardKey:
    tree = MerkleTree.build(data, LEAF)
    key = ShardKey(namespace, tree.root.hex())
    writer = store.writer(key)
    for i in range(0, len(data), 7000):
        writer.write(data[i : i + 7000])
    writer.commit(tree.to_bytes())
    return key


def test_committed_shard_reads_back_whole_by_range_and_by_leaf(store: ShardStore) -> None:
    data = os.urandom(3 * LEAF + 123)
    key = put(store, data)
    assert store.exists(key)
    assert b"".join(store.read(key)) == data
    assert b"".join(store.read(key, 100, 40000)) == data[100:40000]
    assert store.read_leaves(key, LEAF, [3, 0]) == [data[3 * LEAF :], data[:LEAF]]
    tree = MerkleTree.from_bytes(store.read_tree(key))
    assert tree.root.hex() == key.shard_id


def test_a_local_file_is_the_shard_and_a_missing_one_is_not_found(store: ShardStore) -> None:
    data = os.urandom(2 * LEAF + 5)
    key = put(store, data)
    local = store.open_file(key)
    if isinstance(store, S3ShardStore):
        assert local is None  # no file to sendfile: the object is streamed with read()
    else:
        assert local is not None
        with local:
            assert local.read() == data
        store.trash(key)
        with pytest.raises(ShardNotFound):
            store.open_file(key)


def test_uncommitted_and_aborted_writes_are_invisible(store: ShardStore) -> None:
    data = os.urandom(5000)
    key = ShardKey(VALIDATOR_A, MerkleTree.build(data, LEAF).root.hex())
    writer = store.writer(key)
    writer.write(data)
    assert not store.exists(key)
    writer.abort()
    writer.abort()  # idempotent
    assert not store.exists(key)
    with pytest.raises(ShardNotFound):
        list(store.read(key))
    assert store.clean_incoming() == 0


def test_clean_incoming_removes_partial_writes(store: ShardStore) -> None:
    writer = store.writer(ShardKey(VALIDATOR_A, "ab" * 32))
    writer.write(b"partial")
    assert store.clean_incoming() == 1
    assert store.clean_incoming() == 0
    writer.abort()  # the crashed writer's handle; its file is already gone


def test_missing_shard_raises_not_found(store: ShardStore) -> None:
    key = ShardKey(VALIDATOR_A, "cd" * 32)
    assert not store.exists(key)
    with pytest.raises(ShardNotFound):
        list(store.read(key))
    with pytest.raises(ShardNotFound):
        store.read_tree(key)
    with pytest.raises(ShardNotFound):
        store.read_leaves(key, LEAF, [0])


def test_trash_hides_restore_returns_purge_forgets(store: ShardStore) -> None:
    data = os.urandom(20000)
    key = put(store, data)
    store.trash(key)
    assert not store.exists(key)
    store.restore(key)
    assert b"".join(store.read(key)) == data
    store.trash(key)
    store.purge(key)
    store.restore(key)  # nothing left to restore
    assert not store.exists(key)
    store.purge(key)  # idempotent


def test_quarantined_shard_is_never_served(store: ShardStore) -> None:
    key = put(store, os.urandom(1000))
    store.quarantine(key)
    assert not store.exists(key)
    with pytest.raises(ShardNotFound):
        list(store.read(key))


def test_namespaces_are_separate(store: ShardStore) -> None:
    data = os.urandom(4000)
    key_a = put(store, data, VALIDATOR_A)
    key_b = put(store, data, VALIDATOR_B)
    assert key_a.shard_id == key_b.shard_id
    store.trash(key_a)
    assert not store.exists(key_a)
    assert b"".join(store.read(key_b)) == data


@pytest.mark.parametrize(
    ("namespace", "shard_id"),
    [
        (VALIDATOR_A, "../../etc/passwd"),
        (VALIDATOR_A, "AB" * 32),
        (VALIDATOR_A, "ab" * 31),
        (VALIDATOR_A, "ab" * 32 + "/"),
        ("../" + VALIDATOR_A, "ab" * 32),
        ("not-an-ss58-address-at-all-0OIl", "ab" * 32),
    ],
)
def test_keys_that_are_not_hashes_or_hotkeys_are_refused(namespace: str, shard_id: str) -> None:
    with pytest.raises(InvalidShardKey):
        ShardKey(namespace, shard_id)


def test_fs_layout_is_hash_fanned(tmp_path: Path) -> None:
    store = FsShardStore(tmp_path)
    key = put(store, b"x" * 100)
    path = store.path(key)
    assert path.is_file()
    assert path.with_suffix(".tree").is_file()
    assert path.parent.name == key.shard_id[2:4]
    assert path.parent.parent.name == key.shard_id[:2]
    assert VALIDATOR_A not in str(path)  # the namespace is hashed, never used raw
