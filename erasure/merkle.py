"""Merkle trees over the fixed-size leaves of a shard, with proofs and multiproofs.

Hashing is BLAKE3 in keyed mode, with one key for leaves and another for inner nodes. The
two keys are the tags that keep a leaf from ever being read as a node (RFC 6962 and Tahoe's
hashtree prefix a tag byte for the same reason); keyed mode gets that without copying the
leaf to prepend a byte. BLAKE3 was chosen by measurement: 1.8 GB/s over 4 KiB leaves on one
thread here, against 1.2 GB/s for SHA-256 (``bench/erasure.py``).

Shape: level 0 holds the leaf hashes, and each level above pairs neighbours left to right.
A node without a right neighbour (the last one of an odd level) moves up unchanged. The
shape thus depends only on ``leaf_count``, which the verifier knows from the shard size it
recorded, never from the prover.

A shard's id is its root, so checking a shard's bytes and building its tree is one pass.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from blake3 import blake3

from erasure.errors import BadProofError, TreeFormatError

HASH_SIZE = 32
_LEAF_KEY = blake3(b"storage-subnet merkle leaf v1").digest()
_NODE_KEY = blake3(b"storage-subnet merkle node v1").digest()

Buffer = bytes | bytearray | memoryview


def hash_leaf(leaf: Buffer) -> bytes:
    return blake3(leaf, key=_LEAF_KEY).digest()


def hash_node(left: bytes, right: bytes) -> bytes:
    return blake3(left + right, key=_NODE_KEY).digest()


def leaf_count_for(size: int, leaf_size: int) -> int:
    """Leaves in a shard of ``size`` bytes. An empty shard still has one (empty) leaf."""
    return max(1, -(-size // leaf_size))


def _parent_level(level: bytes) -> bytes:
    """Hash neighbouring pairs of one level; an odd last node moves up as it is."""
    nodes = memoryview(level)
    width = len(level) // HASH_SIZE
    out = bytearray()
    key = _NODE_KEY
    pair = 2 * HASH_SIZE
    for offset in range(0, (width // 2) * pair, pair):
        out += blake3(nodes[offset : offset + pair], key=key).digest()
    if width % 2:
        out += nodes[(width - 1) * HASH_SIZE :]
    return bytes(out)


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """Sibling hashes, in the order the verifier's walk consumes them."""

    hashes: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> MerkleProof:
        if len(data) % HASH_SIZE:
            raise BadProofError(f"proof length {len(data)} is not a multiple of {HASH_SIZE}")
        return cls(tuple(data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)))


# Saved levels: magic, format version, leaf size, data size, then every level bottom-up.
_LEVELS_MAGIC = b"SNMT"
_LEVELS_VERSION = 1
_LEVELS_HEADER = struct.Struct(">4sBxxxIQ")


@dataclass(frozen=True, slots=True)
class MerkleTree:
    """All levels of one shard's tree; ``levels[0]`` are leaf hashes, the last is the root."""

    leaf_size: int
    size: int
    levels: tuple[bytes, ...]

    @property
    def leaf_count(self) -> int:
        return len(self.levels[0]) // HASH_SIZE

    @property
    def root(self) -> bytes:
        return self.levels[-1]

    def node(self, level: int, index: int) -> bytes:
        return self.levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE]

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: bytes, *, leaf_size: int, size: int) -> MerkleTree:
        levels = [leaf_hashes]
        while len(levels[-1]) > HASH_SIZE:
            levels.append(_parent_level(levels[-1]))
        return cls(leaf_size=leaf_size, size=size, levels=tuple(levels))

    @classmethod
    def build(cls, data: Buffer, leaf_size: int) -> MerkleTree:
        """Hash ``data`` into a tree. Use :class:`MerkleBuilder` when it arrives in pieces."""
        builder = MerkleBuilder(leaf_size)
        builder.update(data)
        return builder.finish()

    def prove(self, indices: Iterable[int]) -> MerkleProof:
        """A multiproof for the leaves at ``indices`` (one index gives a plain proof)."""
        wanted = _check_indices(indices, self.leaf_count)
        known = {i: self.node(0, i) for i in wanted}
        taken: list[bytes] = []

        def sibling(level: int, index: int) -> bytes:
            node = self.node(level, index)
            taken.append(node)
            return node

        # The prover needs only which siblings the walk asks for, not the parents' hashes.
        _fold(self.leaf_count, known, sibling, combine=lambda _left, _right: b"")
        return MerkleProof(tuple(taken))

    def to_bytes(self) -> bytes:
        header = _LEVELS_HEADER.pack(_LEVELS_MAGIC, _LEVELS_VERSION, self.leaf_size, self.size)
        return header + b"".join(self.levels)

    @classmethod
    def from_bytes(cls, data: bytes) -> MerkleTree:
        """Load saved levels, checking their layout (not their hashes: see :meth:`check`)."""
        if len(data) < _LEVELS_HEADER.size:
            raise TreeFormatError("tree file is shorter than its header")
        magic, version, leaf_size, size = _LEVELS_HEADER.unpack_from(data)
        if magic != _LEVELS_MAGIC:
            raise TreeFormatError("not a tree file (bad magic)")
        if version != _LEVELS_VERSION:
            raise TreeFormatError(f"tree file version {version} is not supported")
        if leaf_size == 0:
            raise TreeFormatError("tree file has leaf size 0")
        width = leaf_count_for(size, leaf_size)
        levels: list[bytes] = []
        offset = _LEVELS_HEADER.size
        while True:
            end = offset + width * HASH_SIZE
            if end > len(data):
                raise TreeFormatError("tree file is truncated")
            levels.append(bytes(data[offset:end]))
            offset = end
            if width == 1:
                break
            width = (width + 1) // 2
        if offset != len(data):
            raise TreeFormatError(f"tree file has {len(data) - offset} trailing bytes")
        return cls(leaf_size=leaf_size, size=size, levels=tuple(levels))

    def check(self) -> None:
        """Recompute every inner level from the leaf hashes; raise if any was altered."""
        rebuilt = MerkleTree.from_leaf_hashes(
            self.levels[0], leaf_size=self.leaf_size, size=self.size
        )
        if rebuilt.levels != self.levels:
            raise TreeFormatError("tree levels do not hash up to the saved root")


class MerkleBuilder:
    """Builds a tree from data that arrives in chunks of any size, holding one partial leaf."""

    def __init__(self, leaf_size: int) -> None:
        self._leaf_size = leaf_size
        self._partial = bytearray()
        self._leaf_hashes = bytearray()
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def update(self, data: Buffer) -> None:
        view = memoryview(data).cast("B")
        self._size += len(view)
        leaf_size = self._leaf_size
        key = _LEAF_KEY
        out = self._leaf_hashes
        if self._partial:
            take = min(leaf_size - len(self._partial), len(view))
            self._partial += view[:take]
            view = view[take:]
            if len(self._partial) < leaf_size:
                return
            out += blake3(self._partial, key=key).digest()
            self._partial.clear()
        whole = len(view) - len(view) % leaf_size
        for offset in range(0, whole, leaf_size):
            out += blake3(view[offset : offset + leaf_size], key=key).digest()
        self._partial += view[whole:]

    def finish(self) -> MerkleTree:
        if self._partial or not self._leaf_hashes:
            self._leaf_hashes += hash_leaf(self._partial)
            self._partial.clear()
        return MerkleTree.from_leaf_hashes(
            bytes(self._leaf_hashes), leaf_size=self._leaf_size, size=self._size
        )


def root_of(data: Buffer, leaf_size: int) -> bytes:
    return MerkleTree.build(data, leaf_size).root


def verify(
    root: bytes,
    leaf_count: int,
    indices: Sequence[int],
    leaves: Sequence[Buffer],
    proof: MerkleProof,
) -> None:
    """Check that ``leaves`` sit at ``indices`` in the tree whose root is ``root``.

    ``root`` and ``leaf_count`` must come from the verifier's own records, never from the
    prover. Raises :class:`BadProofError` naming what failed; returns None on success.
    """
    if len(indices) != len(leaves):
        raise BadProofError(f"{len(indices)} indices but {len(leaves)} leaves")
    verify_leaf_hashes(root, leaf_count, indices, [hash_leaf(leaf) for leaf in leaves], proof)


def verify_leaf_hashes(
    root: bytes,
    leaf_count: int,
    indices: Sequence[int],
    leaf_hashes: Sequence[bytes],
    proof: MerkleProof,
) -> None:
    """:func:`verify` from the leaves' hashes: what an auditor re-checks without the data."""
    if leaf_count < 1:
        raise BadProofError(f"leaf_count must be at least 1, got {leaf_count}")
    if len(indices) != len(leaf_hashes):
        raise BadProofError(f"{len(indices)} indices but {len(leaf_hashes)} leaf hashes")
    if any(len(h) != HASH_SIZE for h in leaf_hashes):
        raise BadProofError("a leaf hash has the wrong length")
    wanted = _check_indices(indices, leaf_count)
    known = dict(zip(indices, leaf_hashes, strict=True))
    remaining = iter(proof.hashes)

    def sibling(_level: int, _index: int) -> bytes:
        node = next(remaining, None)
        if node is None:
            raise BadProofError("proof is too short")
        if len(node) != HASH_SIZE:
            raise BadProofError("proof holds a hash of the wrong length")
        return node

    computed = _fold(leaf_count, {i: known[i] for i in wanted}, sibling)
    extra = sum(1 for _ in remaining)
    if extra:
        raise BadProofError(f"proof has {extra} hash(es) more than the walk needs")
    if computed != root:
        raise BadProofError("leaves and proof do not hash to the expected root")


def _check_indices(indices: Iterable[int], leaf_count: int) -> list[int]:
    ordered = sorted(indices)
    if not ordered:
        raise BadProofError("no leaf indices given")
    if ordered[0] < 0 or ordered[-1] >= leaf_count:
        raise BadProofError(f"leaf index out of range 0..{leaf_count - 1}")
    if len(set(ordered)) != len(ordered):
        raise BadProofError("leaf indices repeat")
    return ordered


def _fold(
    leaf_count: int,
    known: Mapping[int, bytes],
    sibling: Callable[[int, int], bytes],
    combine: Callable[[bytes, bytes], bytes] = hash_node,
) -> bytes:
    """Walk from known leaf hashes to the root, asking ``sibling`` for each missing node.

    The prover and the verifier share this walk, so the order in which a proof's hashes are
    produced is by construction the order in which they are consumed.
    """
    width = leaf_count
    level = 0
    nodes = dict(known)
    while width > 1:
        parents: dict[int, bytes] = {}
        for index in sorted(nodes):
            parent = index // 2
            if parent in parents:
                continue
            left, right = index & ~1, index | 1
            if right >= width:
                parents[parent] = nodes[index]
                continue
            left_hash = nodes[left] if left in nodes else sibling(level, left)
            right_hash = nodes[right] if right in nodes else sibling(level, right)
            parents[parent] = combine(left_hash, right_hash)
        nodes = parents
        width = (width + 1) // 2
        level += 1
    return nodes[0]
