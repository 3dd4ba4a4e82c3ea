"""Shared helpers for the erasure tests: deterministic data, chunkings and strategies."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from hypothesis import strategies as st

from erasure import CODECS, ErasureParams

LEAF_SIZES = (64, 128, 256, 512, 1024)


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def chunked(data: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    """Cut ``data`` into pieces whose sizes cycle through ``sizes`` (each >= 1)."""
    offset, i = 0, 0
    while offset < len(data):
        size = sizes[i % len(sizes)]
        yield data[offset : offset + size]
        offset += size
        i += 1


def flip_bit(data: bytes | bytearray | memoryview, bit: int) -> bytes:
    """A copy of ``data`` with bit number ``bit`` (mod its length in bits) inverted."""
    out = bytearray(data)
    bit %= len(out) * 8
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def small_params(draw: st.DrawFn, max_m: int = 20, max_segment: int = 16 * 1024) -> ErasureParams:
    """Parameters small enough that many examples run in a second, under either codec."""
    m = draw(st.integers(1, max_m))
    k = draw(st.integers(1, m))
    segment_size = draw(st.integers(1, max_segment))
    leaf_size = draw(st.sampled_from(LEAF_SIZES))
    codec = draw(st.sampled_from(CODECS))
    return ErasureParams(k=k, m=m, segment_size=segment_size, leaf_size=leaf_size, codec=codec)


@st.composite
def object_sizes(draw: st.DrawFn, segment_size: int, k: int) -> int:
    """Object sizes that hit the edges: empty, one byte, multiples of k and of the segment."""
    return draw(
        st.one_of(
            st.sampled_from([0, 1, k, k + 1, max(1, k - 1)]),
            st.integers(1, 4).map(lambda n: n * segment_size),
            st.integers(1, 4).map(lambda n: n * segment_size + 1),
            st.integers(1, 4).map(lambda n: n * segment_size - 1),
            st.integers(0, 4 * segment_size + k),
        )
    )
