"""Answers Merkle challenges from the saved tree and the challenged leaves only.

The shard is never rehashed: leaves are read where they lie and the sibling hashes come
from the tree file saved at store time. Trees are small (1/512 of a shard at 16 KiB leaves),
so recently used ones stay in memory up to a byte budget.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from erasure import MerkleProof, MerkleTree
from storage_miner.store import ShardKey, ShardStore

MAX_INDICES = 1024


class ChallengeRejected(ValueError):
    """The challenge itself is malformed (as opposed to the shard being missing)."""


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    shard_id: str
    leaves: tuple[bytes, ...]
    proof: MerkleProof


class TreeCache:
    """A thread-safe LRU of parsed trees, bounded by the bytes they hold."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._trees: OrderedDict[ShardKey, MerkleTree] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _weight(tree: MerkleTree) -> int:
        return sum(len(level) for level in tree.levels)

    def get(self, key: ShardKey, store: ShardStore) -> MerkleTree:
        with self._lock:
            tree = self._trees.get(key)
            if tree is not None:
                self._trees.move_to_end(key)
                return tree
        tree = MerkleTree.from_bytes(store.read_tree(key))
        with self._lock:
            if key not in self._trees:
                self._trees[key] = tree
                self._bytes += self._weight(tree)
            while self._bytes > self._max and self._trees:
                _, evicted = self._trees.popitem(last=False)
                self._bytes -= self._weight(evicted)
        return tree

    def forget(self, key: ShardKey) -> None:
        with self._lock:
            tree = self._trees.pop(key, None)
            if tree is not None:
                self._bytes -= self._weight(tree)


def answer(
    store: ShardStore, trees: TreeCache, key: ShardKey, indices: Sequence[int]
) -> ChallengeAnswer:
    """Leaves at ``indices`` plus one multiproof for them. Raises ChallengeRejected or
    ShardNotFound (from the store)."""
    if not indices:
        raise ChallengeRejected("a challenge names at least one leaf index")
    if len(indices) > MAX_INDICES:
        raise ChallengeRejected(f"at most {MAX_INDICES} leaf indices per challenge")
    if len(set(indices)) != len(indices):
        raise ChallengeRejected("leaf indices repeat")
    tree = trees.get(key, store)
    bad = [i for i in indices if not 0 <= i < tree.leaf_count]
    if bad:
        raise ChallengeRejected(
            f"leaf index {bad[0]} out of range: the shard has {tree.leaf_count} leaves"
        )
    leaves = store.read_leaves(key, tree.leaf_size, indices)
    return ChallengeAnswer(key.shard_id, tuple(leaves), tree.prove(indices))
