"""Client-side sealing: the client seals, the encoder codes ciphertext it cannot read, and
the client opens what it is served. Framing errors are named; tampering never decodes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erasure import (
    DecryptionError,
    ErasureParams,
    ObjectEncoder,
    SealedStreamError,
    decode_object,
    encrypt_segment,
    new_key,
    open_segments,
    seal_segments,
    sealed_size,
    segment_count,
)
from erasure.crypto import TAG_SIZE
from tests.erasure.helpers import chunked, payload

PARAMS = ErasureParams(3, 6, 2048, 64)


def test_sizes() -> None:
    assert segment_count(0, 10) == 0
    assert sealed_size(0, 10) == 0
    assert segment_count(10, 10) == 1
    assert sealed_size(10, 10) == 10 + TAG_SIZE
    assert sealed_size(11, 10) == 11 + 2 * TAG_SIZE


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3 * 2048 + 100), st.integers(1, 3000))
def test_client_sealed_round_trip(size: int, chunk: int) -> None:
    data = payload(size, seed=size)
    key = new_key()
    sealed = list(seal_segments(key, chunked(data, [chunk]), PARAMS.segment_size))
    assert sum(map(len, sealed)) == sealed_size(size, PARAMS.segment_size)
    encoder = ObjectEncoder(PARAMS, presealed=True)
    assert encoder.key is None
    segments = list(encoder.encode(chunked(b"".join(sealed), [chunk + 7])))
    manifest = encoder.manifest()
    assert (manifest.size, manifest.sealer, manifest.encrypted) == (size, "client", True)
    assert encoder.capability().key is None  # the encoder never had it
    held = [{s.share: s.data for s in seg.shards[-PARAMS.k :]} for seg in segments]
    served = list(decode_object(manifest, lambda i, _info: held[i], sealed=True))
    assert b"".join(served) == b"".join(sealed)
    opened = open_segments(key, chunked(b"".join(served), [chunk]), PARAMS.segment_size, size)
    assert b"".join(opened) == data


def test_client_sealing_equals_encoder_sealing() -> None:
    data = payload(5000, seed=3)
    key = new_key()
    by_encoder = list(ObjectEncoder(PARAMS, key=key).encode([data]))
    by_client = list(ObjectEncoder(PARAMS, presealed=True).encode(seal_segments(key, [data], 2048)))
    assert [s.info for s in by_encoder] == [s.info for s in by_client]


def test_a_last_segment_of_only_a_tag_is_refused() -> None:
    sealed = b"".join(seal_segments(new_key(), [payload(2048)], 2048)) + bytes(TAG_SIZE)
    with pytest.raises(SealedStreamError, match="sealed segment 1 is 16 bytes"):
        list(ObjectEncoder(PARAMS, presealed=True).encode([sealed]))


def test_presealed_encoder_takes_no_key() -> None:
    with pytest.raises(ValueError, match="presealed"):
        ObjectEncoder(PARAMS, presealed=True, key=new_key())
    with pytest.raises(ValueError, match="presealed"):
        ObjectEncoder(PARAMS, presealed=True, encrypt=False)


def test_opening_a_short_or_long_stream_is_named() -> None:
    key = new_key()
    data = payload(3 * 2048 + 5)
    sealed = b"".join(seal_segments(key, [data], 2048))
    cut = sealed[: 2 * (2048 + TAG_SIZE)]  # whole segments: the truncation the flag is for
    with pytest.raises(DecryptionError):  # segment 1 was not sealed as the last
        list(open_segments(key, [cut], 2048, 2 * 2048))
    with pytest.raises(SealedStreamError, match="ended after 2 of 4"):
        list(open_segments(key, [cut], 2048, len(data)))
    with pytest.raises(SealedStreamError, match="longer than its 4"):
        list(open_segments(key, [sealed + sealed[:3000]], 2048, len(data)))
    with pytest.raises(SealedStreamError, match="last sealed segment is 121 bytes"):
        list(open_segments(key, [sealed + sealed[:100]], 2048, len(data)))


def test_a_forged_last_segment_flag_never_opens() -> None:
    """A stream whose length is right but whose segment 0 was sealed as the last (or whose
    last segment was not): only a key holder can see it, and opening refuses it."""
    key = new_key()
    data = payload(2048 + 10)
    forged_first = encrypt_segment(key, 0, True, data[:2048])
    honest_last = encrypt_segment(key, 1, True, data[2048:])
    with pytest.raises(DecryptionError, match="segment 0"):
        list(open_segments(key, [forged_first + honest_last], 2048, len(data)))
    honest_first = encrypt_segment(key, 0, False, data[:2048])
    forged_last = encrypt_segment(key, 1, False, data[2048:])
    with pytest.raises(DecryptionError, match="segment 1"):
        list(open_segments(key, [honest_first + forged_last], 2048, len(data)))
