"""Erasure coding parameters and the defaults we ship.

Defaults, and why:

- ``k=4, m=8``: any 4 of 8 shares rebuild a segment, so a segment survives the loss of half
  its miners at 2x expansion. zfec's speed falls with k (about 0.5 GB/s at 4-of-8, 56 MB/s
  at 29-of-80 on our machines), and a local net of 8 miners can hold one share per miner.
  Larger subnets should raise both (10-of-16 is 1.6x and still ~0.45 GB/s).
- ``segment_size=16 MiB``: big enough that per-shard costs (a request, a file create, a DB
  row) are amortised over 4 MiB shards; small enough that a validator holding two segments
  in flight with their shares stays far below its 300 MiB budget. Storj uses 64 MB and
  Tahoe 128 KiB; ``bench/erasure.py`` measured no throughput gain above 16 MiB.
- ``leaf_size=16 KiB``: measured against 4 KiB (DESIGN's starting point), it codes 20% faster
  end to end (hashing leaves costs a Python call each, and 4x fewer calls matter more than
  anything else in the pipeline after zfec). A challenged leaf is one random disk read either
  way; it costs 16 KiB on the wire, and a 4 MiB shard's saved tree is 16 KiB (1/256).
- ``codec="zfec"``: the format every object had before the codec could be chosen. ``isal``
  (ISA-L through pyeclib) takes ~8-9x less CPU than zfec, which makes a pipeline thread 2x
  and a gateway upload ~2x faster (``bench/erasure.py``, ``bench/gateway.py --codecs``); it
  is chosen per upload, and the manifest records which.
"""

from __future__ import annotations

from dataclasses import dataclass

from erasure.codec import CODECS, DEFAULT_CODEC
from erasure.errors import InvalidParamsError

KiB = 1024
MiB = 1024 * KiB

DEFAULT_K = 4
DEFAULT_M = 8
DEFAULT_SEGMENT_SIZE = 16 * MiB
DEFAULT_LEAF_SIZE = 16 * KiB

MAX_SHARES = 256  # both codecs work over GF(2^8)
MIN_LEAF_SIZE = 64
MAX_LEAF_SIZE = 1 * MiB
MAX_SEGMENT_SIZE = 1024 * MiB


@dataclass(frozen=True, slots=True)
class ErasureParams:
    """How an object is cut and coded: k of m shares per segment with ``codec`` (see
    :mod:`erasure.codec`), Merkle leaves of a shard."""

    k: int = DEFAULT_K
    m: int = DEFAULT_M
    segment_size: int = DEFAULT_SEGMENT_SIZE
    leaf_size: int = DEFAULT_LEAF_SIZE
    codec: str = DEFAULT_CODEC

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise InvalidParamsError(
                f"unknown codec {self.codec!r}: this code knows {', '.join(CODECS)}"
            )
        if not 1 <= self.k <= self.m <= MAX_SHARES:
            raise InvalidParamsError(f"need 1 <= k <= m <= {MAX_SHARES}, got k={self.k} m={self.m}")
        if not 1 <= self.segment_size <= MAX_SEGMENT_SIZE:
            raise InvalidParamsError(
                f"segment_size must be 1..{MAX_SEGMENT_SIZE} bytes, got {self.segment_size}"
            )
        leaf = self.leaf_size
        if not (MIN_LEAF_SIZE <= leaf <= MAX_LEAF_SIZE and leaf & (leaf - 1) == 0):
            raise InvalidParamsError(
                f"leaf_size must be a power of two in {MIN_LEAF_SIZE}..{MAX_LEAF_SIZE}, got {leaf}"
            )

    def shard_size(self, segment_bytes: int) -> int:
        """Bytes in each share of a segment holding ``segment_bytes`` (padded to k blocks)."""
        return -(-segment_bytes // self.k)
