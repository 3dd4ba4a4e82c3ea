"""Erasure codes over one segment, worked in column stripes, behind one interface.

A segment of n bytes becomes k primary blocks of ``ceil(n/k)`` bytes (the last one padded
with zeros) plus m-k check blocks. Primary shares are the same under every codec: the
segment's consecutive blocks, views into it, so they cost no copy. Only the check shares
depend on the codec, which the manifest names:

- ``zfec`` (the default): zfec's Reed-Solomon code (``zfec.Encoder(k, m)``), check share i
  being zfec's block number i.
- ``isal``: ISA-L's Cauchy Reed-Solomon code, through pyeclib (liberasurecode's
  ``isa_l_rs_cauchy`` with k data and m-k parity fragments). Check share i (i >= k) is row
  i of ``gf_gen_cauchy1_matrix``, ``1 / (i xor j)`` for primary j over GF(2^8) with the
  polynomial 0x11d, applied to the primaries byte column by byte column. That is the
  payload of pyeclib's fragment i with its liberasurecode header (80 bytes) removed: a share
  holds payload bytes only, so its Merkle root depends on nothing but the data, and any k
  shares decode. ``tests/erasure/test_codec.py`` checks it against a pure-Python reference.

Both codes work byte column by byte column, so coding the blocks in stripes of ``STRIPE``
bytes gives exactly the output of one big call, while each call's working set stays in
cache (about 1.3x faster than one zfec call per 16 MiB segment, ``bench/erasure.py``); the
stripe width is not part of the format. A :class:`Codec` codes one stripe at a time.

pyeclib wants ``bytes`` (a memoryview fragment aborts the process inside liberasurecode), so
the isal codec joins each stripe's primaries into one buffer for it, and for decoding puts a
header back in front of each payload: the header liberasurecode wrote when it coded zeros
of the same stripe shape (headers hold sizes and indices, no checksum of the payload).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import zfec

from erasure.errors import InvalidParamsError, NotEnoughSharesError, ShardIntegrityError

if TYPE_CHECKING:
    from pyeclib.ec_iface import ECDriver

Buffer = bytes | bytearray | memoryview

STRIPE = 256 * 1024

ZFEC = "zfec"
ISAL = "isal"
CODECS: tuple[str, ...] = (ZFEC, ISAL)  # the names a manifest may carry
DEFAULT_CODEC = ZFEC
_ISAL_BACKEND = "isa_l_rs_cauchy"


class Codec(Protocol):
    """One erasure code for one (k, m), applied to one column stripe at a time.

    A stripe is the same byte range of every share: k primary pieces of equal length, and
    the m-k check pieces the code derives from them.
    """

    @property
    def name(self) -> str: ...

    @property
    def k(self) -> int: ...

    @property
    def m(self) -> int: ...

    def encode(self, primaries: Sequence[Buffer]) -> Sequence[Buffer]:
        """The m-k check pieces (shares k..m-1, in order) of one stripe of k primaries."""
        ...

    def decode(self, pieces: Mapping[int, Buffer]) -> Sequence[Buffer]:
        """The k primary pieces of one stripe from exactly k pieces keyed by share number."""
        ...


class ZfecCodec:
    """zfec: today's format, byte for byte."""

    name = ZFEC

    def __init__(self, k: int, m: int) -> None:
        self.k, self.m = k, m
        self._encoder = zfec.Encoder(k, m) if m > k else None
        self._wanted = tuple(range(k, m))
        self._decoder: zfec.Decoder | None = None

    def encode(self, primaries: Sequence[Buffer]) -> Sequence[Buffer]:
        if self._encoder is None:
            return []
        checks: list[bytes] = self._encoder.encode(list(primaries), self._wanted)
        return checks

    def decode(self, pieces: Mapping[int, Buffer]) -> Sequence[Buffer]:
        numbers = _exactly_k(pieces, self.k, self.m)
        if numbers == list(range(self.k)):
            return [pieces[n] for n in numbers]
        if self._decoder is None:
            self._decoder = zfec.Decoder(self.k, self.m)
        primaries: list[bytes] = self._decoder.decode([pieces[n] for n in numbers], numbers)
        return primaries


class IsalCodec:
    """ISA-L Cauchy Reed-Solomon through pyeclib; shares are fragment payloads only."""

    name = ISAL

    def __init__(self, k: int, m: int) -> None:
        self.k, self.m = k, m
        self._driver = _isal_driver(k, m) if m > k else None

    def encode(self, primaries: Sequence[Buffer]) -> Sequence[Buffer]:
        if self._driver is None:
            return []
        width = len(primaries[0]) if primaries else 0
        fragments = self._driver.encode(b"".join(primaries))
        # Each fragment is a liberasurecode header, then the payload: keep the payload.
        return [memoryview(f)[len(f) - width :] for f in fragments[self.k :]]

    def decode(self, pieces: Mapping[int, Buffer]) -> Sequence[Buffer]:
        numbers = _exactly_k(pieces, self.k, self.m)
        if numbers == list(range(self.k)) or self._driver is None:
            return [pieces[n] for n in numbers]
        width = len(pieces[numbers[0]])
        headers = _isal_headers(self.k, self.m, width)
        data = memoryview(self._driver.decode([headers[n] + pieces[n] for n in numbers]))
        return [data[i * width : (i + 1) * width] for i in range(self.k)]


def _exactly_k(pieces: Mapping[int, Buffer], k: int, m: int) -> list[int]:
    numbers = sorted(pieces)
    if len(numbers) != k or not all(0 <= n < m for n in numbers):
        raise ValueError(f"a stripe decodes from exactly k={k} pieces numbered 0..{m - 1}")
    return numbers


_local = threading.local()


def _isal_driver(k: int, m: int) -> ECDriver:
    """A pyeclib driver for k data + (m-k) parity fragments, one per thread and shape."""
    drivers: dict[tuple[int, int], ECDriver] | None = getattr(_local, "drivers", None)
    if drivers is None:
        drivers = _local.drivers = {}
    driver = drivers.get((k, m))
    if driver is None:
        driver = drivers[(k, m)] = _new_isal_driver(k, m)
    return driver


def _new_isal_driver(k: int, m: int) -> ECDriver:
    if not codec_available(ISAL):
        raise InvalidParamsError(
            "the isal codec needs pyeclib with ISA-L (pip install pyeclib; its manylinux wheel "
            "bundles ISA-L); it is not available here"
        )
    from pyeclib.ec_iface import ECDriver  # noqa: PLC0415 - optional native backend

    return ECDriver(k=k, m=m - k, ec_type=_ISAL_BACKEND)


@functools.lru_cache(maxsize=64)
def _isal_headers(k: int, m: int, width: int) -> tuple[bytes, ...]:
    """The fragment headers liberasurecode expects for a stripe of k pieces of ``width``."""
    fragments = _isal_driver(k, m).encode(bytes(k * width))
    return tuple(f[: len(f) - width] for f in fragments)


@functools.cache
def codec_available(name: str) -> bool:
    """Whether this host can code with ``name`` (isal needs pyeclib's ISA-L backend)."""
    if name == ZFEC:
        return True
    if name != ISAL:
        return False
    try:
        from pyeclib.ec_iface import check_backend_available  # noqa: PLC0415
    except ImportError:
        return False
    return bool(check_backend_available(_ISAL_BACKEND))


def get_codec(name: str, k: int, m: int) -> Codec:
    """The codec ``name`` for k of m shares; unknown or unavailable codecs raise."""
    if name == ZFEC:
        return ZfecCodec(k, m)
    if name == ISAL:
        return IsalCodec(k, m)
    raise InvalidParamsError(f"unknown codec {name!r}: this code knows {', '.join(CODECS)}")


def primary_blocks(segment: Buffer, k: int) -> list[memoryview]:
    """The k primary shares: views into ``segment``, with the short tail zero-padded."""
    view = memoryview(segment).cast("B")
    block = share_size(len(view), k)
    blocks = [view[i * block : (i + 1) * block] for i in range(k)]
    for i, piece in enumerate(blocks):
        if len(piece) < block:
            blocks[i] = memoryview(bytes(piece) + bytes(block - len(piece)))
    return blocks


def check_stripes(
    primaries: Sequence[memoryview], m: int, codec: str = DEFAULT_CODEC
) -> Iterator[tuple[int, Sequence[Buffer]]]:
    """Yield ``(offset, checks)`` per column stripe: the m-k check pieces at that offset.

    Callers that hash shares consume each stripe while it is still in cache.
    """
    block = len(primaries[0]) if primaries else 0
    coder = get_codec(codec, len(primaries), m)
    for start in range(0, block, STRIPE):
        end = min(start + STRIPE, block)
        yield start, coder.encode([p[start:end] for p in primaries])


def share_size(segment_bytes: int, k: int) -> int:
    return -(-segment_bytes // k)


def encode_segment(segment: Buffer, k: int, m: int, codec: str = DEFAULT_CODEC) -> list[Buffer]:
    """Return the m shares of ``segment``, share number i at position i.

    Primary shares are views into ``segment`` (or its padded tail); check shares are new.
    """
    primaries = primary_blocks(segment, k)
    block = len(primaries[0])
    checks = [bytearray(block) for _ in range(m - k)]
    for start, pieces in check_stripes(primaries, m, codec):
        for share, piece in zip(checks, pieces, strict=True):
            share[start : start + len(piece)] = piece
    return [*primaries, *checks]


def decode_segment(
    shares: Mapping[int, Buffer], k: int, m: int, size: int, codec: str = DEFAULT_CODEC
) -> bytes | bytearray:
    """Rebuild the ``size`` bytes of a segment from any k of its shares.

    With every primary share present nothing is decoded: the blocks are joined.
    """
    usable = sorted(n for n in shares if 0 <= n < m)
    if len(usable) < k:
        raise NotEnoughSharesError(segment=-1, have=len(usable), need=k)
    block = share_size(size, k)
    for n in usable:
        if len(shares[n]) != block:
            reason = f"{len(shares[n])} bytes, expected {block}"
            raise ShardIntegrityError(segment=-1, share=n, reason=reason)
    # Prefer primary shares: they are the segment's own bytes.
    chosen = usable[:k]
    if chosen == list(range(k)):
        out = bytearray().join(shares[n] for n in chosen)
    else:
        coder = get_codec(codec, k, m)
        out = _decode_striped(coder, {n: memoryview(shares[n]) for n in chosen}, block)
    del out[size:]  # the zero padding of the last block
    return out


def _decode_striped(coder: Codec, blocks: Mapping[int, memoryview], block: int) -> bytearray:
    out = bytearray(block * coder.k)
    for start in range(0, block, STRIPE):
        end = min(start + STRIPE, block)
        primaries = coder.decode({n: b[start:end] for n, b in blocks.items()})
        for i, piece in enumerate(primaries):
            out[i * block + start : i * block + end] = piece
    return out
