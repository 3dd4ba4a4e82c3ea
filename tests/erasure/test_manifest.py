"""Manifests: canonical JSON that round-trips, and refusal of anything malformed."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erasure import (
    ErasureParams,
    Manifest,
    ManifestError,
    ObjectEncoder,
    SegmentInfo,
    UnsupportedVersionError,
)
from erasure.crypto import TAG_SIZE
from tests.erasure.helpers import chunked, object_sizes, payload, small_params


def encode(params: ErasureParams, data: bytes, *, encrypt: bool) -> Manifest:
    encoder = ObjectEncoder(params, encrypt=encrypt)
    for _ in encoder.encode(chunked(data, [777])):
        pass
    return encoder.manifest()


def canonical(raw: object) -> bytes:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    params = draw(small_params(max_segment=4096))
    size = draw(object_sizes(params.segment_size, params.k))
    return encode(params, payload(size, draw(st.integers(0, 2**32))), encrypt=draw(st.booleans()))


@settings(max_examples=60, deadline=None)
@given(manifests())
def test_json_round_trips_and_is_canonical(manifest: Manifest) -> None:
    text = manifest.to_json()
    assert isinstance(text, bytes)
    parsed = Manifest.from_json(text)
    assert parsed == manifest
    assert Manifest.from_json(text.decode()) == manifest  # str input too
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    raw = json.loads(text)
    assert canonical(raw) == text
    assert parsed.to_json() == text
    # Non-canonical spellings of the same manifest parse to it, and re-serialise canonically.
    loose = json.dumps(raw, indent=3, sort_keys=False).encode()
    assert Manifest.from_json(loose) == manifest
    assert Manifest.from_json(loose).to_json() == text
    assert Manifest.from_json(loose).verifier_hash() == manifest.verifier_hash()


@settings(max_examples=40, deadline=None)
@given(manifests())
def test_manifest_describes_the_object(manifest: Manifest) -> None:
    params = manifest.params
    raw = json.loads(manifest.to_json())
    assert raw["version"] == 2
    assert raw["sealed_by"] == ("validator" if manifest.encrypted else "none")
    assert (raw["codec"], raw["hash"]) == (params.codec, "blake3-merkle-v1")
    assert raw["encryption"] == ("aes-256-gcm" if manifest.encrypted else "none")
    overhead = TAG_SIZE if manifest.encrypted else 0
    assert len(manifest.segments) == -(-manifest.size // params.segment_size)
    for i, seg in enumerate(manifest.segments):
        assert manifest.plaintext_size(i) == seg.size - overhead
        assert seg.shard_size == -(-seg.size // params.k)
        assert seg.padding == seg.shard_size * params.k - seg.size
        assert manifest.leaf_count(i) == max(1, -(-seg.shard_size // params.leaf_size))
        assert len(seg.shard_ids) == params.m
    assert sum(manifest.plaintext_size(i) for i in range(len(manifest.segments))) == manifest.size


def test_verifier_hash_is_stable_and_pins_every_field() -> None:
    manifest = encode(ErasureParams(3, 5, 1000, 64), payload(2500), encrypt=True)
    first = manifest.verifier_hash()
    assert len(first) == 32
    assert manifest.verifier_hash() == first
    assert Manifest.from_json(manifest.to_json()).verifier_hash() == first
    seen = {first}
    seg = manifest.segments[1]
    ids = list(seg.shard_ids)
    ids[2] = ids[2][:-1] + ("0" if ids[2][-1] != "0" else "1")
    changed = [
        Manifest(manifest.params, manifest.size, "aes-256-gcm",
                 (manifest.segments[0], SegmentInfo(seg.size, seg.padding, seg.shard_size,
                                                    tuple(ids)), manifest.segments[2])),
        Manifest(ErasureParams(3, 5, 1000, 128), manifest.size, "aes-256-gcm", manifest.segments),
        Manifest(ErasureParams(3, 5, 1000, 64, "isal"), manifest.size, "aes-256-gcm",
                 manifest.segments),
        Manifest(manifest.params, manifest.size, "aes-256-gcm", manifest.segments[1:2]
                 + manifest.segments[:1] + manifest.segments[2:]),
    ]  # fmt: skip
    for other in changed:
        assert other != manifest
        seen.add(other.verifier_hash())
    assert len(seen) == 1 + len(changed)


@pytest.mark.parametrize("codec", ["zfec", "isal"])
def test_the_codec_is_recorded_and_read_back(codec: str) -> None:
    manifest = encode(ErasureParams(3, 5, 1000, 64, codec), payload(2500), encrypt=False)
    assert manifest.params.codec == codec
    assert json.loads(manifest.to_json())["codec"] == codec
    assert Manifest.from_json(manifest.to_json()).params.codec == codec
    assert ErasureParams().codec == "zfec", "zfec stays the default"


def test_empty_object_manifest() -> None:
    manifest = encode(ErasureParams(2, 3, 100, 64), b"", encrypt=True)
    assert (manifest.size, manifest.segments) == (0, ())
    assert Manifest.from_json(manifest.to_json()) == manifest


# --- refusals ----------------------------------------------------------------------------

BASE = encode(ErasureParams(3, 5, 1000, 64), payload(2500, seed=7), encrypt=True)


def raw_manifest() -> dict[str, Any]:
    return copy.deepcopy(json.loads(BASE.to_json()))


def refused(raw: object, error: type[ManifestError] = ManifestError) -> ManifestError:
    with pytest.raises(error) as info:
        Manifest.from_json(json.dumps(raw))
    with pytest.raises(error):
        Manifest.from_dict(raw)
    return info.value


def test_base_is_valid() -> None:
    assert Manifest.from_json(json.dumps(raw_manifest())) == BASE
    assert len(BASE.segments) == 3


@pytest.mark.parametrize("version", [0, 3, 99, -1, None, "1", [1], {"v": 1}])
def test_unknown_version_is_refused_and_named(version: object) -> None:
    raw = raw_manifest()
    raw["version"] = version
    error = refused(raw, UnsupportedVersionError)
    assert f"version {version!r}" in str(error)


def test_missing_version_is_unsupported() -> None:
    raw = raw_manifest()
    del raw["version"]
    assert "None" in str(refused(raw, UnsupportedVersionError))


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_must_be_the_integer_one(version: object) -> None:
    """``true`` and ``1.0`` compare equal to 1 in Python, but a manifest read with them
    compares equal to the real one while serialising to other bytes, so its verifier hash
    (which capabilities carry) differs. They must be refused like any other wrong type."""
    raw = raw_manifest()
    raw["version"] = version
    refused(raw)


@pytest.mark.parametrize(
    "field",
    ["codec", "hash", "encryption", "k", "m", "segment_size", "leaf_size", "size", "segments"],
)
def test_missing_field(field: str) -> None:
    raw = raw_manifest()
    del raw[field]
    assert "missing" in str(refused(raw))


@pytest.mark.parametrize("field", ["extra", "Size", "key"])
def test_unknown_field(field: str) -> None:
    raw = raw_manifest()
    raw[field] = 1
    assert "extra" in str(refused(raw))


@pytest.mark.parametrize(
    ("field", "value"),
    [("codec", "reed-solomon"), ("codec", None), ("codec", "ISAL"), ("codec", ["zfec"]),
     ("hash", "sha256-merkle"),
     ("encryption", "chacha20"), ("encryption", None), ("encryption", True)],
)  # fmt: skip
def test_unknown_codec_hash_or_encryption(field: str, value: object) -> None:
    raw = raw_manifest()
    raw[field] = value
    refused(raw)


BAD_INTS: list[object] = [True, False, "3", 3.0, 1e3, -1, None, [3], {"n": 3}]


@pytest.mark.parametrize("value", BAD_INTS)
@pytest.mark.parametrize("field", ["k", "m", "segment_size", "leaf_size", "size"])
def test_top_level_ints_must_be_ints(field: str, value: object) -> None:
    raw = raw_manifest()
    raw[field] = value
    refused(raw)


@pytest.mark.parametrize("value", BAD_INTS)
@pytest.mark.parametrize("field", ["size", "padding", "shard_size"])
def test_segment_ints_must_be_ints(field: str, value: object) -> None:
    raw = raw_manifest()
    raw["segments"][1][field] = value
    refused(raw)


@pytest.mark.parametrize(
    "fields",
    [{"k": 0}, {"k": 6}, {"m": 257}, {"segment_size": 0}, {"leaf_size": 100},
     {"leaf_size": 32}],
)  # fmt: skip
def test_invalid_parameters(fields: dict[str, int]) -> None:
    raw = raw_manifest()
    raw.update(fields)
    refused(raw)


@pytest.mark.parametrize("segments", [None, {}, "[]", [None], [[]], ["x"], [1]])
def test_segments_must_be_a_list_of_objects(segments: object) -> None:
    raw = raw_manifest()
    raw["segments"] = segments
    refused(raw)


@pytest.mark.parametrize("change", ["drop", "extra"])
def test_segment_fields_exact(change: str) -> None:
    raw = raw_manifest()
    if change == "drop":
        del raw["segments"][0]["padding"]
    else:
        raw["segments"][0]["key"] = "x"
    refused(raw)


@pytest.mark.parametrize("shards", [None, "abc", [1, 2, 3, 4, 5], {"0": "a"}])
def test_shards_must_be_a_list_of_strings(shards: object) -> None:
    raw = raw_manifest()
    raw["segments"][0]["shards"] = shards
    refused(raw)


def good_id() -> str:
    return str(raw_manifest()["segments"][0]["shards"][0])


@pytest.mark.parametrize(
    "shard_id",
    [
        good_id().upper(),
        good_id()[:-1] + "A",
        good_id()[:-1],
        good_id() + "0",
        "",
        "g" * 64,
        " " + good_id()[1:],
        good_id()[:-1] + "\n",
        "0x" + good_id()[2:],
    ],
    # Named, not shown: the ids come from a fresh key, so their text differs per process.
    ids=["upper", "a_letter", "short", "long", "empty", "not_hex", "space", "newline", "0x"],
)
def test_malformed_shard_id(shard_id: str) -> None:
    raw = raw_manifest()
    raw["segments"][2]["shards"][3] = shard_id
    assert "shard id" in str(refused(raw))


@pytest.mark.parametrize("count", [0, 4, 6, 10])
def test_wrong_number_of_shard_ids(count: int) -> None:
    raw = raw_manifest()
    ids = raw["segments"][0]["shards"]
    raw["segments"][0]["shards"] = (ids * 3)[:count]
    assert "shards, expected 5" in str(refused(raw))


def test_inconsistent_sizes() -> None:
    def changed(path: tuple[int, str], delta: int, total: int = 0) -> dict[str, Any]:
        raw = raw_manifest()
        raw["segments"][path[0]][path[1]] += delta
        raw["size"] += total
        return raw

    assert "padding" in str(refused(changed((0, "padding"), 1)))
    assert "padding" in str(refused(changed((2, "padding"), -1)))
    assert "shard_size" in str(refused(changed((1, "shard_size"), 1)))
    assert "shard_size" in str(refused(changed((2, "shard_size"), -1)))
    # A short segment before the last one, even with size and total adjusted to fit.
    raw = raw_manifest()
    seg = raw["segments"][0]
    seg["size"] -= 3
    seg["shard_size"] = -(-seg["size"] // 3)
    seg["padding"] = seg["shard_size"] * 3 - seg["size"]
    raw["size"] -= 3
    assert "expected 1000" in str(refused(raw))
    # The total must be the sum of the segments' plaintext.
    for delta in (-1, 1, 1000):
        raw = raw_manifest()
        raw["size"] += delta
        assert "manifest says" in str(refused(raw))


def segment(stored: int, k: int = 3, m: int = 5) -> SegmentInfo:
    shard = -(-stored // k)
    return SegmentInfo(stored, shard * k - stored, shard, ("ab" * 32,) * m)


def test_segment_plaintext_must_be_in_range() -> None:
    params = ErasureParams(3, 5, 1000, 64)
    # Valid edges: one byte and a full segment, with and without the tag.
    Manifest(params, 1, "none", (segment(1),))
    Manifest(params, 1000, "none", (segment(1000),))
    Manifest(params, 1, "aes-256-gcm", (segment(1 + TAG_SIZE),))
    Manifest(params, 1000, "aes-256-gcm", (segment(1000 + TAG_SIZE),))
    with pytest.raises(ManifestError):
        Manifest(params, 1001, "none", (segment(1001),))  # larger than a segment
    with pytest.raises(ManifestError):
        Manifest(params, 1001, "aes-256-gcm", (segment(1001 + TAG_SIZE),))
    with pytest.raises(ManifestError):
        Manifest(params, 0, "aes-256-gcm", (segment(TAG_SIZE),))  # empty sealed segment
    with pytest.raises(ManifestError):
        Manifest(params, 0, "none", (segment(0),))  # empty segment
    with pytest.raises(ManifestError):
        # Encrypted sizes read as plaintext: 16 bytes too many.
        Manifest(params, 1000, "none", (segment(1000 + TAG_SIZE),))


@pytest.mark.parametrize(
    "text",
    [b"", b"{", b"not json", b"\xff\xfe\x00garbage", b"{'version': 1}", '{"version": 1,}'],
)
def test_invalid_json(text: bytes | str) -> None:
    with pytest.raises(ManifestError, match="JSON"):
        Manifest.from_json(text)


@pytest.mark.parametrize("text", [b"[]", b"null", b"1", b'"manifest"', b"[{}]"])
def test_json_that_is_not_an_object(text: bytes) -> None:
    with pytest.raises(ManifestError, match="object"):
        Manifest.from_json(text)


# --- version 2: who sealed -----------------------------------------------------------------


def test_version_2_records_who_sealed_and_version_1_implies_it() -> None:
    raw = raw_manifest()
    assert raw["version"] == 2 and raw["sealed_by"] == "validator"
    for sealer in ("client", "validator"):
        raw["sealed_by"] = sealer
        assert Manifest.from_json(json.dumps(raw)).sealer == sealer
    old = raw_manifest()
    old["version"] = 1
    del old["sealed_by"]
    parsed = Manifest.from_json(json.dumps(old))
    assert (parsed.version, parsed.sealer) == (1, "validator")
    assert parsed.to_dict() == old  # a v1 manifest keeps its bytes, so its verifier


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sealed_by": "miner"}, "sealed_by must be one of"),
        ({"sealed_by": None}, "sealed_by must be one of"),
        ({"sealed_by": "none"}, "does not fit encryption"),
        ({"version": 1}, "extra"),  # v1 has no sealed_by field
    ],
)
def test_bad_sealed_by_is_refused(change: dict[str, Any], message: str) -> None:
    raw = raw_manifest()
    raw.update(change)
    assert message in str(refused(raw))


def test_version_2_needs_sealed_by() -> None:
    raw = raw_manifest()
    del raw["sealed_by"]
    assert "missing" in str(refused(raw))


def test_version_1_cannot_say_client() -> None:
    with pytest.raises(ManifestError, match="version 1 manifest cannot record client"):
        BASE.__class__(
            BASE.params, BASE.size, BASE.encryption, BASE.segments, 1, sealed_by="client"
        )
