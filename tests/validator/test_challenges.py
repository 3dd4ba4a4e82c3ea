"""Challenge derivation and judging: unpredictable, reproducible, checked against our root."""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erasure import MerkleTree
from validator.challenges import (
    deadline,
    derive_indices,
    detection_probability,
    judge,
    new_nonce,
    rounds_to_detect,
)

SHARD = "ab" * 32


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(1, 5000), st.integers(1, 100))
def test_indices_are_distinct_in_range_and_reproducible(
    nonce: bytes, leaf_count: int, count: int
) -> None:
    indices = derive_indices(nonce, SHARD, leaf_count, count)
    assert len(indices) == min(count, leaf_count)
    assert len(set(indices)) == len(indices)
    assert all(0 <= i < leaf_count for i in indices)
    assert derive_indices(nonce, SHARD, leaf_count, count) == indices


def test_indices_depend_on_nonce_and_shard_and_are_uniform() -> None:
    a = derive_indices(b"n" * 16, SHARD, 10_000, 8)
    assert a != derive_indices(b"m" * 16, SHARD, 10_000, 8)
    assert a != derive_indices(b"n" * 16, "cd" * 32, 10_000, 8)
    # Fixed nonces, so the check is exact every run (random ones failed it ~1 run in 500):
    # 20,000 draws over 10 leaves, 2,000 expected each, sd ~42.
    nonces = (i.to_bytes(16, "big") for i in range(20_000))
    counts = Counter(i for nonce in nonces for i in derive_indices(nonce, SHARD, 10, 1))
    assert set(counts) == set(range(10))
    assert max(counts.values()) < 1.1 * min(counts.values())


def test_judge_uses_the_upload_root_not_the_answer() -> None:
    data = os.urandom(8 * 1024)
    tree = MerkleTree.build(data, 1024)
    indices = derive_indices(new_nonce(), tree.root.hex(), tree.leaf_count, 3)
    leaves = [data[i * 1024 : (i + 1) * 1024] for i in indices]
    proof = tree.prove(indices).to_bytes()
    ok = judge(root_hex=tree.root.hex(), leaf_count=8, indices=indices, leaves=leaves,
               proof=proof, latency=0.01, allowed=1.0)  # fmt: skip
    assert ok.verdict == "pass"
    # A miner that lost the shard builds a consistent tree over other bytes: rejected.
    fake = os.urandom(8 * 1024)
    fake_tree = MerkleTree.build(fake, 1024)
    fake_leaves = [fake[i * 1024 : (i + 1) * 1024] for i in indices]
    fake_proof = fake_tree.prove(indices).to_bytes()
    forged = judge(root_hex=tree.root.hex(), leaf_count=8, indices=indices, leaves=fake_leaves,
                   proof=fake_proof, latency=0.01, allowed=1.0)  # fmt: skip
    assert forged.verdict == "wrong"
    late = judge(root_hex=tree.root.hex(), leaf_count=8, indices=indices, leaves=leaves,
                 proof=proof, latency=2.0, allowed=1.0)  # fmt: skip
    assert late.verdict == "timeout"


def test_deadline_has_a_floor_and_grows_with_size() -> None:
    assert deadline(rtt=0.001, reply_bytes=1000) == 2.0
    assert deadline(rtt=0.5, reply_bytes=10_000_000, min_rate=1e6) == pytest.approx(10.5)


def test_detection_matches_the_formula_by_simulation() -> None:
    f, c = 0.05, 90
    assert detection_probability(f, c) == pytest.approx(0.99, abs=0.002)
    rng = random.Random(3)
    lost = set(rng.sample(range(1000), 50))  # 5% of 1000 leaves
    caught = sum(
        any(i in lost for i in derive_indices(new_nonce(), SHARD, 1000, 20)) for _ in range(2000)
    )
    expected = 1 - (1 - 0.05) ** 20  # sampling without replacement is slightly better
    assert caught / 2000 >= expected - 0.03
    # 1 - (1 - 0.6415)^7 = 0.99924 >= 0.999, while 6 rounds give 0.99789.
    assert rounds_to_detect(0.05, 20, 0.999) == 7
