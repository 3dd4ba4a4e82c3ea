"""The manifest: what a reader needs, besides the key, to find and rebuild an object.

It names the erasure codec (``zfec`` or ``isal``, see :mod:`erasure.codec`) and lists every
segment with its stored size, padding, shard size and the ids of its m shards in share
order. A shard id is the hex Merkle root of the shard's bytes (see :mod:`erasure.merkle`), so
the id is also the root a challenge is checked against.

The JSON form is canonical (sorted keys, no spaces, ASCII), so the same manifest always
has the same bytes and the same :meth:`Manifest.verifier_hash`, which capabilities carry.
A manifest of an unknown version is refused rather than guessed at.

The ``codec`` field has been in version 1 from the start, and every manifest written before
the isal codec says ``zfec``, so those read exactly as before and keep their bytes. An isal
manifest is still version 1: its layout is the same, and a reader that predates isal refuses
it by its codec field (``unsupported codec``) instead of decoding it wrongly.

Version 2 adds one field, ``sealed_by``: ``none`` (stored as given), ``validator`` (the
erasure encoder sealed each segment, and handed the key back) or ``client`` (the segments
arrived sealed: the encoder coded ciphertext it cannot read, and never had the key). The
stored bytes are the same either way; who sealed says who can read them, which a reader
needs to know (a client-sealed object is served as ciphertext). Version 1 manifests still
read, as ``validator`` when encrypted (the only sealing there was) and keep their bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from blake3 import blake3

from erasure.codec import CODECS
from erasure.crypto import TAG_SIZE
from erasure.errors import InvalidParamsError, ManifestError, UnsupportedVersionError
from erasure.merkle import leaf_count_for
from erasure.params import ErasureParams

MANIFEST_VERSION = 2  # the version written; READABLE_VERSIONS are read
READABLE_VERSIONS = (1, 2)
HASH = "blake3-merkle-v1"
Encryption = Literal["none", "aes-256-gcm"]
_ENCRYPTIONS: tuple[Encryption, ...] = ("none", "aes-256-gcm")
SealedBy = Literal["none", "validator", "client"]
SEALERS: tuple[SealedBy, ...] = ("none", "validator", "client")
_SHARD_ID = re.compile(r"[0-9a-f]{64}")
_VERIFIER_KEY = blake3(b"storage-subnet manifest v1").digest()


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment as stored: ``size`` stored bytes (ciphertext when encrypted)."""

    size: int
    padding: int
    shard_size: int
    shard_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    params: ErasureParams
    size: int
    encryption: Encryption
    segments: tuple[SegmentInfo, ...]
    version: int = MANIFEST_VERSION
    # None: implied by the encryption (``validator`` when sealed), as version 1 has it.
    sealed_by: SealedBy | None = None

    def __post_init__(self) -> None:
        if self.sealed_by is None:
            implied: SealedBy = "validator" if self.encryption != "none" else "none"
            object.__setattr__(self, "sealed_by", implied)
        _validate(self)

    @property
    def encrypted(self) -> bool:
        return self.encryption != "none"

    @property
    def sealer(self) -> SealedBy:
        """Who sealed the segments (``sealed_by``, never None once built)."""
        return self.sealed_by or "none"

    @property
    def stored_size(self) -> int:
        """Bytes stored: the plaintext plus one tag per segment when sealed."""
        return sum(s.size for s in self.segments)

    @property
    def stored_segment_size(self) -> int:
        """Stored bytes of every segment but the last."""
        return self.params.segment_size + (TAG_SIZE if self.encrypted else 0)

    def as_version(self, version: int) -> Manifest:
        """The same manifest written in another readable version (pinned vectors)."""
        return replace(self, version=version)

    def plaintext_size(self, index: int) -> int:
        return self.segments[index].size - (TAG_SIZE if self.encrypted else 0)

    def leaf_count(self, index: int) -> int:
        return leaf_count_for(self.segments[index].shard_size, self.params.leaf_size)

    def to_dict(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "version": self.version,
            "codec": self.params.codec,
            "hash": HASH,
            "encryption": self.encryption,
            "k": self.params.k,
            "m": self.params.m,
            "segment_size": self.params.segment_size,
            "leaf_size": self.params.leaf_size,
            "size": self.size,
            "segments": [
                {
                    "size": s.size,
                    "padding": s.padding,
                    "shard_size": s.shard_size,
                    "shards": list(s.shard_ids),
                }
                for s in self.segments
            ],
        }
        if self.version >= 2:
            raw["sealed_by"] = self.sealer
        return raw

    def to_json(self) -> bytes:
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        ).encode("ascii")

    def verifier_hash(self) -> bytes:
        return blake3(self.to_json(), key=_VERIFIER_KEY).digest()

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: object) -> Manifest:
        if not isinstance(raw, dict):
            raise ManifestError("manifest must be a JSON object")
        version = raw.get("version")
        # `type is int`: True and 1.0 equal 1 but would serialise differently.
        if type(version) is not int or version not in READABLE_VERSIONS:
            raise UnsupportedVersionError(
                f"manifest version {version!r} is not supported (this code reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade the client that reads it"
            )
        expected = {
            "version", "codec", "hash", "encryption", "k", "m",
            "segment_size", "leaf_size", "size", "segments",
        }  # fmt: skip
        if version >= 2:
            expected.add("sealed_by")
        if set(raw) != expected:
            missing, extra = expected - set(raw), set(raw) - expected
            raise ManifestError(
                f"manifest fields wrong: missing {missing or '{}'}, extra {extra or '{}'}"
            )
        if raw["codec"] not in CODECS or raw["hash"] != HASH:
            raise ManifestError(
                f"unsupported codec/hash {raw['codec']!r}/{raw['hash']!r} (this code reads "
                f"codecs {', '.join(CODECS)} with hash {HASH})"
            )
        if raw["encryption"] not in _ENCRYPTIONS:
            raise ManifestError(f"unknown encryption {raw['encryption']!r}")
        sealed_by = raw.get("sealed_by")
        if version >= 2 and sealed_by not in SEALERS:
            raise ManifestError(f"sealed_by must be one of {', '.join(SEALERS)}")
        try:
            params = ErasureParams(
                k=_int(raw, "k"),
                m=_int(raw, "m"),
                segment_size=_int(raw, "segment_size"),
                leaf_size=_int(raw, "leaf_size"),
                codec=raw["codec"],
            )
        except InvalidParamsError as exc:
            raise ManifestError(f"manifest parameters invalid: {exc}") from None
        segments_raw = raw["segments"]
        if not isinstance(segments_raw, list):
            raise ManifestError("segments must be a list")
        return cls(
            params=params,
            size=_int(raw, "size"),
            encryption=raw["encryption"],
            segments=tuple(_segment(s) for s in segments_raw),
            version=version,
            sealed_by=sealed_by,
        )


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if type(value) is not int or value < 0:
        raise ManifestError(f"{key} must be a non-negative integer, got {value!r}")
    return value


def _segment(raw: object) -> SegmentInfo:
    if not isinstance(raw, dict) or set(raw) != {"size", "padding", "shard_size", "shards"}:
        raise ManifestError("each segment needs exactly: size, padding, shard_size, shards")
    shards = raw["shards"]
    if not isinstance(shards, list) or not all(isinstance(s, str) for s in shards):
        raise ManifestError("segment shards must be a list of shard id strings")
    return SegmentInfo(
        size=_int(raw, "size"),
        padding=_int(raw, "padding"),
        shard_size=_int(raw, "shard_size"),
        shard_ids=tuple(shards),
    )


def _validate(manifest: Manifest) -> None:
    params = manifest.params
    if manifest.version not in READABLE_VERSIONS:
        raise UnsupportedVersionError(f"manifest version {manifest.version} is not supported")
    if (manifest.sealer == "none") != (not manifest.encrypted):
        raise ManifestError(
            f"sealed_by {manifest.sealer!r} does not fit encryption {manifest.encryption!r}"
        )
    if manifest.version == 1 and manifest.sealer == "client":
        raise ManifestError("a version 1 manifest cannot record client sealing; write version 2")
    overhead = TAG_SIZE if manifest.encrypted else 0
    total = 0
    last = len(manifest.segments) - 1
    for i, seg in enumerate(manifest.segments):
        plain = seg.size - overhead
        if i < last and plain != params.segment_size:
            raise ManifestError(f"segment {i} holds {plain} bytes, expected {params.segment_size}")
        if not 1 <= plain <= params.segment_size:
            raise ManifestError(f"segment {i} holds {plain} bytes, outside 1..segment_size")
        if seg.shard_size != params.shard_size(seg.size):
            raise ManifestError(f"segment {i} shard_size {seg.shard_size} does not fit its size")
        if seg.padding != seg.shard_size * params.k - seg.size:
            raise ManifestError(f"segment {i} padding {seg.padding} does not fit its size")
        if len(seg.shard_ids) != params.m:
            raise ManifestError(
                f"segment {i} lists {len(seg.shard_ids)} shards, expected {params.m}"
            )
        for sid in seg.shard_ids:
            if not _SHARD_ID.fullmatch(sid):
                raise ManifestError(f"segment {i} has a malformed shard id {sid!r}")
        total += plain
    if total != manifest.size:
        raise ManifestError(f"segments hold {total} bytes but the manifest says {manifest.size}")
