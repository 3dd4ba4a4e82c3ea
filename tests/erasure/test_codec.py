"""Both codecs over one segment: any k of m shares rebuild it, and striping changes nothing.

zfec is pinned to one big zfec call; isal to a pure-Python GF(2^8) reference of ISA-L's
Cauchy matrix, so what an isal share is does not depend on pyeclib's framing.
"""

from __future__ import annotations

import random
import threading

import pytest
import zfec
from hypothesis import given, settings
from hypothesis import strategies as st

from erasure import (
    CODECS,
    InvalidParamsError,
    NotEnoughSharesError,
    ShardIntegrityError,
    decode_segment,
    encode_segment,
    get_codec,
)
from erasure import codec as codec_module
from erasure.codec import STRIPE, codec_available, share_size
from tests.erasure.helpers import payload

Case = tuple[int, int, bytes, str]


@st.composite
def coded_segments(draw: st.DrawFn) -> Case:
    codec = draw(st.sampled_from(CODECS))
    m = draw(st.integers(1, 20))
    k = draw(st.integers(1, m))
    size = draw(
        st.one_of(
            st.sampled_from([0, 1, k, k + 1, 2 * k - 1, 3 * k]),
            st.integers(0, 5000),
        )
    )
    return k, m, payload(size, draw(st.integers(0, 2**32))), codec


@settings(max_examples=400, deadline=None)
@given(coded_segments(), st.randoms(use_true_random=False))
def test_any_k_shares_rebuild_the_segment(case: Case, rnd: random.Random) -> None:
    k, m, segment, codec = case
    shares = encode_segment(segment, k, m, codec)
    assert len(shares) == m
    assert all(len(s) == share_size(len(segment), k) for s in shares)
    # Primary shares are the segment itself, zero-padded at the end.
    assert b"".join(bytes(s) for s in shares[:k])[: len(segment)] == segment
    assert not any(b"".join(bytes(s) for s in shares[:k])[len(segment) :])
    chosen = rnd.sample(range(m), k)  # random subset, random insertion order
    # Shares come back from miners as any buffer type.
    kinds = (bytes, bytearray, memoryview)
    subset = {n: kinds[i % 3](bytes(shares[n])) for i, n in enumerate(chosen)}
    assert bytes(decode_segment(subset, k, m, len(segment), codec)) == segment


@settings(max_examples=60, deadline=None)
@given(coded_segments(), st.randoms(use_true_random=False))
def test_extra_shares_and_unknown_numbers_are_ignored(case: Case, rnd: random.Random) -> None:
    k, m, segment, codec = case
    shares = encode_segment(segment, k, m, codec)
    given_shares = {n: shares[n] for n in rnd.sample(range(m), rnd.randint(k, m))}
    given_shares[m + 3] = b"junk"  # a share number the code cannot have made
    given_shares[-1] = b"junk"
    assert bytes(decode_segment(given_shares, k, m, len(segment), codec)) == segment


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


@pytest.mark.parametrize("codec", CODECS)
def test_primary_shares_are_views_without_copy(codec: str) -> None:
    segment = bytearray(payload(4000))
    shares = encode_segment(segment, 4, 6, codec)
    segment[0] ^= 0xFF
    assert shares[0][0] == segment[0], "primary share 0 is a view into the segment"


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("k", "m"), [(1, 1), (2, 3), (4, 8), (7, 7), (10, 20)])
def test_too_few_shares(k: int, m: int, codec: str) -> None:
    segment = payload(1000)
    shares = encode_segment(segment, k, m, codec)
    subset = {n: shares[n] for n in range(m - k + 1, m)}  # k-1 of them
    with pytest.raises(NotEnoughSharesError) as info:
        decode_segment(subset, k, m, len(segment), codec)
    assert (info.value.have, info.value.need) == (k - 1, k)


def test_out_of_range_numbers_do_not_count_towards_k() -> None:
    segment = payload(1000)
    shares = encode_segment(segment, 3, 5)
    subset = {0: shares[0], 1: shares[1], 5: shares[2], -1: shares[3]}
    with pytest.raises(NotEnoughSharesError) as info:
        decode_segment(subset, 3, 5, len(segment))
    assert (info.value.have, info.value.need) == (2, 3)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_length_share_names_it(delta: int, codec: str) -> None:
    segment = payload(1001)
    shares = [bytes(s) for s in encode_segment(segment, 3, 5, codec)]
    bad = shares[4][:delta] if delta < 0 else shares[4] + b"\0"
    with pytest.raises(ShardIntegrityError) as info:
        decode_segment({1: shares[1], 2: shares[2], 4: bad}, 3, 5, len(segment), codec)
    assert info.value.share == 4
    assert "expected" in info.value.reason


# --- isal: what a share is, independently of pyeclib ---------------------------------------

_EXP = [0] * 512
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i], _LOG[_x] = _x, _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D  # ISA-L's GF(2^8) polynomial
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def _gf_mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _gf_inv(a: int) -> int:
    return _EXP[255 - _LOG[a]]


def cauchy_reference(primaries: list[bytes], m: int) -> list[bytes]:
    """Check shares k..m-1: row i of gf_gen_cauchy1_matrix is 1/(i xor j), column by column."""
    k = len(primaries)
    checks = []
    for i in range(k, m):
        row = [_gf_inv(i ^ j) for j in range(k)]
        out = bytearray(len(primaries[0]))
        for j, block in enumerate(primaries):
            for c, byte in enumerate(block):
                out[c] ^= _gf_mul(row[j], byte)
        checks.append(bytes(out))
    return checks


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(0, 8), st.integers(0, 300), st.integers(0, 2**32))
def test_isal_check_shares_are_isa_l_cauchy_rows(k: int, extra: int, size: int, seed: int) -> None:
    m = k + extra
    segment = payload(size, seed)
    shares = [bytes(s) for s in encode_segment(segment, k, m, "isal")]
    zfec_shares = [bytes(s) for s in encode_segment(segment, k, m, "zfec")]
    assert shares[:k] == zfec_shares[:k], "primary shares do not depend on the codec"
    assert shares[k:] == cauchy_reference(shares[:k], m)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("stripe", [1, 7, 4096, STRIPE * 3])
def test_stripe_width_is_not_part_of_the_format(
    codec: str, stripe: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    k, m = 3, 6
    segment = payload(2 * STRIPE * k + 12345 if stripe > 1 else 3000, 7)
    expected = [bytes(s) for s in encode_segment(segment, k, m, codec)]
    monkeypatch.setattr(codec_module, "STRIPE", stripe)
    shares = [bytes(s) for s in encode_segment(segment, k, m, codec)]
    assert shares == expected
    # Decoding from check shares only, across stripes of that width.
    rebuilt = decode_segment({n: shares[n] for n in range(k, m)}, k, m, len(segment), codec)
    assert bytes(rebuilt) == segment


@settings(max_examples=8, deadline=None)
@given(striped_cases(), st.randoms(use_true_random=False))
def test_isal_decodes_across_stripes_from_any_k(
    case: tuple[int, int, bytes], rnd: random.Random
) -> None:
    k, m, segment = case
    shares = encode_segment(segment, k, m, "isal")
    assert len(shares[0]) > STRIPE
    chosen = rnd.sample(range(m), k)
    rebuilt = decode_segment({n: shares[n] for n in chosen}, k, m, len(segment), "isal")
    assert bytes(rebuilt) == segment


@pytest.mark.parametrize("codec", CODECS)
def test_codec_interface_codes_one_stripe(codec: str) -> None:
    k, m = 4, 7
    coder = get_codec(codec, k, m)
    assert (coder.name, coder.k, coder.m) == (codec, k, m)
    primaries = [payload(100, seed) for seed in range(k)]
    checks = [bytes(c) for c in coder.encode(primaries)]
    assert len(checks) == m - k
    assert all(len(c) == 100 for c in checks)
    pieces = dict(enumerate(primaries + checks))
    for chosen in ([0, 1, 2, 3], [3, 4, 5, 6], [0, 2, 4, 6]):
        decoded = coder.decode({n: pieces[n] for n in chosen})
        assert [bytes(p) for p in decoded] == primaries
    with pytest.raises(ValueError, match="exactly k"):
        coder.decode({n: pieces[n] for n in (0, 1, 2)})


@pytest.mark.parametrize("codec", CODECS)
def test_no_check_shares_when_k_equals_m(codec: str) -> None:
    coder = get_codec(codec, 3, 3)
    assert list(coder.encode([b"ab", b"cd", b"ef"])) == []
    assert [bytes(p) for p in coder.decode({0: b"ab", 1: b"cd", 2: b"ef"})] == [b"ab", b"cd", b"ef"]


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="unknown codec 'rs'"):
        get_codec("rs", 4, 8)
    with pytest.raises(InvalidParamsError, match="zfec, isal"):
        encode_segment(b"data", 2, 3, "rs")


def test_isal_is_available_here() -> None:
    # pyeclib is a dependency; its manylinux wheel bundles liberasurecode and ISA-L.
    assert codec_available("isal")
    assert codec_available("zfec")
    assert not codec_available("rs")


def test_isal_without_its_backend_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec_module, "codec_available", lambda name: name == "zfec")
    monkeypatch.setattr(codec_module, "_local", threading.local())  # no cached drivers
    with pytest.raises(InvalidParamsError, match="pip install pyeclib"):
        encode_segment(payload(100), 2, 3, "isal")
