"""Store shards on a miner and challenge them as a validator does, judging each answer.

Thin helpers over ``validator.miner_client.MinerClient`` and ``validator.challenges``: the
answers are judged against the root computed here at "upload", never one from the answer.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from erasure import MerkleTree
from protocol.wire import StorageReceipt
from validator.challenges import (
    ChallengeResult,
    answer_bytes,
    derive_indices,
    judge_hashes,
    new_nonce,
)
from validator.miner_client import MinerAddress, MinerClient

LEAF = 16 * 1024


@dataclass(frozen=True, slots=True)
class SampleShard:
    data: bytes
    tree: MerkleTree

    @property
    def id(self) -> str:
        return self.tree.root.hex()

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def leaf_count(self) -> int:
        return self.tree.leaf_count

    def leaf(self, index: int) -> bytes:
        return self.data[index * self.tree.leaf_size : (index + 1) * self.tree.leaf_size]


def make_shard(size: int, seed: int, leaf_size: int = LEAF) -> SampleShard:
    data = random.Random(seed).randbytes(size)
    return SampleShard(data, MerkleTree.build(data, leaf_size))


async def store(client: MinerClient, miner: MinerAddress, shard: SampleShard) -> StorageReceipt:
    """Push the shard; the receipt is checked by ``MinerClient.put_shard``."""
    return await client.put_shard(miner, shard.id, [shard.data], shard.size, shard.tree.leaf_size)


@dataclass(frozen=True, slots=True)
class Probe:
    """One challenge and what came of it."""

    shard_id: str
    nonce: bytes
    indices: tuple[int, ...]
    status: int  # the answer's own status: 200, or 404 for a lost shard, ...
    error: str | None
    result: ChallengeResult | None  # judged when the status is 200
    latency: float  # seconds for the whole batch it was part of

    @property
    def verdict(self) -> str:
        """``pass``, ``wrong`` or ``timeout`` for an answer, else ``status_<code>``."""
        return self.result.verdict if self.result is not None else f"status_{self.status}"


async def challenge(
    client: MinerClient,
    miner: MinerAddress,
    shards: Sequence[SampleShard],
    *,
    count: int = 4,
    nonces: Sequence[bytes] | None = None,
    allowed: float = 30.0,
) -> list[Probe]:
    """Challenge every shard once, in one batch; pass ``nonces`` to repeat a batch exactly."""
    nonces = list(nonces) if nonces is not None else [new_nonce() for _ in shards]
    indices = [
        derive_indices(nonce, s.id, s.leaf_count, count)
        for nonce, s in zip(nonces, shards, strict=True)
    ]
    wire = [
        {"shard_id": s.id, "nonce": nonce.hex(), "indices": list(idx)}
        for s, nonce, idx in zip(shards, nonces, indices, strict=True)
    ]
    started = time.perf_counter()
    expected = sum(
        answer_bytes(len(idx), s.tree.leaf_size, s.leaf_count)
        for s, idx in zip(shards, indices, strict=True)
    )
    answers, answered = await client.challenge(miner, wire, expected)
    latency = time.perf_counter() - started
    probes = []
    brought = iter(answered)  # one per answer with status 200, in order
    for s, nonce, idx, entry in zip(shards, nonces, indices, answers, strict=True):
        status = int(entry["status"])
        result = None
        if status == 200:
            leaves = next(brought)
            result = judge_hashes(
                root_hex=s.id,
                leaf_count=s.leaf_count,
                indices=idx,
                leaf_hashes=list(leaves.leaf_hashes),
                proof=leaves.proof,
                latency=latency,
                allowed=allowed,
            )
        probes.append(Probe(s.id, nonce, idx, status, _error(entry), result, latency))
    return probes


def _error(entry: dict[str, Any]) -> str | None:
    error = entry.get("error")
    return None if error is None else str(error)
