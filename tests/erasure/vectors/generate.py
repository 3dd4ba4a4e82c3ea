"""Regenerate the pinned format vectors. Run only when the format changes on purpose, and
bump the manifest or tree version with it: stored data depends on these bytes.

    python -m tests.erasure.vectors.generate 2 > tests/erasure/vectors/format_v2.json

``format_v1.json`` is what manifest version 1 wrote; ``generate 1`` still reproduces it
byte for byte (the shards did not change in version 2, only the manifest gained
``sealed_by``). Version 2 adds cases sealed by the client: the object is sealed with
:func:`erasure.seal_segments` and coded with ``presealed=True``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from blake3 import blake3

from erasure import Capability, ErasureParams, MerkleTree, ObjectEncoder, seal_segments

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

# Version 2: the client seals, the encoder codes ciphertext. Same shards as the "sealed"
# cases above (sealing is the same function wherever it runs); only the manifest differs.
CLIENT_CASES: dict[str, dict[str, Any]] = {
    "small_client_sealed": {
        "size": 100_000, "k": 3, "m": 5, "segment_size": 40_000, "leaf_size": 1024,
        "key": True, "client": True,
    },
    "isal_small_client_sealed": {
        "size": 100_000, "k": 3, "m": 5, "segment_size": 40_000, "leaf_size": 1024,
        "key": True, "client": True, "codec": "isal",
    },
    "client_sealed_one_byte": {"size": 1, "key": True, "client": True},
}  # fmt: skip


def cases(version: int) -> dict[str, dict[str, Any]]:
    return CASES if version == 1 else {**CASES, **CLIENT_CASES}


def payload(size: int) -> bytes:
    return blake3(SEED).digest(length=size) if size else b""


def compute(case: dict[str, Any], version: int) -> dict[str, Any]:
    fields = {k: case[k] for k in ("k", "m", "segment_size", "leaf_size", "codec") if k in case}
    params = ErasureParams(**fields)
    key = KEY if case.get("key") else None
    data = payload(case["size"])
    chunks = [data[i : i + 7000] for i in range(0, len(data), 7000)]
    if case.get("client"):
        assert key is not None
        encoder = ObjectEncoder(params, presealed=True)
        chunks = list(seal_segments(key, chunks, params.segment_size))
    else:
        encoder = ObjectEncoder(params, encrypt=key is not None, key=key)
    segments = list(encoder.encode(chunks))
    manifest = encoder.manifest().as_version(version)
    capability = Capability(
        verifier=manifest.verifier_hash(), k=params.k, m=params.m, size=manifest.size, key=key
    )
    first = segments[0].shards[0].tree
    return {
        "shard_ids": [[s.id for s in seg.shards] for seg in segments],
        "manifest_json": manifest.to_json().decode(),
        "verifier_hash": manifest.verifier_hash().hex(),
        "capability": str(capability),
        "first_shard_tree_file_blake3": blake3(first.to_bytes()).hexdigest(),
        "first_shard_proof_leaf0": first.prove([0]).to_bytes().hex(),
    }


def merkle_case() -> dict[str, Any]:
    tree = MerkleTree.build(payload(5 * 1024 + 17), 1024)
    return {"root": tree.root.hex(), "multiproof_1_4": tree.prove([1, 4]).to_bytes().hex()}


def generate(version: int = 2) -> dict[str, Any]:
    return {
        "cases": {
            name: {**case, **compute(case, version)} for name, case in cases(version).items()
        },
        "merkle_5kib_plus_17_leaf_1024": merkle_case(),
    }


if __name__ == "__main__":
    chosen = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    print(json.dumps(generate(chosen), indent=1, sort_keys=True))  # noqa: T201 - its output is the file
