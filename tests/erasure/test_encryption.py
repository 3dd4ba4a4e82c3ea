"""Sealed segments: a wrong key, altered bytes, reordering and truncation never decode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erasure import (
    DecryptionError,
    EncodedSegment,
    ErasureError,
    ErasureParams,
    InvalidParamsError,
    Manifest,
    ObjectEncoder,
    SegmentInfo,
    ShardIntegrityError,
    decode_object,
    decode_segment_shares,
    decrypt_segment,
    encrypt_segment,
    new_key,
)
from erasure.crypto import KEY_SIZE, TAG_SIZE, decrypt_segment_into
from tests.erasure.helpers import chunked, flip_bit, payload

PARAMS = ErasureParams(3, 6, 2048, 64)
DATA = payload(3 * 2048 + 501, seed=11)  # three full segments and a short last one


def encode(
    data: bytes = DATA, params: ErasureParams = PARAMS, key: bytes | None = None
) -> tuple[ObjectEncoder, list[EncodedSegment]]:
    encoder = ObjectEncoder(params, key=key or new_key())
    return encoder, list(encoder.encode(chunked(data, [1000])))


ENCODER, SEGMENTS = encode()
MANIFEST = ENCODER.manifest()
KEY = ENCODER.key


def plain(index: int, data: bytes = DATA, segment_size: int = PARAMS.segment_size) -> bytes:
    return data[index * segment_size : (index + 1) * segment_size]


def test_fixture_object_decodes() -> None:
    assert KEY is not None
    assert len(SEGMENTS) == 4
    assert MANIFEST.encryption == "aes-256-gcm"
    assert [s.size for s in MANIFEST.segments] == [2048 + TAG_SIZE] * 3 + [501 + TAG_SIZE]
    for index, segment in enumerate(SEGMENTS):
        shares = {n: segment.shards[n].data for n in (5, 1, 3)}
        for verify in (True, False):
            out = decode_segment_shares(MANIFEST, index, shares, KEY, verify=verify)
            assert out == plain(index)


# --- the AEAD itself -----------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 2**64 - 1), st.booleans())
def test_seal_and_open(plaintext: bytes, index: int, is_last: bool) -> None:
    key = new_key()
    sealed = encrypt_segment(key, index, is_last, plaintext)
    assert len(sealed) == len(plaintext) + TAG_SIZE
    assert decrypt_segment(key, index, is_last, sealed) == plaintext
    assert decrypt_segment(key, index, is_last, bytearray(sealed)) == plaintext
    assert decrypt_segment(key, index, is_last, memoryview(sealed)) == plaintext
    reused = bytearray(b"\xff" * (len(plaintext) + 7))  # a buffer kept across segments
    decrypt_segment_into(key, index, is_last, memoryview(sealed), memoryview(reused)[:-7])
    assert reused == plaintext + b"\xff" * 7  # exactly its bytes, nothing past them
    with pytest.raises(DecryptionError, match=f"segment {index}"):
        decrypt_segment_into(new_key(), index, is_last, sealed, bytearray(len(plaintext)))
    with pytest.raises(DecryptionError):
        decrypt_segment_into(key, index, not is_last, sealed, bytearray(len(plaintext)))
    with pytest.raises(DecryptionError):
        decrypt_segment(new_key(), index, is_last, sealed)
    with pytest.raises(DecryptionError):
        decrypt_segment(key, index ^ 1, is_last, sealed)  # another position
    with pytest.raises(DecryptionError):
        decrypt_segment(key, index, not is_last, sealed)  # truncation or extension
    with pytest.raises(DecryptionError):
        decrypt_segment(key, index, is_last, sealed[:-1])
    with pytest.raises(DecryptionError):
        decrypt_segment(key, index, is_last, sealed + b"\0")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_any_flipped_bit_in_the_sealed_bytes_fails(plaintext: bytes, data: st.DataObject) -> None:
    key = bytes(range(32))
    sealed = encrypt_segment(key, 3, False, plaintext)
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    with pytest.raises(DecryptionError, match="segment 3"):
        decrypt_segment(key, 3, False, flip_bit(sealed, bit))


def test_keys() -> None:
    keys = {new_key() for _ in range(16)}
    assert len(keys) == 16
    assert all(len(key) == KEY_SIZE == 32 for key in keys)
    for bad in (b"", bytes(16), bytes(31), bytes(33), bytes(24)):
        with pytest.raises(InvalidParamsError):
            encrypt_segment(bad, 0, True, b"x")
        with pytest.raises(InvalidParamsError):
            decrypt_segment(bad, 0, True, bytes(17))


# --- sealed objects, decoded without checking shard ids -------------------------------------


@st.composite
def tampered_decodes(draw: st.DrawFn) -> tuple[int, dict[int, bytes]]:
    """k shares of one segment, one of them with a bit flipped in a column that carries data
    in every primary block (zero padding, dropped after decoding, is left out: see
    :func:`test_padding_is_not_data`)."""
    index = draw(st.integers(0, len(SEGMENTS) - 1))
    info = MANIFEST.segments[index]
    numbers = draw(st.permutations(range(PARAMS.m)))[: PARAMS.k]
    shares = {n: SEGMENTS[index].shards[n].data for n in numbers}
    victim = draw(st.sampled_from(numbers))
    full_columns = info.size - (PARAMS.k - 1) * info.shard_size
    column = draw(st.integers(0, full_columns - 1))
    shares[victim] = flip_bit(shares[victim], column * 8 + draw(st.integers(0, 7)))
    return index, shares


@settings(max_examples=150, deadline=None)
@given(tampered_decodes())
def test_tampered_share_without_verification_fails_to_decrypt(
    case: tuple[int, dict[int, bytes]],
) -> None:
    index, shares = case
    with pytest.raises(DecryptionError):
        decode_segment_shares(MANIFEST, index, shares, KEY, verify=False)
    # And checked against the shard ids, the share is named before decoding.
    with pytest.raises(ShardIntegrityError):
        decode_segment_shares(MANIFEST, index, shares, KEY)


def test_padding_is_not_data() -> None:
    """A primary's zero padding is cut off after decoding, so altering it cannot change the
    plaintext: without verification it goes unnoticed, with verification it is refused."""
    index = 3
    info = MANIFEST.segments[index]
    assert info.padding > 0
    shares = {n: SEGMENTS[index].shards[n].data for n in range(PARAMS.k)}
    last = PARAMS.k - 1
    shares[last] = shares[last][:-1] + b"\xff"
    assert decode_segment_shares(MANIFEST, index, shares, KEY, verify=False) == plain(index)
    with pytest.raises(ShardIntegrityError) as error:
        decode_segment_shares(MANIFEST, index, shares, KEY)
    assert error.value.share == last


def test_every_byte_of_every_share_matters() -> None:
    """Exhaustive over one small sealed segment: every data-carrying byte of every share."""
    params = ErasureParams(2, 4, 64, 64)
    encoder, segments = encode(payload(64, seed=1), params)
    manifest = encoder.manifest()
    info = manifest.segments[0]
    assert info.padding == 0
    for victim in range(params.m):
        others = [n for n in range(params.m) if n != victim]
        for partner in others:
            for position in range(info.shard_size):
                shares = {n: segments[0].shards[n].data for n in (victim, partner)}
                shares[victim] = flip_bit(shares[victim], position * 8 + position % 8)
                with pytest.raises(DecryptionError):
                    decode_segment_shares(manifest, 0, shares, encoder.key, verify=False)


@pytest.mark.parametrize("verify", [True, False])
def test_wrong_key_fails(verify: bool) -> None:
    for index, segment in enumerate(SEGMENTS):
        shares = {n: segment.shards[n].data for n in (0, 4, 2)}
        with pytest.raises(DecryptionError):
            decode_segment_shares(MANIFEST, index, shares, new_key(), verify=verify)
    with pytest.raises(DecryptionError):
        b"".join(decode_object(MANIFEST, lambda i, _: SHARES[i], bytes(KEY_SIZE)))


SHARES = [{n: seg.shards[n].data for n in range(PARAMS.k)} for seg in SEGMENTS]


def test_swapped_segments_fail() -> None:
    for a, b in [(0, 1), (1, 2), (0, 2)]:  # equal sizes, so only the seal can tell
        assert MANIFEST.segments[a].size == MANIFEST.segments[b].size
        with pytest.raises(DecryptionError):
            decode_segment_shares(MANIFEST, a, SHARES[b], KEY, verify=False)
        with pytest.raises(DecryptionError):
            decode_segment_shares(MANIFEST, b, SHARES[a], KEY, verify=False)
        with pytest.raises(ShardIntegrityError):
            decode_segment_shares(MANIFEST, a, SHARES[b], KEY)
    # Swapping inside a manifest too: its ids now name the shares, yet the seal still fails.
    reordered = Manifest(
        MANIFEST.params,
        MANIFEST.size,
        "aes-256-gcm",
        (MANIFEST.segments[1], MANIFEST.segments[0], *MANIFEST.segments[2:]),
    )
    with pytest.raises(DecryptionError):
        decode_segment_shares(reordered, 0, SHARES[1], KEY)


def test_truncation_at_a_segment_boundary_fails() -> None:
    """A manifest that drops the last segment makes a non-last segment the last one."""
    truncated = Manifest(
        MANIFEST.params, 3 * PARAMS.segment_size, "aes-256-gcm", MANIFEST.segments[:3]
    )
    for index in (0, 1):
        assert decode_segment_shares(truncated, index, SHARES[index], KEY) == plain(index)
    with pytest.raises(DecryptionError):
        decode_segment_shares(truncated, 2, SHARES[2], KEY)
    with pytest.raises(DecryptionError):
        b"".join(decode_object(truncated, lambda i, _: SHARES[i], KEY))


def test_last_segment_decoded_as_non_last_fails() -> None:
    """An object whose last segment is full, read under a manifest that appends one more."""
    data = payload(2 * PARAMS.segment_size, seed=12)
    encoder, segments = encode(data)
    manifest = encoder.manifest()
    assert len(segments) == 2
    shares = [{n: seg.shards[n].data for n in (1, 2, 4)} for seg in segments]
    assert decode_segment_shares(manifest, 1, shares[1], encoder.key) == plain(1, data)
    extended = Manifest(
        manifest.params,
        manifest.size + 1,
        "aes-256-gcm",
        (*manifest.segments, SegmentInfo(1 + TAG_SIZE, 1, 6, SEGMENTS[3].info.shard_ids)),
    )
    with pytest.raises(DecryptionError):
        decode_segment_shares(extended, 1, shares[1], encoder.key)
    # The same with the raw AEAD: the last segment's ciphertext, opened as not last.
    stored = bytes(b"".join(segments[1].shards[n].data for n in range(PARAMS.k)))
    stored = stored[: manifest.segments[1].size]
    assert decrypt_segment(encoder.key, 1, True, stored) == plain(1, data)
    with pytest.raises(DecryptionError):
        decrypt_segment(encoder.key, 1, False, stored)


def test_encrypted_object_needs_a_key() -> None:
    for verify in (True, False):
        with pytest.raises(ErasureError, match="key") as info:
            decode_segment_shares(MANIFEST, 0, SHARES[0], verify=verify)
        assert not isinstance(info.value, DecryptionError)  # refused before any decryption
    with pytest.raises(ErasureError, match="key"):
        b"".join(decode_object(MANIFEST, lambda i, _: SHARES[i]))


def test_unencrypted_object_is_stored_in_the_clear_and_needs_no_key() -> None:
    encoder = ObjectEncoder(PARAMS, encrypt=False)
    segments = list(encoder.encode([DATA]))
    manifest = encoder.manifest()
    assert manifest.encryption == "none"
    assert segments[0].shards[0].data == DATA[: segments[0].info.shard_size]
    shares = [{n: seg.shards[n].data for n in (3, 4, 5)} for seg in segments]
    assert b"".join(decode_object(manifest, lambda i, _: shares[i])) == DATA


def test_ciphertext_hides_the_plaintext() -> None:
    primaries = b"".join(SEGMENTS[0].shards[n].data for n in range(PARAMS.k))
    assert primaries[: PARAMS.segment_size] != plain(0)
    assert plain(0)[:32] not in primaries


def test_different_keys_give_different_shard_ids() -> None:
    first, first_segments = encode()
    second, second_segments = encode()
    assert first.key != second.key
    ids_one = {i for seg in first_segments for i in seg.info.shard_ids}
    ids_two = {i for seg in second_segments for i in seg.info.shard_ids}
    assert len(ids_one) == len(ids_two) == 4 * PARAMS.m
    assert ids_one.isdisjoint(ids_two)
    assert first.manifest().verifier_hash() != second.manifest().verifier_hash()
    # Same key, same ids: the randomness is the key's only.
    again, _ = encode(key=first.key)
    assert again.manifest() == first.manifest()
