"""A large object streams through the encoder in bounded memory."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator

import pytest
from blake3 import blake3

from erasure import ErasureParams, ObjectEncoder, decode_segment_shares
from tests.erasure.helpers import payload

MiB = 1024 * 1024
CHUNK = MiB
CHUNKS = 1024  # 1 GiB of whole chunks
TAIL = 12_345  # and a short last segment
TOTAL = CHUNKS * CHUNK + TAIL
BLOCK = random.Random(42).randbytes(CHUNK)


def chunk(i: int) -> bytes:
    """Chunk ``i`` of the stream: a fixed random block with its number written over the start,
    so that no two chunks (and no two segments) are equal."""
    if i == CHUNKS:
        return BLOCK[:TAIL]
    return i.to_bytes(8, "big") + BLOCK[8:]


def stream() -> Iterator[bytearray | bytes]:
    """The same bytes as :func:`chunk`, made lazily in one reused buffer, as a reader would."""
    buf = bytearray(BLOCK)
    for i in range(CHUNKS):
        buf[:8] = i.to_bytes(8, "big")
        yield buf
    yield chunk(CHUNKS)


def test_one_gib_streams_in_bounded_memory() -> None:
    """1 GiB (plus a tail) through the encoder with default parameters (4-of-8, 16 MiB
    segments, sealed, one worker), segments dropped as they come. The encoder holds the
    segment being filled, the one held back, and ``workers + 1`` being coded, each with its
    ciphertext and check shares: about 100 MiB of traced allocations here, whatever the
    object's size. So the peak must stay under 200 MiB, and must not grow between the first
    144 MiB and the end. Shares of three segments are kept aside (their bytes are not counted
    against the bound) and decoded afterwards from a mix of primary and check shares.
    About 6 s on two cores."""
    params = ErasureParams()
    assert params.segment_size == 16 * MiB
    per_segment = params.segment_size // CHUNK
    keep = {0: (1, 5, 6, 7), 37: (0, 2, 4, 6), 64: (7, 6, 5, 4)}  # 64 is the short last one
    key = bytes(range(32))
    encoder = ObjectEncoder(params, key=key)
    seen_ids = blake3()
    kept: dict[int, dict[int, bytes]] = {}
    kept_bytes = 0
    early: tuple[int, int] | None = None  # (peak, kept bytes) after segment 8
    count = 0
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for segment in encoder.encode(stream()):
            assert segment.index == count
            count += 1
            for shard in segment.shards:
                seen_ids.update(bytes.fromhex(shard.id))
            if segment.index in keep:
                kept[segment.index] = {n: segment.shards[n].data for n in keep[segment.index]}
                kept_bytes += sum(len(share) for share in kept[segment.index].values())
            if segment.index == 8:  # 144 MiB in: every buffer of the pipeline is in use
                early = (tracemalloc.get_traced_memory()[1] - baseline, kept_bytes)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    manifest = encoder.manifest()
    assert count == len(manifest.segments) == 65
    assert manifest.size == TOTAL
    assert manifest.plaintext_size(64) == TAIL
    listed = blake3()
    for info in manifest.segments:
        for shard_id in info.shard_ids:
            listed.update(bytes.fromhex(shard_id))
    assert listed.digest() == seen_ids.digest()

    assert early is not None
    working = peak - kept_bytes
    assert working < 200 * MiB, f"peak traced memory {working / MiB:.0f} MiB for a 1 GiB stream"
    growth = (peak - early[0]) - (kept_bytes - early[1])
    assert growth < 16 * MiB, f"memory grew by {growth / MiB:.0f} MiB after the first 144 MiB"

    for index, shares in kept.items():
        first = index * per_segment
        last = min(first + per_segment, CHUNKS + 1)
        expected = b"".join(chunk(i) for i in range(first, last))
        assert decode_segment_shares(manifest, index, shares, key) == expected


def counted(chunks: Iterator[bytes | bytearray], pulled: list[int]) -> Iterator[bytes | bytearray]:
    for piece in chunks:
        pulled[0] += 1
        yield piece


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_encoder_reads_ahead_only_a_few_segments(workers: int) -> None:
    """Backpressure: when the first segment comes out, the encoder has read at most the
    segment held back, one being filled and ``workers + 1`` in the pool, not the stream."""
    params = ErasureParams(2, 4, 64 * 1024, 1024)
    chunk_size = 16 * 1024
    per_segment = params.segment_size // chunk_size
    pulled = [0]
    source = (payload(chunk_size, seed=i) for i in range(per_segment * 50))
    encoder = ObjectEncoder(params, key=bytes(32), workers=workers)
    segments = encoder.encode(counted(source, pulled))
    first = next(segments)
    assert first.index == 0
    assert pulled[0] <= (workers + 3) * per_segment
    for segment in segments:
        # Still bounded in the steady state, right up to the end of the stream.
        assert pulled[0] <= (segment.index + workers + 3) * per_segment
    assert encoder.manifest().size == 50 * params.segment_size


def test_two_workers_stream_in_bounded_memory() -> None:
    """The threaded pipeline holds ``workers + 1`` segments being coded, not the object: 96
    segments of 1 MiB go through in well under 20 segments' worth of traced memory."""
    params = ErasureParams(4, 8, MiB, 16 * 1024)
    encoder = ObjectEncoder(params, key=bytes(32), workers=2)
    source = (BLOCK for _ in range(96))
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        count = sum(1 for _ in encoder.encode(source))
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert count == 96
    assert peak < 20 * MiB, f"peak traced memory {peak / MiB:.0f} MiB for a 96 MiB stream"
