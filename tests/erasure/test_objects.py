"""Whole objects: chunks in, segments of shards out, and any k shares of each back."""

from __future__ import annotations

import array
import random
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erasure import (
    EncodedSegment,
    ErasureError,
    ErasureParams,
    InvalidParamsError,
    Manifest,
    MerkleTree,
    NotEnoughSharesError,
    ObjectEncoder,
    SegmentInfo,
    ShardIntegrityError,
    decode_object,
    decode_segment_shares,
    encode_segment_shards,
    split_segments,
)
from erasure.codec import decode_segment
from erasure.crypto import TAG_SIZE
from erasure.objects import GROW_LIMIT
from tests.erasure.helpers import chunked, flip_bit, object_sizes, payload, small_params

BUFFER_TYPES = (bytes, bytearray, memoryview)


def encode_all(
    params: ErasureParams,
    data: bytes,
    *,
    key: bytes | None = None,
    encrypt: bool = False,
    chunk_sizes: tuple[int, ...] = (4093,),
    workers: int = 1,
) -> tuple[ObjectEncoder, list[EncodedSegment]]:
    encoder = ObjectEncoder(params, encrypt=encrypt or key is not None, key=key, workers=workers)
    return encoder, list(encoder.encode(chunked(data, chunk_sizes)))


def shares_of(segment: EncodedSegment) -> dict[int, bytes]:
    return {s.share: s.data for s in segment.shards}


@st.composite
def objects(draw: st.DrawFn) -> tuple[ErasureParams, bytes, list[int], bool]:
    params = draw(small_params(max_m=20, max_segment=8192))
    size = draw(object_sizes(params.segment_size, params.k))
    data = payload(size, draw(st.integers(0, 2**32)))
    chunk_sizes = draw(
        st.lists(st.integers(1, 3 * params.segment_size + 7), min_size=1, max_size=6) | st.just([1])
    )
    return params, data, chunk_sizes, draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(objects(), st.randoms(use_true_random=False))
def test_any_k_shares_of_every_segment_rebuild_the_object(
    case: tuple[ErasureParams, bytes, list[int], bool], rnd: random.Random
) -> None:
    params, data, chunk_sizes, encrypt = case
    k, m = params.k, params.m
    encoder = ObjectEncoder(params, encrypt=encrypt)
    chunks = (BUFFER_TYPES[i % 3](c) for i, c in enumerate(chunked(data, chunk_sizes)))
    segments = list(encoder.encode(chunks))
    manifest = encoder.manifest()
    overhead = TAG_SIZE if encrypt else 0

    # What was produced is what the manifest describes.
    assert manifest.size == len(data)
    assert manifest.encrypted == encrypt == (encoder.key is not None)
    assert len(segments) == len(manifest.segments) == -(-len(data) // params.segment_size)
    for index, segment in enumerate(segments):
        assert segment.index == index
        assert segment.info == manifest.segments[index]
        plain = min(params.segment_size, len(data) - index * params.segment_size)
        assert segment.info.size == plain + overhead
        assert [s.share for s in segment.shards] == list(range(m))
        assert [s.id for s in segment.shards] == list(segment.info.shard_ids)
        for shard in segment.shards:
            assert shard.size == len(shard.data) == segment.info.shard_size
            assert sum(len(p) for p in shard.pieces) == shard.size
            assert shard.tree == MerkleTree.build(shard.data, params.leaf_size)
        if not encrypt:  # unencrypted primaries are the plaintext itself
            start = index * params.segment_size
            joined = b"".join(shares_of(segment)[n] for n in range(k))
            assert joined[:plain] == data[start : start + plain]

    # Keep a random k shares of each segment, given in random order.
    kept: list[dict[int, bytes]] = []
    for segment in segments:
        numbers = rnd.sample(range(m), k)
        kept.append({n: segment.shards[n].data for n in numbers})

    def fetch(index: int, info: SegmentInfo) -> Mapping[int, bytes]:
        assert info == manifest.segments[index]
        return kept[index]

    again = Manifest.from_json(manifest.to_json())  # a reader has only the stored manifest
    assert b"".join(decode_object(again, fetch, encoder.key)) == data
    if segments:
        index = rnd.randrange(len(segments))
        numbers = rnd.sample(range(m), rnd.randint(k, m))
        shares = {n: memoryview(segments[index].shards[n].data) for n in numbers}
        start = index * params.segment_size
        expected = data[start : start + params.segment_size]
        assert decode_segment_shares(again, index, shares, encoder.key) == expected
        assert decode_segment_shares(again, index, shares, encoder.key, verify=False) == expected


@settings(max_examples=60, deadline=None)
@given(objects())
def test_two_workers_give_identical_output(
    case: tuple[ErasureParams, bytes, list[int], bool],
) -> None:
    params, data, chunk_sizes, encrypt = case
    key = random.Random(len(data)).randbytes(32) if encrypt else None
    one, segments_one = encode_all(params, data, key=key, chunk_sizes=tuple(chunk_sizes))
    two, segments_two = encode_all(params, data, key=key, chunk_sizes=(1000,), workers=2)
    assert [s.index for s in segments_two] == list(range(len(segments_one)))
    assert [s.info for s in segments_two] == [s.info for s in segments_one]
    for a, b in zip(segments_one, segments_two, strict=True):
        assert [x.data for x in a.shards] == [y.data for y in b.shards]
        assert [x.tree for x in a.shards] == [y.tree for y in b.shards]
    assert one.manifest().to_json() == two.manifest().to_json()
    assert str(one.capability()) == str(two.capability())


def test_two_workers_many_segments_in_order() -> None:
    params = ErasureParams(3, 6, 4096, 256)
    data = payload(4096 * 40 + 11, seed=3)
    key = bytes(32)
    _, one = encode_all(params, data, key=key)
    _, four = encode_all(params, data, key=key, workers=4)
    assert [s.info for s in one] == [s.info for s in four]
    assert [s.index for s in four] == list(range(41))


def test_encoding_is_deterministic_under_a_key() -> None:
    params = ErasureParams(2, 4, 1000, 64)
    data = payload(3000)
    key = bytes(range(32))
    a, _ = encode_all(params, data, key=key)
    b, _ = encode_all(params, data, key=key, chunk_sizes=(1, 2, 3))
    assert a.manifest().to_json() == b.manifest().to_json()


def test_default_params_small_object() -> None:
    data = payload(300_001)
    encoder, segments = encode_all(ErasureParams(), data, encrypt=True)
    assert len(segments) == 1
    kept = {n: segments[0].shards[n].data for n in (7, 2, 5, 4)}
    assert decode_segment_shares(encoder.manifest(), 0, kept, encoder.key) == data


def test_encode_segment_shards_directly() -> None:
    params = ErasureParams(3, 5, 1000, 64)
    plain = payload(700)
    key = bytes(32)
    sealed = encode_segment_shards(params, 4, plain, True, key)
    unsealed = encode_segment_shards(params, 4, plain, True, None)
    assert sealed.index == unsealed.index == 4
    assert sealed.info.size == 700 + TAG_SIZE
    assert unsealed.info.size == 700
    assert unsealed.info.padding == 3 * 234 - 700
    # The same plaintext under another index or finality seals differently.
    assert encode_segment_shards(params, 5, plain, True, key).info != sealed.info
    assert encode_segment_shards(params, 4, plain, False, key).info != sealed.info


# --- the encoder's contract --------------------------------------------------------------


def test_encoder_is_single_use_and_manifest_waits_for_the_end() -> None:
    encoder = ObjectEncoder(ErasureParams(2, 3, 100, 64), encrypt=False)
    stream = encoder.encode([payload(250)])
    next(stream)
    with pytest.raises(ErasureError):
        encoder.manifest()  # not consumed yet
    list(stream)
    assert encoder.manifest().size == 250
    with pytest.raises(ErasureError):
        list(encoder.encode([b"more"]))
    with pytest.raises(ErasureError):
        list(encoder.encode([]))


def test_encoder_key_arguments() -> None:
    params = ErasureParams(2, 3, 100, 64)
    with pytest.raises(ValueError, match="encrypt=False"):
        ObjectEncoder(params, encrypt=False, key=bytes(32))
    assert ObjectEncoder(params, encrypt=False).key is None
    given_key = bytes(range(32))
    assert ObjectEncoder(params, key=given_key).key == given_key
    fresh = {ObjectEncoder(params).key for _ in range(4)}
    assert len(fresh) == 4
    assert all(key is not None and len(key) == 32 for key in fresh)
    for bad_key in (bytes(31), bytes(33), bytes(16)):
        with pytest.raises(InvalidParamsError):
            list(ObjectEncoder(params, key=bad_key).encode([b"data"]))


def test_empty_object() -> None:
    for encrypt in (False, True):
        encoder, segments = encode_all(ErasureParams(2, 3, 100, 64), b"", encrypt=encrypt)
        assert segments == []
        manifest = encoder.manifest()
        assert (manifest.size, manifest.segments) == (0, ())
        assert list(decode_object(manifest, lambda i, info: {}, encoder.key)) == []
        assert encoder.capability().size == 0


# --- not enough, or bad, shares -------------------------------------------------------------


@pytest.mark.parametrize(("k", "m"), [(1, 1), (1, 3), (3, 5), (4, 8), (10, 12)])
@pytest.mark.parametrize("encrypt", [False, True])
def test_k_minus_one_shares_are_not_enough(k: int, m: int, encrypt: bool) -> None:
    params = ErasureParams(k, m, 1000, 64)
    encoder, segments = encode_all(params, payload(2500), encrypt=encrypt)
    manifest = encoder.manifest()
    for index, segment in enumerate(segments):
        few = {n: segment.shards[n].data for n in range(m - k + 1, m)}
        for verify in (True, False):
            with pytest.raises(NotEnoughSharesError) as info:
                decode_segment_shares(manifest, index, few, encoder.key, verify=verify)
            assert (info.value.segment, info.value.have, info.value.need) == (index, k - 1, k)
            assert f"segment {index}" in str(info.value)

    def fetch(index: int, info: SegmentInfo) -> Mapping[int, bytes]:
        count = k if index < 2 else k - 1  # the last segment comes up short
        return {n: segments[index].shards[n].data for n in range(count)}

    out: list[bytes | bytearray] = []
    with pytest.raises(NotEnoughSharesError) as info:
        out.extend(decode_object(manifest, fetch, encoder.key))
    assert (info.value.segment, info.value.have, info.value.need) == (2, k - 1, k)
    assert b"".join(out) == payload(2500)[:2000]  # the segments before it were delivered


def test_share_number_outside_range() -> None:
    params = ErasureParams(2, 4, 1000, 64)
    encoder, segments = encode_all(params, payload(1500))
    shares = shares_of(segments[1])
    for number in (4, 5, -1):
        with pytest.raises(ShardIntegrityError) as info:
            decode_segment_shares(encoder.manifest(), 1, {**shares, number: shares[0]})
        assert (info.value.segment, info.value.share) == (1, number)


@pytest.mark.parametrize("encrypt", [False, True])
def test_tampered_share_is_named_when_verifying(encrypt: bool) -> None:
    params = ErasureParams(3, 6, 1000, 64)
    data = payload(2999, seed=5)
    encoder, segments = encode_all(params, data, encrypt=encrypt)
    manifest = encoder.manifest()
    rnd = random.Random(1)
    for index, segment in enumerate(segments):
        for victim in range(params.m):
            numbers = sorted({victim, *rnd.sample(range(params.m), params.k)})[: params.k]
            if victim not in numbers:
                numbers = [victim, *numbers[:-1]]
            shares = {n: segment.shards[n].data for n in numbers}
            shares[victim] = flip_bit(shares[victim], rnd.randrange(1 << 20))
            with pytest.raises(ShardIntegrityError) as info:
                decode_segment_shares(manifest, index, shares, encoder.key)
            assert (info.value.segment, info.value.share) == (index, victim)
            assert f"segment {index} share {victim}" in str(info.value)
            # The caller drops the bad share and fetches another: it now decodes.
            del shares[victim]
            spare = next(n for n in range(params.m) if n not in shares and n != victim)
            shares[spare] = segment.shards[spare].data
            start = index * params.segment_size
            assert (
                decode_segment_shares(manifest, index, shares, encoder.key)
                == data[start : start + params.segment_size]
            )


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("change", [-1, 1, -100])
def test_wrong_length_share_is_named(verify: bool, change: int) -> None:
    params = ErasureParams(3, 6, 1000, 64)
    encoder, segments = encode_all(params, payload(2500), encrypt=True)
    shares = {n: segments[0].shards[n].data for n in (1, 3, 5)}
    shares[3] = shares[3][:change] if change < 0 else shares[3] + b"\0"
    with pytest.raises(ShardIntegrityError) as info:
        decode_segment_shares(encoder.manifest(), 0, shares, encoder.key, verify=verify)
    assert (info.value.segment, info.value.share) == (0, 3)
    assert "expected" in info.value.reason


def test_only_the_k_lowest_shares_are_used() -> None:
    """Extra shares beyond the k lowest-numbered are not read, so damage there is harmless."""
    params = ErasureParams(3, 6, 1000, 64)
    data = payload(1000)
    encoder, segments = encode_all(params, data, encrypt=True)
    shares = shares_of(segments[0])
    shares[4] = b"garbage"
    shares[5] = flip_bit(shares[5], 3)
    assert decode_segment_shares(encoder.manifest(), 0, shares, encoder.key) == data


# --- split_segments -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 5000),
    st.integers(1, 700),
    st.lists(st.integers(0, 900), min_size=1, max_size=10).filter(any),
    st.booleans(),
)
def test_split_segments(
    size: int, segment_size: int, chunk_sizes: list[int], length_known: bool
) -> None:
    data = payload(size, seed=size)

    def chunks() -> Iterator[bytes | bytearray | memoryview]:
        offset, i = 0, 0
        while offset < len(data):
            piece = data[offset : offset + chunk_sizes[i % len(chunk_sizes)]]
            yield BUFFER_TYPES[i % 3](piece)  # zero sizes make empty chunks
            offset += len(piece)
            i += 1
        yield b""  # a trailing empty chunk does not make an empty last segment

    out = list(split_segments(chunks(), segment_size, size if length_known else None))
    count = -(-size // segment_size)
    assert [index for index, _, _ in out] == list(range(count))
    assert [last for _, _, last in out] == [False] * (count - 1) + [True] * (count > 0)
    assert all(len(seg) == segment_size for _, seg, _ in out[:-1])
    if out:
        assert 1 <= len(out[-1][1]) <= segment_size
    assert b"".join(bytes(seg) for _, seg, _ in out) == data


def test_a_segment_of_a_stream_of_known_length_goes_on_before_the_next_byte() -> None:
    """With the length known nothing is held back: the memory of one segment less."""

    def cut(total: int | None) -> list[tuple[int, bytes, bool, int]]:
        """Each segment, and how many chunks had been read when it was handed on."""
        pulled = 0

        def chunks() -> Iterator[bytes]:
            nonlocal pulled
            for piece in (b"abcd", b"efgh", b"ij"):
                pulled += 1
                yield piece

        return [
            (i, bytes(seg), last, pulled) for i, seg, last in split_segments(chunks(), 4, total)
        ]

    assert cut(10) == [(0, b"abcd", False, 1), (1, b"efgh", False, 2), (2, b"ij", True, 3)]
    # Without the length, each waits for the next segment to be whole (or the end).
    assert cut(None) == [(0, b"abcd", False, 2), (1, b"efgh", False, 3), (2, b"ij", True, 3)]


@pytest.mark.parametrize(
    ("chunks", "segment_size", "expected"),
    [
        ([], 4, []),
        ([b""], 4, []),
        ([b"", b"", b""], 4, []),
        ([b"a"], 4, [(0, b"a", True)]),
        ([b"abcd"], 4, [(0, b"abcd", True)]),
        ([b"abcd", b""], 4, [(0, b"abcd", True)]),
        ([b"ab", b"", b"cd"], 4, [(0, b"abcd", True)]),
        ([b"abcde"], 4, [(0, b"abcd", False), (1, b"e", True)]),
        ([b"abcd", b"efgh"], 4, [(0, b"abcd", False), (1, b"efgh", True)]),
        ([b"a", b"b", b"c"], 1, [(0, b"a", False), (1, b"b", False), (2, b"c", True)]),
        ([b"abc"], 1, [(0, b"a", False), (1, b"b", False), (2, b"c", True)]),
        ([b"", b"abcdefghij", b""], 3,
         [(0, b"abc", False), (1, b"def", False), (2, b"ghi", False), (3, b"j", True)]),
    ],
)  # fmt: skip
def test_split_segments_edges(
    chunks: list[bytes], segment_size: int, expected: list[tuple[int, bytes, bool]]
) -> None:
    out = [(i, bytes(seg), last) for i, seg, last in split_segments(chunks, segment_size)]
    assert out == expected


@pytest.mark.parametrize("hint", [None, 0, 5 * 2**20, 7 * 2**20 + 3, 8 * 2**20, 64 * 2**20])
def test_split_segments_past_the_small_start_whatever_the_size_hint(hint: int | None) -> None:
    """Segments beyond GROW_LIMIT take one buffer of the rest of the segment (or of the
    stream, by the hint); a hint too small or too large changes no byte. Which segment is
    flagged last follows a hint (the caller refuses a stream whose length is not its hint),
    so the flags are checked where the hint is true or absent."""
    segment_size = 3 * 2**20
    assert segment_size > GROW_LIMIT
    data = payload(7 * 2**20 + 3, seed=11)
    chunks = [data[i : i + 300_001] for i in range(0, len(data), 300_001)]
    out = list(split_segments(chunks, segment_size, size_hint=hint))
    cuts = range(0, len(data), segment_size)
    if hint in (None, len(data)):
        flags = [(i, i == len(cuts) - 1) for i in range(len(cuts))]
        assert [(i, last) for i, _, last in out] == flags
    assert [bytes(seg) for _, seg, _ in out] == [data[c : c + segment_size] for c in cuts]


def test_split_segments_accepts_non_byte_buffers() -> None:
    numbers = array.array("I", range(100))
    out = list(split_segments([numbers, memoryview(b"xy")], 64))
    assert b"".join(bytes(seg) for _, seg, _ in out) == numbers.tobytes() + b"xy"


def test_chunk_buffer_may_be_overwritten_after_each_chunk() -> None:
    """A reader that fills one buffer again and again (``readinto``) loses nothing."""
    data = payload(10_000, seed=9)

    def reader() -> Iterator[memoryview]:
        buf = bytearray(333)
        for offset in range(0, len(data), len(buf)):
            piece = data[offset : offset + len(buf)]
            buf[: len(piece)] = piece
            yield memoryview(buf)[: len(piece)]
        buf[:] = bytes(len(buf))  # scribble over it once more at the end

    held = list(split_segments(reader(), 1024))  # keep every segment until the end
    assert b"".join(bytes(seg) for _, seg, _ in held) == data
    # Segments do not alias each other either.
    first = held[0][1]
    first[:] = bytes(len(first))
    assert b"".join(bytes(seg) for _, seg, _ in held[1:]) == data[1024:]


def test_chunk_buffer_may_be_resized_after_each_chunk() -> None:
    """A producer that reuses one bytearray and resizes it between chunks (``clear`` then
    ``extend``, or assigning a slice of another length) is reusing its buffer too."""
    data = payload(5000, seed=4)
    sizes = [100, 37, 512, 1, 900]

    def producer() -> Iterator[bytearray]:
        buf = bytearray()
        for piece in chunked(data, sizes):
            buf.clear()
            buf.extend(piece)
            yield buf

    out = list(split_segments(producer(), 700))
    assert b"".join(bytes(seg) for _, seg, _ in out) == data


def test_encoder_with_a_reused_chunk_buffer() -> None:
    params = ErasureParams(3, 5, 2000, 128)
    data = payload(9_999, seed=2)

    def reader() -> Iterator[bytearray]:
        buf = bytearray(256)
        for offset in range(0, len(data), 256):
            piece = data[offset : offset + 256]
            buf[: len(piece)] = piece
            yield buf if len(piece) == 256 else buf[: len(piece)]

    for workers in (1, 2):
        encoder = ObjectEncoder(params, key=bytes(32), workers=workers)
        segments = list(encoder.encode(reader()))
        manifest = encoder.manifest()

        def fetch(index: int, info: SegmentInfo, held: list[EncodedSegment] = segments) -> dict:
            return {n: held[index].shards[n].data for n in (4, 0, 2)}

        assert b"".join(decode_object(manifest, fetch, encoder.key)) == data


# --- segment buffers, reused once released ----------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("presealed", [False, True])
@pytest.mark.parametrize("hint", [True, False])
def test_released_segments_buffers_cut_later_segments_and_nothing_is_lost(
    workers: int, presealed: bool, hint: bool
) -> None:
    """Each segment is decoded and then released: later segments are cut into the same
    few buffers, and every segment still decodes to its own bytes."""
    params = ErasureParams(3, 5, 2048, 128)
    stride = params.segment_size + (TAG_SIZE if presealed else 0)
    data = payload(stride * 9 + 100, seed=21)
    encoder = ObjectEncoder(
        params, encrypt=presealed, presealed=presealed, workers=workers,
        size_hint=len(data) if hint else None,
    )  # fmt: skip
    taken: list[bytearray] = []  # kept alive, so that ids name distinct buffers
    take = encoder.buffers.take

    def recording_take() -> bytearray:
        taken.append(take())
        return taken[-1]

    encoder.buffers.take = recording_take  # type: ignore[method-assign]
    got = []
    for segment in encoder.encode(chunked(data, (1000, 77, 4096))):
        shares = {n: segment.shards[n].data for n in (4, 0, 2)}
        got.append(bytes(decode_segment(shares, 3, 5, segment.info.size)))
        segment.release()
    assert b"".join(got) == data
    # Every segment that is whole (without the length: that may be) was cut into one...
    assert len(taken) == (9 if hint else 10)
    assert len({id(b) for b in taken}) <= workers + 2  # ...of a few, reused


def test_a_segment_not_released_is_never_overwritten() -> None:
    """Without release, no buffer is reused: every segment held to the end stays intact."""
    params = ErasureParams(2, 4, 1024, 64)
    data = payload(1024 * 6, seed=5)
    encoder = ObjectEncoder(params, encrypt=False, workers=2, size_hint=len(data))
    held = list(encoder.encode(chunked(data, (333,))))
    assert b"".join(s.shards[0].data + s.shards[1].data for s in held) == data
    assert encoder.buffers._free == []


def test_release_of_a_validator_sealed_segment_is_a_no_op_and_its_buffer_goes_back_at_once() -> (
    None
):
    """Sealed by the encoder, the shards are of the ciphertext: the plaintext's buffer is
    reused as soon as the segment is coded, before any release."""
    params = ErasureParams(2, 4, 1024, 64)
    data = payload(1024 * 4, seed=6)
    encoder = ObjectEncoder(params, encrypt=True, size_hint=len(data))
    segments = list(encoder.encode(chunked(data, (500,))))
    assert len(encoder.buffers._free) == 1  # one buffer cut all four segments
    fetch = lambda index, info: {n: segments[index].shards[n].data for n in (3, 1)}  # noqa: E731
    assert b"".join(decode_object(encoder.manifest(), fetch, encoder.key)) == data
