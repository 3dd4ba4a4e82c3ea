"""Proof-of-retrievability challenges, as pure functions: which leaves, how long, what verdict.

A challenge names a shard and ``count`` leaf indices that the validator derives from a fresh
random nonce, so a miner cannot know in advance which leaves it must hold. The answer is
checked against the root **the validator recorded at upload** (the shard id), never against
anything in the answer: that is the flaw FileTAO shipped.

If a miner lost a fraction ``f`` of a shard's leaves, one challenge of ``c`` leaves catches it
with probability ``1 - (1 - f) ** c`` (:func:`detection_probability`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from blake3 import blake3

from erasure import BadProofError, MerkleProof, hash_leaf, verify_leaf_hashes
from erasure.merkle import HASH_SIZE

NONCE_BYTES = 16
_INDEX_KEY = blake3(b"storage-subnet challenge indices v1").digest()

Verdict = Literal["pass", "wrong", "timeout", "missing"]


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def derive_indices(nonce: bytes, shard_id: str, leaf_count: int, count: int) -> tuple[int, ...]:
    """``min(count, leaf_count)`` distinct leaf indices, fixed by the nonce and the shard.

    Anyone holding the nonce (an auditor re-checking the log) derives the same indices.
    """
    if leaf_count < 1 or count < 1:
        raise ValueError("a challenge needs at least one leaf and one index")
    wanted = min(count, leaf_count)
    stream = blake3(nonce + bytes.fromhex(shard_id), key=_INDEX_KEY)
    chosen: dict[int, None] = {}
    offset = 0
    while len(chosen) < wanted:
        block = stream.digest(length=8 * 64, seek=offset)
        offset += len(block)
        for i in range(0, len(block), 8):
            value = int.from_bytes(block[i : i + 8], "big")
            # Reject the top sliver so every index is exactly equally likely.
            if value >= (1 << 64) - (1 << 64) % leaf_count:
                continue
            chosen.setdefault(value % leaf_count)
            if len(chosen) == wanted:
                break
    return tuple(chosen)


def answer_bytes(leaves: int, leaf_size: int, leaf_count: int) -> int:
    """What an honest answer to ``leaves`` leaves of a shard brings: the leaves, and a proof
    of at most one hash per leaf per level of its tree."""
    return leaves * (leaf_size + HASH_SIZE * max(1, math.ceil(math.log2(leaf_count + 1))))


def deadline(
    *, rtt: float, reply_bytes: int, floor: float = 2.0, min_rate: float = 1_000_000.0
) -> float:
    """Seconds a miner gets to answer: ``max(floor, rtt + bytes / min_rate)`` (after Storj)."""
    return max(floor, rtt + reply_bytes / min_rate)


@dataclass(frozen=True, slots=True)
class ChallengeResult:
    verdict: Verdict
    reason: str
    latency: float | None


def judge(
    *,
    root_hex: str,
    leaf_count: int,
    indices: Sequence[int],
    leaves: Sequence[bytes],
    proof: bytes,
    latency: float | None,
    allowed: float,
) -> ChallengeResult:
    """The verdict on one answer: late is ``timeout``, a failed proof is ``wrong``."""
    return judge_hashes(
        root_hex=root_hex,
        leaf_count=leaf_count,
        indices=indices,
        leaf_hashes=[hash_leaf(leaf) for leaf in leaves],
        proof=proof,
        latency=latency,
        allowed=allowed,
    )


def judge_hashes(
    *,
    root_hex: str,
    leaf_count: int,
    indices: Sequence[int],
    leaf_hashes: Sequence[bytes],
    proof: bytes,
    latency: float | None,
    allowed: float,
) -> ChallengeResult:
    """:func:`judge` from the hashes of the leaves received (the log keeps those)."""
    if latency is None or latency > allowed:
        return ChallengeResult("timeout", f"no answer within {allowed:.3f}s", latency)
    try:
        verify_leaf_hashes(
            bytes.fromhex(root_hex), leaf_count, indices, leaf_hashes, MerkleProof.from_bytes(proof)
        )
    except BadProofError as exc:
        return ChallengeResult("wrong", str(exc), latency)
    return ChallengeResult("pass", "proof verified against the upload-time root", latency)


def detection_probability(lost_fraction: float, leaves_per_challenge: int) -> float:
    return 1.0 - (1.0 - lost_fraction) ** leaves_per_challenge


def rounds_to_detect(lost_fraction: float, leaves_per_challenge: int, confidence: float) -> int:
    """Challenges of one shard needed to catch a loss of ``lost_fraction`` with ``confidence``."""
    p = detection_probability(lost_fraction, leaves_per_challenge)
    if p <= 0:
        raise ValueError("nothing lost is never detected")
    if p >= 1:
        return 1
    return max(1, math.ceil(math.log(1 - confidence) / math.log(1 - p)))
