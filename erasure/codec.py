"""zfec over one segment, worked in column stripes.

A segment of n bytes becomes k primary blocks of ``ceil(n/k)`` bytes (the last one padded
with zeros) plus m-k check blocks. zfec's Reed-Solomon code works byte column by byte
column, so coding the blocks in stripes of ``STRIPE`` bytes gives exactly the output of one
big call, while each call's working set stays in cache. For 4-of-8 that is about 1.3x
faster here than one call per 16 MiB segment (``bench/erasure.py``), and it does not change
the format. Primary shares are views into the segment, so they cost no copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import zfec

from erasure.errors import NotEnoughSharesError, ShardIntegrityError

Buffer = bytes | bytearray | memoryview

STRIPE = 256 * 1024


def primary_blocks(segment: Buffer, k: int) -> list[memoryview]:
    """The k primary shares: views into ``segment``, with the short tail zero-padded."""
    view = memoryview(segment).cast("B")
    block = share_size(len(view), k)
    blocks = [view[i * block : (i + 1) * block] for i in range(k)]
    for i, piece in enumerate(blocks):
        if len(piece) < block:
            blocks[i] = memoryview(bytes(piece) + bytes(block - len(piece)))
    return blocks


def check_stripes(primaries: Sequence[memoryview], m: int) -> Iterator[tuple[int, list[bytes]]]:
    """Yield ``(offset, checks)`` per column stripe: the m-k check pieces at that offset.

    Callers that hash shares consume each stripe while it is still in cache.
    """
    k = len(primaries)
    block = len(primaries[0]) if primaries else 0
    encoder = zfec.Encoder(k, m) if m > k else None
    wanted = tuple(range(k, m))
    for start in range(0, block, STRIPE):
        end = min(start + STRIPE, block)
        checks = encoder.encode([p[start:end] for p in primaries], wanted) if encoder else []
        yield start, checks


def share_size(segment_bytes: int, k: int) -> int:
    return -(-segment_bytes // k)


def encode_segment(segment: Buffer, k: int, m: int) -> list[Buffer]:
    """Return the m shares of ``segment``, share number i at position i.

    Primary shares are views into ``segment`` (or its padded tail); check shares are new.
    """
    primaries = primary_blocks(segment, k)
    block = len(primaries[0])
    checks = [bytearray(block) for _ in range(m - k)]
    for start, pieces in check_stripes(primaries, m):
        for share, piece in zip(checks, pieces, strict=True):
            share[start : start + len(piece)] = piece
    return [*primaries, *checks]


def decode_segment(shares: Mapping[int, Buffer], k: int, m: int, size: int) -> bytes | bytearray:
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
    # Prefer primary shares: zfec hands each one back without work.
    chosen = usable[:k]
    if chosen == list(range(k)):
        out = bytearray().join(shares[n] for n in chosen)
    else:
        out = _decode_striped([memoryview(shares[n]) for n in chosen], chosen, k, m, block)
    del out[size:]  # the zero padding of the last block
    return out


def _decode_striped(
    blocks: Sequence[memoryview], numbers: Sequence[int], k: int, m: int, block: int
) -> bytearray:
    decoder = zfec.Decoder(k, m)
    numbers = tuple(numbers)
    out = bytearray(block * k)
    for start in range(0, block, STRIPE):
        end = min(start + STRIPE, block)
        primaries = decoder.decode([b[start:end] for b in blocks], numbers)
        for i, piece in enumerate(primaries):
            out[i * block + start : i * block + end] = piece
    return out
