"""Regenerate the pinned format vectors. Run only when the format changes on purpose, and
bump the manifest or tree version with it: stored data depends on these bytes.

    python -m tests.erasure.vectors.generate > tests/erasure/vectors/format_v1.json
"""

from __future__ import annotations

import json
from typing import Any

from blake3 import blake3

from erasure import ErasureParams, MerkleTree, ObjectEncoder

SEED = b"storage-subnet test vector v1"
KEY = bytes(range(32))

CASES: dict[str, dict[str, Any]] = {
    "small_plain": {"size": 100_000, "k": 3, "m": 5, "segment_size": 40_000, "leaf_size": 1024},
    "small_sealed": {
        "size": 100_000, "k": 3, "m": 5, "segment_size": 40_000, "leaf_size": 1024, "key": True
    },
    "defaults_one_byte": {"size": 1},
    "defaults_plain": {"size": 300_001},
    # The isal codec (ISA-L Cauchy RS through pyeclib): same layout, other check shares.
    "isal_small_plain": {
        "size": 100_000, "k": 3, "m": 5, "segment_size": 40_000, "leaf_size": 1024,
        "codec": "isal",
    },
    "isal_small_sealed": {
        "size": 100_000, "k": 3, "m": 5, "segment_size": 40_000, "leaf_size": 1024,
        "key": True, "codec": "isal",
    },
    "isal_defaults_one_byte": {"size": 1, "codec": "isal"},
    "isal_defaults_plain": {"size": 300_001, "codec": "isal"},
    # Shares of 2.5 column stripes (zfec and isal), so striping is pinned too.
    "zfec_striped": {"size": 2_621_447, "k": 4, "m": 7, "leaf_size": 4096},
    "isal_striped": {"size": 2_621_447, "k": 4, "m": 7, "leaf_size": 4096, "codec": "isal"},
}  # fmt: skip


def payload(size: int) -> bytes:
    return blake3(SEED).digest(length=size) if size else b""


def compute(case: dict[str, Any]) -> dict[str, Any]:
    fields = {k: case[k] for k in ("k", "m", "segment_size", "leaf_size", "codec") if k in case}
    params = ErasureParams(**fields)
    key = KEY if case.get("key") else None
    encoder = ObjectEncoder(params, encrypt=key is not None, key=key)
    data = payload(case["size"])
    segments = list(encoder.encode([data[i : i + 7000] for i in range(0, len(data), 7000)]))
    manifest = encoder.manifest()
    first = segments[0].shards[0].tree
    return {
        "shard_ids": [[s.id for s in seg.shards] for seg in segments],
        "manifest_json": manifest.to_json().decode(),
        "verifier_hash": manifest.verifier_hash().hex(),
        "capability": str(encoder.capability()),
        "first_shard_tree_file_blake3": blake3(first.to_bytes()).hexdigest(),
        "first_shard_proof_leaf0": first.prove([0]).to_bytes().hex(),
    }


def merkle_case() -> dict[str, Any]:
    tree = MerkleTree.build(payload(5 * 1024 + 17), 1024)
    return {"root": tree.root.hex(), "multiproof_1_4": tree.prove([1, 4]).to_bytes().hex()}


def generate() -> dict[str, Any]:
    return {
        "cases": {name: {**case, **compute(case)} for name, case in CASES.items()},
        "merkle_5kib_plus_17_leaf_1024": merkle_case(),
    }


if __name__ == "__main__":
    print(json.dumps(generate(), indent=1, sort_keys=True))  # noqa: T201 - its output is the file
