"""The erasure core: pure, synchronous, no sockets and no asyncio.

Objects go in as a stream of chunks and come out as segments, each sealed with AES-256-GCM
(optional), erasure-coded into m shares of which any k rebuild it (a :class:`Codec`: zfec,
or ISA-L through pyeclib; the manifest names which), and hashed into a Merkle tree per share
whose root is the shard's id. A :class:`Manifest` lists it all, and a :class:`Capability`
string carries what a reader needs. A client can seal an object itself
(:func:`seal_segments`) and have it coded as ciphertext it keeps the key of
(``ObjectEncoder(presealed=True)``). Async callers run these functions in threads
(``asyncio.to_thread``): zfec, AES and BLAKE3 release the GIL (pyeclib does not, but is fast).

This package imports nothing else of the project.
"""

from erasure.capability import Capability
from erasure.codec import CODECS, Codec, decode_segment, encode_segment, get_codec
from erasure.crypto import decrypt_segment, encrypt_segment, new_key
from erasure.errors import (
    BadProofError,
    CapabilityError,
    DecryptionError,
    ErasureError,
    InvalidParamsError,
    ManifestError,
    MerkleError,
    NotEnoughSharesError,
    SealedStreamError,
    ShardIntegrityError,
    TreeFormatError,
    UnsupportedVersionError,
)
from erasure.manifest import MANIFEST_VERSION, READABLE_VERSIONS, Manifest, SealedBy, SegmentInfo
from erasure.merkle import (
    MerkleBuilder,
    MerkleProof,
    MerkleTree,
    hash_leaf,
    leaf_count_for,
    verify,
    verify_leaf_hashes,
)
from erasure.objects import (
    EncodedSegment,
    ObjectEncoder,
    Shard,
    decode_object,
    decode_segment_shares,
    encode_segment_shards,
    split_segments,
)
from erasure.params import ErasureParams
from erasure.sealing import open_segments, seal_segments, sealed_size, segment_count

__all__ = [
    "CODECS",
    "MANIFEST_VERSION",
    "READABLE_VERSIONS",
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
    "SealedBy",
    "SealedStreamError",
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
    "hash_leaf",
    "leaf_count_for",
    "new_key",
    "open_segments",
    "seal_segments",
    "sealed_size",
    "segment_count",
    "split_segments",
    "verify",
    "verify_leaf_hashes",
]
