"""Pinned format vectors: a fixed input's shard ids, Merkle roots, proofs and manifest.

These bytes are what miners store and validators record. If this test fails, a change
altered the stored format: either revert it, or version the format and keep reading the old.
``format_v1.json`` is what manifest version 1 wrote (every object stored before client
sealing); ``format_v2.json`` what is written now, with client-sealed cases.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from erasure import (
    Capability,
    Manifest,
    ObjectEncoder,
    decode_object,
    open_segments,
    seal_segments,
    verify,
)
from erasure.merkle import MerkleProof
from tests.erasure.vectors.generate import CASES, CLIENT_CASES, KEY, generate, payload

FOLDER = Path(__file__).parent / "vectors"
PINNED: dict[int, dict[str, Any]] = {
    v: json.loads((FOLDER / f"format_v{v}.json").read_text()) for v in (1, 2)
}
FRESH = {v: generate(v) for v in (1, 2)}
ALL = [(1, name) for name in sorted(CASES)] + [
    (2, name) for name in sorted({**CASES, **CLIENT_CASES})
]


def test_version_1_file_is_reproduced_byte_for_byte() -> None:
    """Version 2 changed no stored byte: v1 manifests still come out of today's encoder."""
    text = json.dumps(FRESH[1], indent=1, sort_keys=True) + "\n"
    assert text == (FOLDER / "format_v1.json").read_text()


@pytest.mark.parametrize(("version", "name"), ALL)
def test_encoding_matches_pinned_vectors(version: int, name: str) -> None:
    pinned, fresh = PINNED[version]["cases"][name], FRESH[version]["cases"][name]
    for field in (
        "shard_ids",
        "manifest_json",
        "verifier_hash",
        "capability",
        "first_shard_tree_file_blake3",
        "first_shard_proof_leaf0",
    ):
        assert fresh[field] == pinned[field], f"v{version} {name}: {field} changed"


def test_merkle_vector_matches_and_verifies() -> None:
    pinned = PINNED[1]["merkle_5kib_plus_17_leaf_1024"]
    assert FRESH[2]["merkle_5kib_plus_17_leaf_1024"] == pinned
    data = payload(5 * 1024 + 17)
    leaves = [data[1024:2048], data[4096:5120]]
    proof = MerkleProof.from_bytes(bytes.fromhex(pinned["multiproof_1_4"]))
    verify(bytes.fromhex(pinned["root"]), 6, [1, 4], leaves, proof)


@pytest.mark.parametrize(("version", "name"), ALL)
def test_pinned_manifest_still_decodes(version: int, name: str) -> None:
    """Data stored under the pinned manifest stays readable by today's decoder."""
    case = PINNED[version]["cases"][name]
    manifest = Manifest.from_json(case["manifest_json"])
    assert manifest.version == version
    assert manifest.to_json().decode() == case["manifest_json"]
    cap = Capability.parse(case["capability"])
    assert cap.verifier == manifest.verifier_hash()
    data = payload(case["size"])
    params = manifest.params
    if manifest.sealer == "client":
        # The validator's view: ciphertext only. The client opens what it is served.
        assert cap.key is not None
        encoder = ObjectEncoder(params, presealed=True)
        segments = list(encoder.encode(seal_segments(cap.key, [data], params.segment_size)))
    else:
        encoder = ObjectEncoder(params, encrypt=cap.key is not None, key=cap.key)
        segments = list(encoder.encode([data]))
    held = [{s.share: bytes(s.data) for s in seg.shards[-params.k :]} for seg in segments]
    if manifest.sealer == "client":
        assert cap.key is not None
        served = decode_object(manifest, lambda i, _info: held[i], sealed=True)
        out = b"".join(open_segments(cap.key, served, params.segment_size, manifest.size))
    else:
        out = b"".join(decode_object(manifest, lambda i, _info: held[i], cap.key))
    assert out == data
    assert (cap.key == KEY) == bool(case.get("key"))


def test_version_1_records_who_sealed_by_implication() -> None:
    """Every v1 manifest is zfec or isal as written, and reads as sealed by the validator
    when encrypted (the only sealing there was), by nobody when not."""
    for name, case in PINNED[1]["cases"].items():
        manifest = Manifest.from_json(case["manifest_json"])
        assert manifest.version == 1
        assert manifest.params.codec == case.get("codec", "zfec"), name
        assert manifest.sealer == ("validator" if case.get("key") else "none"), name
    for name, case in PINNED[2]["cases"].items():
        manifest = Manifest.from_json(case["manifest_json"])
        expected = "client" if case.get("client") else "validator" if case.get("key") else "none"
        assert manifest.sealer == expected, name


def test_client_sealing_stores_the_same_shards_as_validator_sealing() -> None:
    """Sealing is one function wherever it runs: the same key and plaintext give the same
    shards; only who holds the key (and so the manifest's sealed_by) differs."""
    cases = PINNED[2]["cases"]
    assert cases["small_client_sealed"]["shard_ids"] == cases["small_sealed"]["shard_ids"]
    assert cases["isal_small_client_sealed"]["shard_ids"] == cases["isal_small_sealed"]["shard_ids"]
