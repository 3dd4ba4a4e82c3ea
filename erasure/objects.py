"""Whole objects as streams: chunks in, encoded segments out, and back again.

The encoder never holds more than the segments it is working on: one being filled, plus
``workers + 1`` being coded. Coding a segment is encrypt, erasure-code (the params' codec,
see :mod:`erasure.codec`), then a Merkle tree per share; zfec, AES and BLAKE3 release the
GIL, so with ``workers=2`` both cores code segments at once. pyeclib (the isal codec) holds
the GIL, but it takes ~9x less CPU than zfec, so the hashing, which releases it, dominates.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from erasure import codec
from erasure.capability import Capability
from erasure.codec import check_stripes, decode_segment, primary_blocks
from erasure.crypto import KEY_SIZE, TAG_SIZE, decrypt_segment, encrypt_segment, new_key
from erasure.errors import (
    ErasureError,
    InvalidParamsError,
    NotEnoughSharesError,
    SealedStreamError,
    ShardIntegrityError,
)
from erasure.manifest import Encryption, Manifest, SealedBy, SegmentInfo
from erasure.merkle import MerkleBuilder, MerkleTree
from erasure.params import ErasureParams

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Shard:
    """One share of one segment, with the tree a miner saves beside it.

    The bytes are kept as the ``pieces`` the codec produced them (one per column stripe), so a
    sender can stream them without first joining them into one buffer.
    """

    share: int
    pieces: tuple[Buffer, ...]
    tree: MerkleTree

    @property
    def id(self) -> str:
        return self.tree.root.hex()

    @property
    def size(self) -> int:
        return self.tree.size

    @property
    def data(self) -> bytes:
        """The whole share as one buffer (a copy); prefer :attr:`pieces` on hot paths."""
        return b"".join(self.pieces)


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class EncodedSegment:
    index: int
    info: SegmentInfo
    shards: tuple[Shard, ...]
    # Hands the segment's buffer back for the next segment (SegmentBuffers). Call it once
    # the shards' bytes are sent and no longer read; until then they are views into it.
    release: Callable[[], None] = _nothing


class SegmentBuffers:
    """Whole-segment buffers, reused once their segment is released.

    A fresh 16 MiB buffer is a fresh mapping (``protocol/memory.py``): ``bytearray(n)``
    zeroes it, the kernel faults it in and zeroes each page before that, and only then is
    the data copied in. perf put the two zeroings at 8-16% of a validator's upload CPU.
    Keeping at most ``keep`` released buffers costs no memory beyond the pipeline's peak:
    a buffer is made only when none is free.
    """

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self.keep = keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()  # taken by the encoder's thread, given by the sender

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.size)

    def give(self, buffer: bytearray) -> None:
        if len(buffer) != self.size:
            return
        with self._lock:
            if len(self._free) < self.keep:
                self._free.append(buffer)

    def clear(self) -> None:
        """Drop every free buffer (they go back to the kernel once nothing holds them)."""
        with self._lock:
            self._free.clear()

    def releaser(self, segment: memoryview) -> Callable[[], None]:
        """``release`` for a segment cut into one of this pool's buffers, else a no-op."""
        owner = segment.obj
        if not isinstance(owner, bytearray) or len(owner) != self.size:
            return _nothing
        return lambda: self.give(owner)


GROW_LIMIT = 2**20  # a segment's buffer grows with the data up to here


def split_segments(
    chunks: Iterable[Buffer], segment_size: int, size_hint: int | None = None,
    buffers: SegmentBuffers | None = None,
) -> Iterator[tuple[int, memoryview, bool]]:  # fmt: skip
    """Cut a stream of chunks into ``(index, segment, is_last)``.

    Each segment is copied into a buffer of its own, so callers may reuse their chunk
    buffers. The last segment is sealed differently, so a segment must be known to be last
    or not before it is handed on: with ``size_hint``, the stream's length, that is
    arithmetic and each segment goes on as soon as it is whole; without it, a whole segment
    is held back until the next byte (or the end) shows it. The hint also sizes the buffers
    (a small object never zeroes a whole segment). A stream of another length than its hint
    is cut all the same, its flags then maybe wrong: the caller refuses it before storing.
    A segment that will be whole is cut into a buffer from ``buffers`` (of ``segment_size``
    bytes), when given.
    """
    index = 0
    held: memoryview | None = None
    buf, filled, before = bytearray(), 0, 0  # before: the bytes of the segments cut so far
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        while view:
            take = min(len(view), segment_size - filled)
            left = segment_size if size_hint is None else size_hint - before
            if not filled and buffers is not None and left >= segment_size:
                buf = buffers.take()  # whole (or, without a hint, maybe): reused
            elif len(buf) < filled + take and filled + take > GROW_LIMIT:
                # Past a small start, the rest of the segment at once: one allocation, not a
                # copy per growth step, and a small object never pays for zeroing 16 MiB.
                whole = bytearray(max(filled + take, min(segment_size, left)))
                whole[:filled] = buf[:filled]
                buf = whole
            buf[filled : filled + take] = view[:take]  # grows the buffer when it is short
            filled += take
            view = view[take:]
            if filled == segment_size:
                before += segment_size
                if size_hint is not None:  # known length: on at once, one segment less held
                    yield index, memoryview(buf), before >= size_hint
                    index += 1
                    buf, filled = bytearray(), 0
                    continue
                if held is not None:
                    yield index, held, False
                    index += 1
                held, buf, filled = memoryview(buf), bytearray(), 0
        view.release()  # let the caller resize or reuse its buffer before the next chunk
    if filled:
        if held is not None:
            yield index, held, False
            index += 1
        held = memoryview(buf)[:filled]
    if held is not None:
        yield index, held, True


def encode_segment_shards(
    params: ErasureParams, index: int, plaintext: Buffer, is_last: bool, key: bytes | None
) -> EncodedSegment:
    """Seal (when keyed), erasure-code (``params.codec``) and hash one segment."""
    stored = plaintext if key is None else encrypt_segment(key, index, is_last, plaintext)
    shard_size = params.shard_size(len(stored))
    # Hash each stripe of every share right after the codec made it, while it is in cache.
    # Primary shares stay views into the segment; check shares stay the codec's pieces.
    k = params.k
    primaries = primary_blocks(stored, k)
    builders = [MerkleBuilder(params.leaf_size) for _ in range(params.m)]
    pieces: list[list[Buffer]] = [[] for _ in range(params.m)]
    for share, primary in enumerate(primaries):
        pieces[share].append(primary)
    for start, checks in check_stripes(primaries, params.m, params.codec):
        end = start + codec.STRIPE
        for builder, primary in zip(builders, primaries, strict=False):
            builder.update(primary[start:end])
        for share, piece in enumerate(checks, start=k):
            builders[share].update(piece)
            pieces[share].append(piece)
    shards = tuple(
        Shard(share=n, pieces=tuple(share_pieces), tree=builder.finish())
        for n, (builder, share_pieces) in enumerate(zip(builders, pieces, strict=True))
    )
    info = SegmentInfo(
        size=len(stored),
        padding=shard_size * params.k - len(stored),
        shard_size=shard_size,
        shard_ids=tuple(s.id for s in shards),
    )
    return EncodedSegment(index=index, info=info, shards=shards)


class ObjectEncoder:
    """Encodes one object. Iterate :meth:`encode`, then read :meth:`manifest`.

    >>> enc = ObjectEncoder(ErasureParams(), encrypt=True)
    >>> for segment in enc.encode(chunks): store(segment)      # doctest: +SKIP
    >>> enc.manifest(), enc.capability()                        # doctest: +SKIP

    With ``presealed=True`` the chunks are an object the client already sealed
    (:func:`erasure.sealing.seal_segments` with ``params.segment_size``): they are cut at
    ``segment_size + TAG_SIZE`` and coded as they are. The encoder has no key, the manifest
    says ``sealed_by: client`` and :meth:`capability` is verify-only; the client adds its key.
    """

    def __init__(
        self,
        params: ErasureParams,
        *,
        encrypt: bool = True,
        key: bytes | None = None,
        workers: int = 1,
        presealed: bool = False,
        size_hint: int | None = None,
    ) -> None:
        if key is not None and (not encrypt or presealed):
            raise ValueError(
                "a key was given but encrypt=False or presealed=True (the client holds the key)"
            )
        if key is not None and len(key) != KEY_SIZE:
            raise InvalidParamsError(f"an object key is {KEY_SIZE} bytes, got {len(key)}")
        if presealed and not encrypt:
            raise ValueError("presealed segments are encrypted: leave encrypt=True")
        self.params = params
        self.presealed = presealed
        sealing = encrypt and not presealed
        self.key = (new_key() if key is None else key) if sealing else None
        self.workers = max(1, workers)
        self.size_hint = size_hint  # the stream's length, if known (split_segments)
        stride = params.segment_size + (TAG_SIZE if presealed else 0)
        # One kept: the next segment is cut into the one just released (perf: as much reuse
        # as keeping five), and an upload holds at most one idle buffer (bench.memory).
        self.buffers = SegmentBuffers(stride, keep=1)
        self._segments: list[SegmentInfo] = []
        self._done = False

    def encode(self, chunks: Iterable[Buffer]) -> Iterator[EncodedSegment]:
        """The coded segments of the stream ``chunks`` (with ``size_hint``, each goes on as
        soon as it is cut: see :func:`split_segments`)."""
        if self._done or self._segments:
            raise ErasureError("an ObjectEncoder encodes one object; make a new one")
        if self.presealed:
            pieces = _sealed_pieces(chunks, self.params.segment_size, self.size_hint, self.buffers)
        else:
            pieces = split_segments(chunks, self.params.segment_size, self.size_hint, self.buffers)
        if self.workers == 1:
            results: Iterator[EncodedSegment] = (self._code(*piece) for piece in pieces)
        else:
            results = self._code_concurrently(pieces)
        for segment in results:
            self._segments.append(segment.info)
            yield segment
        self._done = True

    def _code(self, index: int, segment: memoryview, is_last: bool) -> EncodedSegment:
        coded = encode_segment_shards(self.params, index, segment, is_last, self.key)
        release = self.buffers.releaser(segment)
        if self.key is not None:  # the shards are of the ciphertext, not of this buffer
            release()
            return coded
        return replace(coded, release=release)

    def _code_concurrently(
        self, pieces: Iterator[tuple[int, memoryview, bool]]
    ) -> Iterator[EncodedSegment]:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="erasure") as pool:
            pending: deque[Future[EncodedSegment]] = deque()
            for piece in pieces:
                pending.append(pool.submit(self._code, *piece))
                # No more than `workers` segments in hand (each ~3x its size while coded):
                # one more ahead bought no upload speed and cost its memory (measured).
                if len(pending) >= self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def manifest(self) -> Manifest:
        if not self._done:
            raise ErasureError("the manifest is known only once encode() has been consumed")
        sealed_by: SealedBy = "client" if self.presealed else "validator" if self.key else "none"
        encryption: Encryption = "none" if sealed_by == "none" else "aes-256-gcm"
        overhead = 0 if sealed_by == "none" else TAG_SIZE
        return Manifest(
            params=self.params,
            size=sum(info.size - overhead for info in self._segments),
            encryption=encryption,
            segments=tuple(self._segments),
            sealed_by=sealed_by,
        )

    def capability(self) -> Capability:
        manifest = self.manifest()
        return Capability(
            verifier=manifest.verifier_hash(),
            k=self.params.k,
            m=self.params.m,
            size=manifest.size,
            key=self.key,
        )


def _sealed_pieces(
    chunks: Iterable[Buffer], segment_size: int, size_hint: int | None = None,
    buffers: SegmentBuffers | None = None,
) -> Iterator[tuple[int, memoryview, bool]]:  # fmt: skip
    """A sealed stream cut into its segments. Every segment but the last is whole by
    construction; the last must hold at least one plaintext byte besides its tag."""
    stride = segment_size + TAG_SIZE
    for index, sealed, is_last in split_segments(chunks, stride, size_hint, buffers):
        if len(sealed) <= TAG_SIZE:
            raise SealedStreamError(
                f"sealed segment {index} is {len(sealed)} bytes: a sealed segment holds "
                f"1..{segment_size} plaintext bytes and a {TAG_SIZE}-byte tag"
            )
        yield index, sealed, is_last


def decode_segment_shares(
    manifest: Manifest,
    index: int,
    shares: Mapping[int, Buffer],
    key: bytes | None = None,
    *,
    verify: bool = True,
    sealed: bool = False,
) -> bytes | bytearray:
    """Plaintext of segment ``index`` from any k of its shares; with ``sealed``, its stored
    bytes as they are (the ciphertext of a sealed object, for a reader without the key).

    Of the shares given, the k lowest-numbered are used (primaries cost no decoding), and
    decoded with the manifest's codec. With ``verify`` each of those is hashed against its
    shard id first; a bad one raises :class:`ShardIntegrityError` naming it, so the caller
    can drop it and fetch another.
    """
    info = manifest.segments[index]
    params = manifest.params
    if sealed:
        key = None
    elif manifest.encrypted and key is None:
        raise ErasureError("this object is encrypted: a read capability (with key) is needed")
    for share in shares:
        if not 0 <= share < params.m:
            raise ShardIntegrityError(index, share, f"share number outside 0..{params.m - 1}")
    chosen = {n: shares[n] for n in sorted(shares)[: params.k]}
    if verify:
        for share, data in chosen.items():
            _check_share(manifest, index, share, data)
    try:
        stored = decode_segment(chosen, params.k, params.m, info.size, params.codec)
    except NotEnoughSharesError as exc:
        raise NotEnoughSharesError(index, exc.have, exc.need) from None
    except ShardIntegrityError as exc:
        raise ShardIntegrityError(index, exc.share, exc.reason) from None
    if key is None:
        return stored
    is_last = index == len(manifest.segments) - 1
    return decrypt_segment(key, index, is_last, stored)


def _check_share(manifest: Manifest, index: int, share: int, data: Buffer) -> None:
    info = manifest.segments[index]
    if len(data) != info.shard_size:
        raise ShardIntegrityError(index, share, f"{len(data)} bytes, expected {info.shard_size}")
    if MerkleTree.build(data, manifest.params.leaf_size).root.hex() != info.shard_ids[share]:
        raise ShardIntegrityError(index, share, "bytes do not hash to the recorded shard id")


def decode_object(
    manifest: Manifest,
    fetch: Callable[[int, SegmentInfo], Mapping[int, Buffer]],
    key: bytes | None = None,
    *,
    sealed: bool = False,
) -> Iterator[bytes | bytearray]:
    """Yield the object's plaintext segment by segment (its stored bytes with ``sealed``);
    ``fetch`` supplies shares for each."""
    for index, info in enumerate(manifest.segments):
        yield decode_segment_shares(manifest, index, fetch(index, info), key, sealed=sealed)
