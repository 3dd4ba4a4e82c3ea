"""Pinned format vectors: a fixed input's shard ids, Merkle roots, proofs and manifest.

These bytes are what miners store and validators record. If this test fails, a change
altered the stored format: either revert it, or version the format and keep reading the old.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from erasure import Capability, Manifest, ObjectEncoder, decode_object, verify
from erasure.merkle import MerkleProof
from tests.erasure.vectors.generate import CASES, KEY, generate, payload

PINNED: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "format_v1.json").read_text()
)
FRESH = generate()


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoding_matches_pinned_vectors(name: str) -> None:
    pinned, fresh = PINNED["cases"][name], FRESH["cases"][name]
    for field in (
        "shard_ids",
        "manifest_json",
        "verifier_hash",
        "capability",
        "first_shard_tree_file_blake3",
        "first_shard_proof_leaf0",
    ):
        assert fresh[field] == pinned[field], f"{name}: {field} changed"


def test_merkle_vector_matches_and_verifies() -> None:
    pinned = PINNED["merkle_5kib_plus_17_leaf_1024"]
    assert FRESH["merkle_5kib_plus_17_leaf_1024"] == pinned
    data = payload(5 * 1024 + 17)
    leaves = [data[1024:2048], data[4096:5120]]
    proof = MerkleProof.from_bytes(bytes.fromhex(pinned["multiproof_1_4"]))
    verify(bytes.fromhex(pinned["root"]), 6, [1, 4], leaves, proof)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pinned_manifest_still_decodes(name: str) -> None:
    """Data stored under the pinned manifest stays readable by today's decoder."""
    case = PINNED["cases"][name]
    manifest = Manifest.from_json(case["manifest_json"])
    cap = Capability.parse(case["capability"])
    assert cap.verifier == manifest.verifier_hash()
    # Rebuild the shares miners would hold, then read them back under the pinned manifest.
    encoder = ObjectEncoder(manifest.params, encrypt=cap.key is not None, key=cap.key)
    data = payload(case["size"])
    held = [
        {s.share: bytes(s.data) for s in seg.shards[-manifest.params.k :]}
        for seg in encoder.encode([data])
    ]
    out = b"".join(decode_object(manifest, lambda i, _info: held[i], cap.key))
    assert out == data
    assert (cap.key == KEY) == bool(case.get("key"))


def test_every_manifest_written_before_isal_reads_as_zfec() -> None:
    """The pinned zfec manifests (what every stored object had before isal) parse as zfec,
    and the isal ones as isal: the codec field, present in version 1 from the start."""
    for name, case in PINNED["cases"].items():
        manifest = Manifest.from_json(case["manifest_json"])
        assert manifest.version == 1
        assert manifest.params.codec == case.get("codec", "zfec"), name
