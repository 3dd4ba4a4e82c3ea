"""The public surface of :mod:`erasure`: it only changes on purpose."""

from __future__ import annotations

import erasure

EXPECTED = {
    "CODECS",
    "MANIFEST_VERSION",
    "READABLE_VERSIONS",
    "SealedBy",
    "SealedStreamError",
    "BadProofError",
    "Capability",
    "CapabilityError",
    "Codec",
    "DecryptionError",
    "EncodedSegment",
    "ErasureError",
    "ErasureParams",
    "InvalidParamsError",
    "Manifest",
    "ManifestError",
    "MerkleBuilder",
    "MerkleError",
    "MerkleProof",
    "MerkleTree",
    "NotEnoughSharesError",
    "ObjectEncoder",
    "SegmentInfo",
    "Shard",
    "ShardIntegrityError",
    "TreeFormatError",
    "UnsupportedVersionError",
    "decode_object",
    "decode_segment",
    "decode_segment_shares",
    "decrypt_segment",
    "encode_segment",
    "encode_segment_shards",
    "encrypt_segment",
    "get_codec",
    "leaf_count_for",
    "new_key",
    "open_segments",
    "seal_segments",
    "sealed_size",
    "segment_count",
    "split_segments",
    "verify",
    "verify_leaf_hashes",
    "hash_leaf",
}


def test_all_is_exactly_the_expected_names() -> None:
    assert len(erasure.__all__) == len(set(erasure.__all__)), "__all__ lists a name twice"
    assert set(erasure.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    missing = [name for name in erasure.__all__ if not hasattr(erasure, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from erasure import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == EXPECTED


def test_error_tree() -> None:
    assert issubclass(erasure.InvalidParamsError, erasure.ErasureError)
    assert issubclass(erasure.InvalidParamsError, ValueError)
    assert issubclass(erasure.CapabilityError, erasure.ErasureError)
    assert issubclass(erasure.CapabilityError, ValueError)
    for name in ("NotEnoughSharesError", "ShardIntegrityError", "DecryptionError"):
        assert issubclass(getattr(erasure, name), erasure.ErasureError)
    assert issubclass(erasure.BadProofError, erasure.MerkleError)
    assert issubclass(erasure.TreeFormatError, erasure.MerkleError)
    assert issubclass(erasure.MerkleError, erasure.ErasureError)
    assert issubclass(erasure.UnsupportedVersionError, erasure.ManifestError)
    assert issubclass(erasure.ManifestError, erasure.ErasureError)
    assert erasure.MANIFEST_VERSION == 2
    assert erasure.READABLE_VERSIONS == (1, 2)
    assert issubclass(erasure.SealedStreamError, erasure.ErasureError)
