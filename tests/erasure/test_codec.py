"""zfec over one segment: any k of m shares rebuild it, and striping changes nothing."""

from __future__ import annotations

import random

import pytest
import zfec
from hypothesis import given, settings
from hypothesis import strategies as st

from erasure import NotEnoughSharesError, ShardIntegrityError, decode_segment, encode_segment
from erasure.codec import STRIPE, share_size
from tests.erasure.helpers import payload


@st.composite
def coded_segments(draw: st.DrawFn) -> tuple[int, int, bytes]:
    m = draw(st.integers(1, 20))
    k = draw(st.integers(1, m))
    size = draw(
        st.one_of(
            st.sampled_from([0, 1, k, k + 1, 2 * k - 1, 3 * k]),
            st.integers(0, 5000),
        )
    )
    return k, m, payload(size, draw(st.integers(0, 2**32)))


@settings(max_examples=300, deadline=None)
@given(coded_segments(), st.randoms(use_true_random=False))
def test_any_k_shares_rebuild_the_segment(case: tuple[int, int, bytes], rnd: random.Random) -> None:
    k, m, segment = case
    shares = encode_segment(segment, k, m)
    assert len(shares) == m
    assert all(len(s) == share_size(len(segment), k) for s in shares)
    # Primary shares are the segment itself, zero-padded at the end.
    assert b"".join(bytes(s) for s in shares[:k])[: len(segment)] == segment
    assert not any(b"".join(bytes(s) for s in shares[:k])[len(segment) :])
    chosen = rnd.sample(range(m), k)  # random subset, random insertion order
    subset = {n: bytes(shares[n]) for n in chosen}
    assert bytes(decode_segment(subset, k, m, len(segment))) == segment


@settings(max_examples=30, deadline=None)
@given(coded_segments(), st.randoms(use_true_random=False))
def test_extra_shares_and_unknown_numbers_are_ignored(
    case: tuple[int, int, bytes], rnd: random.Random
) -> None:
    k, m, segment = case
    shares = encode_segment(segment, k, m)
    given_shares = {n: shares[n] for n in rnd.sample(range(m), rnd.randint(k, m))}
    given_shares[m + 3] = b"junk"  # a share number the code cannot have made
    given_shares[-1] = b"junk"
    assert bytes(decode_segment(given_shares, k, m, len(segment))) == segment


@st.composite
def striped_cases(draw: st.DrawFn) -> tuple[int, int, bytes]:
    m = draw(st.integers(2, 6))
    k = draw(st.integers(1, min(m - 1, 4)))
    # Blocks of 1..3 stripes and a ragged tail, so several zfec calls are made per segment.
    block = draw(st.integers(STRIPE + 1, 2 * STRIPE + STRIPE // 2))
    size = block * k - draw(st.integers(0, k - 1))
    return k, m, payload(size, draw(st.integers(0, 2**32)))


@settings(max_examples=12, deadline=None)
@given(striped_cases(), st.randoms(use_true_random=False))
def test_striped_encoding_equals_one_zfec_call(
    case: tuple[int, int, bytes], rnd: random.Random
) -> None:
    k, m, segment = case
    block = share_size(len(segment), k)
    assert len(segment) > STRIPE * k
    padded = segment + bytes(block * k - len(segment))
    blocks = [padded[i * block : (i + 1) * block] for i in range(k)]
    expected = zfec.Encoder(k, m).encode(blocks)
    shares = encode_segment(segment, k, m)
    assert [bytes(s) for s in shares] == [bytes(b) for b in expected]
    # Decoding across stripes from check shares only (where there are enough of them).
    chosen = rnd.sample(range(m), k)
    if m - k >= k:
        chosen = rnd.sample(range(k, m), k)
    rebuilt = decode_segment({n: shares[n] for n in chosen}, k, m, len(segment))
    assert bytes(rebuilt) == segment
    # And the same rebuild as one raw zfec decode call.
    raw = zfec.Decoder(k, m).decode([bytes(shares[n]) for n in sorted(chosen)], sorted(chosen))
    assert b"".join(raw)[: len(segment)] == segment


def test_primary_shares_are_views_without_copy() -> None:
    segment = bytearray(payload(4000))
    shares = encode_segment(segment, 4, 6)
    segment[0] ^= 0xFF
    assert shares[0][0] == segment[0], "primary share 0 is a view into the segment"


@pytest.mark.parametrize(("k", "m"), [(1, 1), (2, 3), (4, 8), (7, 7), (10, 20)])
def test_too_few_shares(k: int, m: int) -> None:
    segment = payload(1000)
    shares = encode_segment(segment, k, m)
    subset = {n: shares[n] for n in range(m - k + 1, m)}  # k-1 of them
    with pytest.raises(NotEnoughSharesError) as info:
        decode_segment(subset, k, m, len(segment))
    assert (info.value.have, info.value.need) == (k - 1, k)


def test_out_of_range_numbers_do_not_count_towards_k() -> None:
    segment = payload(1000)
    shares = encode_segment(segment, 3, 5)
    subset = {0: shares[0], 1: shares[1], 5: shares[2], -1: shares[3]}
    with pytest.raises(NotEnoughSharesError) as info:
        decode_segment(subset, 3, 5, len(segment))
    assert (info.value.have, info.value.need) == (2, 3)


@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_length_share_names_it(delta: int) -> None:
    segment = payload(1001)
    shares = [bytes(s) for s in encode_segment(segment, 3, 5)]
    bad = shares[4][:delta] if delta < 0 else shares[4] + b"\0"
    with pytest.raises(ShardIntegrityError) as info:
        decode_segment({1: shares[1], 2: shares[2], 4: bad}, 3, 5, len(segment))
    assert info.value.share == 4
    assert "expected" in info.value.reason
