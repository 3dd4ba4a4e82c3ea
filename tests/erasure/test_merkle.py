"""Merkle trees over shard leaves: proofs, multiproofs, tampering, building and saving."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from erasure import (
    BadProofError,
    MerkleBuilder,
    MerkleProof,
    MerkleTree,
    TreeFormatError,
    leaf_count_for,
    verify,
)
from erasure.merkle import HASH_SIZE, hash_leaf, hash_node, root_of
from tests.erasure.helpers import LEAF_SIZES, chunked, flip_bit, payload


def leaves_of(data: bytes, leaf_size: int) -> list[bytes]:
    count = leaf_count_for(len(data), leaf_size)
    return [data[i * leaf_size : (i + 1) * leaf_size] for i in range(count)]


def reference_root(leaf_hashes: list[bytes]) -> bytes:
    """The documented shape, written independently: pair left to right, promote an odd last."""
    level = leaf_hashes
    while len(level) > 1:
        parents = [hash_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parents.append(level[-1])
        level = parents
    return level[0]


def path_shape(index: int, leaf_count: int) -> tuple[int, ...]:
    """Which side (0 left, 1 right) the node is on at each level where it has a sibling."""
    shape = []
    while leaf_count > 1:
        if index ^ 1 < leaf_count:
            shape.append(index & 1)
        index //= 2
        leaf_count = (leaf_count + 1) // 2
    return tuple(shape)


@st.composite
def trees(draw: st.DrawFn, min_size: int = 0) -> tuple[bytes, MerkleTree]:
    leaf_size = draw(st.sampled_from(LEAF_SIZES))
    leaves = draw(st.integers(1, 70))
    size = draw(
        st.one_of(
            st.just(leaves * leaf_size),  # exact multiple
            st.integers(max(min_size, (leaves - 1) * leaf_size + 1), leaves * leaf_size),
        )
    )
    size = max(size, min_size)
    data = payload(size, draw(st.integers(0, 2**32)))
    return data, MerkleTree.build(data, leaf_size)


@st.composite
def multiproofs(
    draw: st.DrawFn, min_size: int = 0
) -> tuple[bytes, MerkleTree, list[int], list[bytes], MerkleProof]:
    """A tree, a random non-empty set of leaf indices in random order, and their proof."""
    data, tree = draw(trees(min_size))
    n = tree.leaf_count
    indices = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    leaves = leaves_of(data, tree.leaf_size)
    return data, tree, indices, [leaves[i] for i in indices], tree.prove(indices)


# --- shape and hashing ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(trees())
def test_tree_matches_documented_shape(case: tuple[bytes, MerkleTree]) -> None:
    data, tree = case
    leaves = leaves_of(data, tree.leaf_size)
    assert tree.leaf_count == len(leaves) == leaf_count_for(len(data), tree.leaf_size)
    assert tree.size == len(data)
    assert tree.levels[0] == b"".join(hash_leaf(leaf) for leaf in leaves)
    assert tree.root == reference_root([hash_leaf(leaf) for leaf in leaves])
    assert root_of(data, tree.leaf_size) == tree.root
    assert len(tree.root) == HASH_SIZE
    assert [len(level) // HASH_SIZE for level in tree.levels][-1] == 1


def test_small_trees_by_hand() -> None:
    a, b, c = b"a" * 64, b"b" * 64, b"c"
    ha, hb, hc = hash_leaf(a), hash_leaf(b), hash_leaf(c)
    assert MerkleTree.build(a, 64).root == ha
    assert MerkleTree.build(a + b, 64).root == hash_node(ha, hb)
    assert MerkleTree.build(a + b + c, 64).root == hash_node(hash_node(ha, hb), hc)
    # An empty shard still has one (empty) leaf.
    empty = MerkleTree.build(b"", 64)
    assert empty.leaf_count == 1
    assert empty.root == hash_leaf(b"")
    # Leaves and nodes hash under different keys, so a leaf is never read as a node.
    assert hash_leaf(ha + hb) != hash_node(ha, hb)
    assert hash_leaf(b"x") != hash_node(b"", b"x")


@pytest.mark.parametrize(
    ("size", "leaf", "count"),
    [(0, 64, 1), (1, 64, 1), (64, 64, 1), (65, 64, 2), (128, 64, 2), (129, 64, 3)],
)
def test_leaf_count_for(size: int, leaf: int, count: int) -> None:
    assert leaf_count_for(size, leaf) == count


# --- proofs that hold ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(trees())
def test_every_single_proof_verifies(case: tuple[bytes, MerkleTree]) -> None:
    data, tree = case
    for i, leaf in enumerate(leaves_of(data, tree.leaf_size)):
        proof = tree.prove([i])
        assert len(proof.hashes) == len(path_shape(i, tree.leaf_count))
        verify(tree.root, tree.leaf_count, [i], [leaf], proof)


@settings(max_examples=100, deadline=None)
@given(multiproofs())
def test_multiproofs_verify_and_are_compact(
    case: tuple[bytes, MerkleTree, list[int], list[bytes], MerkleProof],
) -> None:
    _, tree, indices, leaves, proof = case
    verify(tree.root, tree.leaf_count, indices, leaves, proof)
    # Index order does not matter to the prover.
    assert tree.prove(sorted(indices)) == proof == tree.prove(reversed(indices))
    singles = sum(len(tree.prove([i]).hashes) for i in indices)
    assert len(proof.hashes) <= singles
    if len(indices) == tree.leaf_count:
        assert proof.hashes == ()


@settings(max_examples=30, deadline=None)
@given(trees())
def test_proof_of_all_leaves_is_empty(case: tuple[bytes, MerkleTree]) -> None:
    data, tree = case
    every = list(range(tree.leaf_count))
    proof = tree.prove(every)
    assert proof.hashes == ()
    verify(tree.root, tree.leaf_count, every, leaves_of(data, tree.leaf_size), proof)


def test_proof_bytes_round_trip() -> None:
    data = payload(1000)
    tree = MerkleTree.build(data, 64)
    proof = tree.prove([3, 9])
    assert MerkleProof.from_bytes(proof.to_bytes()) == proof
    assert len(proof.to_bytes()) == HASH_SIZE * len(proof.hashes)
    with pytest.raises(BadProofError):
        MerkleProof.from_bytes(proof.to_bytes()[:-1])


# --- tampering: every alteration is caught ------------------------------------------------


def bad(
    root: bytes, count: int, indices: list[int], leaves: list[bytes], proof: MerkleProof
) -> BadProofError:
    with pytest.raises(BadProofError) as info:
        verify(root, count, indices, leaves, proof)
    return info.value


@settings(max_examples=80, deadline=None)
@given(multiproofs(min_size=1), st.data())
def test_flipped_bit_in_a_leaf_fails(
    case: tuple[bytes, MerkleTree, list[int], list[bytes], MerkleProof], data: st.DataObject
) -> None:
    _, tree, indices, leaves, proof = case
    which = data.draw(st.integers(0, len(leaves) - 1))
    assume(leaves[which])  # an empty leaf has no bit to flip
    bit = data.draw(st.integers(0, len(leaves[which]) * 8 - 1))
    leaves[which] = flip_bit(leaves[which], bit)
    bad(tree.root, tree.leaf_count, indices, leaves, proof)


@settings(max_examples=80, deadline=None)
@given(multiproofs(), st.data())
def test_flipped_bit_in_any_proof_hash_fails(
    case: tuple[bytes, MerkleTree, list[int], list[bytes], MerkleProof], data: st.DataObject
) -> None:
    _, tree, indices, leaves, proof = case
    assume(proof.hashes)
    which = data.draw(st.integers(0, len(proof.hashes) - 1))
    bit = data.draw(st.integers(0, HASH_SIZE * 8 - 1))
    hashes = list(proof.hashes)
    hashes[which] = flip_bit(hashes[which], bit)
    bad(tree.root, tree.leaf_count, indices, leaves, MerkleProof(tuple(hashes)))


@settings(max_examples=60, deadline=None)
@given(trees(), st.data())
def test_proof_at_any_other_index_fails(
    case: tuple[bytes, MerkleTree], data: st.DataObject
) -> None:
    raw, tree = case
    n = tree.leaf_count
    assume(n > 1)
    i = data.draw(st.integers(0, n - 1))
    shift = data.draw(st.sampled_from([-1, 1]) | st.integers(-n + 1, n - 1))
    j = (i + shift) % n
    assume(j != i)
    leaf = leaves_of(raw, tree.leaf_size)[i]
    bad(tree.root, n, [j], [leaf], tree.prove([i]))


@settings(max_examples=60, deadline=None)
@given(multiproofs(), st.data())
def test_shifted_multiproof_indices_fail(
    case: tuple[bytes, MerkleTree, list[int], list[bytes], MerkleProof], data: st.DataObject
) -> None:
    _, tree, indices, leaves, proof = case
    n = tree.leaf_count
    assume(len(indices) < n)
    shifted = [(i + 1) % n for i in indices]
    bad(tree.root, n, shifted, leaves, proof)
    # The right leaves, but paired with each other's indices.
    assume(len(set(leaves)) > 1)
    rotated = [*leaves[1:], leaves[0]]
    bad(tree.root, n, indices, rotated, proof)


@settings(max_examples=60, deadline=None)
@given(multiproofs(), st.data())
def test_truncated_proof_fails(
    case: tuple[bytes, MerkleTree, list[int], list[bytes], MerkleProof], data: st.DataObject
) -> None:
    _, tree, indices, leaves, proof = case
    assume(proof.hashes)
    drop = data.draw(st.integers(0, len(proof.hashes) - 1))
    hashes = proof.hashes[:drop] + proof.hashes[drop + 1 :]
    bad(tree.root, tree.leaf_count, indices, leaves, MerkleProof(hashes))
    cut = data.draw(st.integers(0, len(proof.hashes) - 1))
    bad(tree.root, tree.leaf_count, indices, leaves, MerkleProof(proof.hashes[:cut]))
    # A hash cut short is refused, not padded.
    short = (*proof.hashes[:-1], proof.hashes[-1][:-1])
    bad(tree.root, tree.leaf_count, indices, leaves, MerkleProof(short))


@settings(max_examples=60, deadline=None)
@given(multiproofs(), st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE), st.integers(0, 3))
def test_extra_hash_fails(
    case: tuple[bytes, MerkleTree, list[int], list[bytes], MerkleProof],
    extra: bytes,
    where: int,
) -> None:
    _, tree, indices, leaves, proof = case
    at = where % (len(proof.hashes) + 1)
    longer = (*proof.hashes[:at], extra, *proof.hashes[at:])
    bad(tree.root, tree.leaf_count, indices, leaves, MerkleProof(longer))
    error = bad(tree.root, tree.leaf_count, indices, leaves, MerkleProof((*proof.hashes, extra)))
    assert "more than" in str(error)


@settings(max_examples=60, deadline=None)
@given(multiproofs(min_size=1))
def test_proof_against_another_shards_root_fails(
    case: tuple[bytes, MerkleTree, list[int], list[bytes], MerkleProof],
) -> None:
    data, tree, indices, leaves, proof = case
    other = MerkleTree.build(flip_bit(data, len(data) * 4), tree.leaf_size)
    assert other.leaf_count == tree.leaf_count
    bad(other.root, tree.leaf_count, indices, leaves, proof)


@settings(max_examples=150, deadline=None)
@given(trees(), st.data())
def test_wrong_leaf_count(case: tuple[bytes, MerkleTree], data: st.DataObject) -> None:
    """A proof under a wrong ``leaf_count`` fails unless that count gives the leaf the same
    path: a single proof cannot reveal leaves it does not touch, which is why the verifier
    takes ``leaf_count`` from its own records."""
    raw, tree = case
    n = tree.leaf_count
    i = data.draw(st.integers(0, n - 1))
    wrong = data.draw(st.integers(i + 1, 2 * n + 2).filter(lambda c: c != n))
    leaf = leaves_of(raw, tree.leaf_size)[i]
    proof = tree.prove([i])
    if path_shape(i, wrong) == path_shape(i, n):
        verify(tree.root, wrong, [i], [leaf], proof)
    else:
        bad(tree.root, wrong, [i], [leaf], proof)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 64])
def test_wrong_leaf_count_fails_for_the_last_leaf_and_for_all_leaves(n: int) -> None:
    data = payload(n * 64 - 1, seed=n)
    tree = MerkleTree.build(data, 64)
    leaves = leaves_of(data, 64)
    last = tree.prove([n - 1])
    for wrong in (n - 1, n + 1, 2 * n):
        if wrong > n - 1:
            bad(tree.root, wrong, [n - 1], [leaves[-1]], last)
        every = list(range(min(n, wrong)))
        bad(tree.root, wrong, every, leaves[: len(every)], tree.prove(every))


def test_malformed_index_lists() -> None:
    data = payload(64 * 5 + 3)
    tree = MerkleTree.build(data, 64)
    leaves = leaves_of(data, 64)
    n, root = tree.leaf_count, tree.root
    proof2 = tree.prove([2])
    # Duplicate indices.
    assert "repeat" in str(bad(root, n, [2, 2], [leaves[2], leaves[2]], proof2))
    with pytest.raises(BadProofError):
        tree.prove([1, 1])
    # Out of range, either side.
    for index in (-1, n, n + 5):
        assert "range" in str(bad(root, n, [index], [leaves[0]], proof2))
        with pytest.raises(BadProofError):
            tree.prove([index])
    # Nothing to prove.
    assert "no leaf" in str(bad(root, n, [], [], MerkleProof(())))
    with pytest.raises(BadProofError):
        tree.prove([])
    # Indices and leaves that do not pair up.
    assert "indices but" in str(bad(root, n, [2], [leaves[2], leaves[3]], proof2))
    assert "indices but" in str(bad(root, n, [2, 3], [leaves[2]], tree.prove([2, 3])))
    # leaf_count below one.
    for count in (0, -1):
        bad(root, count, [0], [leaves[0]], tree.prove([0]))
    # The untampered proof still holds, so the failures above are the tampering's.
    verify(root, n, [2], [leaves[2]], proof2)


def test_single_leaf_tree() -> None:
    tree = MerkleTree.build(b"only", 64)
    assert tree.prove([0]).hashes == ()
    verify(tree.root, 1, [0], [b"only"], MerkleProof(()))
    bad(tree.root, 1, [0], [b"only"], MerkleProof((bytes(HASH_SIZE),)))
    bad(tree.root, 1, [0], [b"onlx"], MerkleProof(()))


# --- building from chunks -----------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(trees(), st.lists(st.integers(0, 3000), min_size=1, max_size=8).filter(any))
def test_builder_is_independent_of_chunking(
    case: tuple[bytes, MerkleTree], sizes: list[int]
) -> None:
    data, tree = case
    builder = MerkleBuilder(tree.leaf_size)
    offset, i = 0, 0
    while offset < len(data):
        size = sizes[i % len(sizes)]
        # Empty updates (size 0) and all buffer types are fine.
        piece = data[offset : offset + size]
        builder.update([bytes, bytearray, memoryview][i % 3](piece))
        offset += size
        i += 1
    assert builder.size == len(data)
    built = builder.finish()
    assert built == tree
    assert built.levels == tree.levels


@settings(max_examples=30, deadline=None)
@given(trees())
def test_builder_with_byte_at_a_time(case: tuple[bytes, MerkleTree]) -> None:
    data, tree = case
    data = data[: 3 * tree.leaf_size + 5]
    builder = MerkleBuilder(tree.leaf_size)
    for piece in chunked(data, [1]):
        builder.update(piece)
    assert builder.finish() == MerkleTree.build(data, tree.leaf_size)


# --- saving and loading -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(trees(), st.randoms(use_true_random=False))
def test_tree_bytes_round_trip(case: tuple[bytes, MerkleTree], rnd: random.Random) -> None:
    data, tree = case
    saved = tree.to_bytes()
    loaded = MerkleTree.from_bytes(saved)
    assert loaded == tree
    loaded.check()
    indices = rnd.sample(range(tree.leaf_count), rnd.randint(1, tree.leaf_count))
    leaves = leaves_of(data, tree.leaf_size)
    verify(tree.root, tree.leaf_count, indices, [leaves[i] for i in indices], loaded.prove(indices))


@settings(max_examples=60, deadline=None)
@given(trees(), st.data())
def test_from_bytes_rejects_bad_layouts(
    case: tuple[bytes, MerkleTree], data: st.DataObject
) -> None:
    _, tree = case
    saved = tree.to_bytes()
    cut = data.draw(st.integers(0, len(saved) - 1))
    with pytest.raises(TreeFormatError):
        MerkleTree.from_bytes(saved[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=HASH_SIZE + 1))
    with pytest.raises(TreeFormatError, match="trailing"):
        MerkleTree.from_bytes(saved + extra)
    with pytest.raises(TreeFormatError, match="magic"):
        MerkleTree.from_bytes(b"SNMX" + saved[4:])
    version = data.draw(st.integers(0, 255).filter(lambda v: v != 1))
    with pytest.raises(TreeFormatError, match="version"):
        MerkleTree.from_bytes(saved[:4] + bytes([version]) + saved[5:])


def test_from_bytes_header_fields() -> None:
    tree = MerkleTree.build(payload(1000), 128)
    saved = tree.to_bytes()
    magic, version, leaf_size, size = struct.unpack_from(">4sBxxxIQ", saved)
    assert (magic, version, leaf_size, size) == (b"SNMT", 1, 128, 1000)
    with pytest.raises(TreeFormatError, match="leaf size 0"):
        MerkleTree.from_bytes(struct.pack(">4sBxxxIQ", b"SNMT", 1, 0, 1000) + saved[20:])
    # A header that claims more data than the levels hold is truncated, not trusted.
    with pytest.raises(TreeFormatError, match="truncated"):
        MerkleTree.from_bytes(struct.pack(">4sBxxxIQ", b"SNMT", 1, 128, 10**12) + saved[20:])
    with pytest.raises(TreeFormatError, match="shorter"):
        MerkleTree.from_bytes(b"SNMT")


@settings(max_examples=60, deadline=None)
@given(trees(), st.data())
def test_check_detects_an_altered_node(case: tuple[bytes, MerkleTree], data: st.DataObject) -> None:
    _, tree = case
    assume(tree.leaf_count > 1)
    tree.check()
    saved = bytearray(tree.to_bytes())
    header = 20
    leaf_bytes = tree.leaf_count * HASH_SIZE
    # Any byte above the leaf level: an inner node or the root.
    at = data.draw(st.integers(header + leaf_bytes, len(saved) - 1))
    saved[at] ^= 1 << data.draw(st.integers(0, 7))
    altered = MerkleTree.from_bytes(bytes(saved))  # the layout is still fine
    with pytest.raises(TreeFormatError):
        altered.check()
    # An altered leaf hash no longer hashes up to the saved root either.
    saved = bytearray(tree.to_bytes())
    saved[data.draw(st.integers(header, header + leaf_bytes - 1))] ^= 0x80
    with pytest.raises(TreeFormatError):
        MerkleTree.from_bytes(bytes(saved)).check()
