"""Downloads: k shards per segment from the fastest miners, hedged, verified, decoded.

For each segment the validator asks k miners at once, preferring primary shares (which
decode for free) and miners that answered fast before. If they have not all answered after
``hedge_after`` seconds it asks ``hedge`` more (Storj's long tail, Sia's overdrive), and it
cancels whatever is still running once k good shares are in. Every share is hashed against
its shard id before use: a bad or missing one just means asking another miner. The next
segment is fetched while the current one streams out. When the k primaries are in and
nothing is to be decrypted, they are sent as they are, never joined into a segment copy.
A GET (``reuse_buffers``) reads shares into buffers it reuses from segment to segment
(:class:`~erasure.objects.SegmentBuffers`): a fresh 4 MiB buffer per share is a fresh
mapping the kernel zeroes page by page, most of a validator's page faults on a download.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from erasure import DecryptionError, Manifest, MerkleTree, decode_segment_shares
from erasure.objects import Buffer, SegmentBuffers
from protocol.memory import trim
from validator.budget import HEDGE, Grant, TransferBudget, download_charge
from validator.miner_client import MinerAddress, MinerClient, MinerError, ReadObserver
from validator.models import Placement, Segment, Shard, StoredObject

log = logging.getLogger(__name__)
OUT_CHUNK = 1024 * 1024  # bytes per write to a downloading client
# Once this much more has been written to the client, nothing written before it can still
# sit in the transport's queue, which holds at most its high-water mark (64 KiB by default)
# once the writer has drained: a segment's share buffers go back to be reused after that.
SENT_PAST = 4 * 64 * 1024


class DownloadError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Source:
    share: int
    shard_id: str
    miner: MinerAddress
    active: bool = True  # the miner answered the validator's last look; others go last


@dataclass(slots=True)
class _Lent:
    """What a download has lent its client: the buffers of the segment sent last, which
    views still queued to send may show, with the grant they are held under; and the bytes
    sent since (:data:`SENT_PAST`)."""

    buffers: list[bytearray] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    since: int = 0
    # This download's fetches waiting for the budget: while one does, no sent segment's
    # grant is held, or two downloads of one user could each hold one and wait for the
    # other's (their buffers are dropped, not reused).
    waiting: int = 0

    def lend(self, got: Fetched) -> None:
        """``got`` is sent: its buffers are lent with its grant; or, with none lent (it was
        decoded into a buffer of its own, or nothing is reused) or a fetch waiting for the
        budget, its grant goes back now."""
        if got.lent and not self.waiting:
            self.buffers += got.lent
            self.grants += [got.grant] if got.grant is not None else []
        elif got.grant is not None:
            got.grant.release()
        # Held here or nowhere: the stream's `got` lives on while the next one is awaited.
        got.lent.clear()
        self.since = 0

    def drop(self) -> None:
        """Let the buffers go (not reused) and give their grants back."""
        for grant in self.grants:
            grant.release()
        self.buffers, self.grants = [], []


@dataclass(slots=True)
class Fetched:
    """A segment in hand: what to send in order, the grant it is held under (None without a
    budget), and the pooled share buffers the pieces are views of."""

    pieces: list[Buffer]
    grant: Grant | None = None
    lent: list[bytearray] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    object_id: str
    name: str
    manifest: Manifest
    stored_key: bytes | None
    sources: tuple[tuple[Source, ...], ...]  # per segment: every stored copy of every share


class Downloader:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        miners: MinerClient,
        *,
        hedge_after: float = 0.5,
        hedge: int = HEDGE,
        reads: ReadObserver | None = None,
        budget: TransferBudget | None = None,
    ) -> None:
        self.sessions = sessions
        self.miners = miners
        self.budget = budget  # segments in hand, shared by every download (None: unbounded)
        self.reads = reads  # told what each fetch brought: evidence for the miner's scores
        self.hedge_after = hedge_after
        self.hedge = hedge
        self.latency: dict[str, float] = {}  # EWMA seconds per miner hotkey

    def plan(self, object_id: str) -> ObjectPlan:
        """Everything needed to fetch a committed object (run in a thread)."""
        with self.sessions() as session:
            row = session.get(StoredObject, object_id)
            if row is None or row.state != "committed" or row.manifest_json is None:
                raise DownloadError("not_found", f"no stored object {object_id}")
            segments = session.scalars(
                select(Segment)
                .where(Segment.object_id == object_id)
                .order_by(Segment.index)
                .options(
                    selectinload(Segment.shards)
                    .selectinload(Shard.placements)
                    .selectinload(Placement.miner)
                )
            ).all()
            # Miners that did not answer the last look are asked last, not skipped: one
            # that came back since may hold the only shards left of a segment.
            sources = tuple(
                tuple(
                    Source(
                        s.share,
                        s.shard_id,
                        MinerAddress(p.miner.hotkey, p.miner.host, p.miner.port),
                        p.miner.active,
                    )
                    for s in segment.shards
                    for p in s.placements
                    if p.state == "stored"
                )
                for segment in segments
            )
            return ObjectPlan(
                row.id, row.name, Manifest.from_json(row.manifest_json), row.key, sources
            )

    async def stream(
        self,
        plan: ObjectPlan,
        key: bytes | None,
        start: int = 0,
        end: int | None = None,
        *,
        sealed: bool = False,
        reader: int = 0,
        reuse_buffers: bool = False,
    ) -> AsyncGenerator[memoryview, None]:
        """Plaintext bytes ``start..end`` (end exclusive), as views of each segment in turn;
        with ``sealed``, the stored bytes (the ciphertext a client sealed), in their offsets.

        Each segment in hand (the one being sent, the next one being fetched) holds a grant
        of the budget, taken for ``reader`` (a user id), until it has been sent, or, when
        its shares' buffers are reused, until they are taken back.

        ``reuse_buffers``: shares are read into buffers reused from segment to segment, so
        a view yielded is valid only until :data:`SENT_PAST` more bytes have been yielded.
        Only for a caller that writes each chunk out before it asks for the next
        (:func:`validator.streaming.send_stream`); a view kept longer would show later
        bytes."""
        manifest = plan.manifest
        total = manifest.stored_size if sealed else manifest.size
        end = total if end is None else min(end, total)
        seg_size = manifest.stored_segment_size if sealed else manifest.params.segment_size
        if start >= end:
            return
        first, last = start // seg_size, (end - 1) // seg_size
        # The shares in flight (hedged ones too), and a decoded segment beside them.
        decoded = not (sealed or not (key or plan.stored_key))
        charge = download_charge(manifest.params, hedge=self.hedge, decoded=decoded)
        # Every segment but the last has the first's shard size; they share these buffers.
        # A download's in-flight shares are at most two segments' worth (this one, the next).
        buffers = (
            SegmentBuffers(
                manifest.segments[first].shard_size, keep=2 * (manifest.params.k + self.hedge)
            )
            if reuse_buffers
            else None
        )

        lent = _Lent()

        def fetch(index: int) -> asyncio.Task[Fetched]:
            return asyncio.create_task(
                self._held_pieces(reader, charge, plan, index, key, sealed, buffers, lent)
            )

        ahead: asyncio.Task[Fetched] | None = None

        def fetch_ahead(index: int) -> None:
            nonlocal ahead
            if ahead is None and index < last:
                ahead = fetch(index + 1)

        try:
            for index in range(first, last + 1):
                current, ahead = ahead or fetch(index), None
                if not lent.buffers:  # nothing lent (the first segment): fetch ahead at once
                    fetch_ahead(index)
                got = await current
                try:
                    base = index * seg_size
                    for chunk in _chunks(got.pieces, max(start - base, 0), end - base):
                        yield chunk
                        lent.since += len(chunk)
                        if lent.buffers and lent.since >= SENT_PAST:
                            self._take_back(buffers, lent)
                        if not lent.buffers:
                            fetch_ahead(index)
                    # A segment shorter than SENT_PAST: the one before may still be queued
                    # to send, so its buffers are dropped, not reused, and its grant goes
                    # back before the next fetch (a third grant would wait on the two).
                    lent.drop()
                    fetch_ahead(index)
                finally:
                    got.pieces.clear()
                    lent.lend(got)
        finally:
            lent.drop()
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, DownloadError):
                    unsent = await ahead
                    if unsent.grant is not None:
                        unsent.grant.release()  # it was fetched before the cancel landed
            await asyncio.to_thread(trim)

    async def _held_pieces(
        self,
        reader: int,
        charge: int,
        plan: ObjectPlan,
        index: int,
        key: bytes | None,
        sealed: bool,
        buffers: SegmentBuffers | None,
        lent: _Lent,
    ) -> Fetched:
        """:meth:`pieces` under a grant of the budget, which the caller releases once sent
        (``lent``: the stream's lent buffers and grants, let go if this has to wait)."""
        grant = None
        if self.budget is not None:
            if self.budget.would_wait(reader, charge):
                if buffers is not None:
                    buffers.clear()  # no grant would count the free buffers meanwhile
                lent.drop()
            lent.waiting += 1
            try:
                grant = await self.budget.take(reader, charge)
            finally:
                lent.waiting -= 1
        try:
            fetched = await self.pieces(plan, index, key, sealed, buffers)
        except BaseException:
            if grant is not None:
                grant.release()
            raise
        fetched.grant = grant
        return fetched

    def _take_back(self, buffers: SegmentBuffers | None, lent: _Lent) -> None:
        """Buffers of a sent segment and the grant they were held under: the buffers are
        kept for the next fetch, or, when others wait for the budget (who will take this
        grant, so the next fetch will wait too), dropped, so that memory no grant counts
        is not held meanwhile."""
        if buffers is not None and self.budget is not None and self.budget.waiting:
            buffers.clear()
        else:
            _give_back(buffers, lent.buffers)
        lent.drop()

    async def pieces(
        self, plan: ObjectPlan, index: int, key: bytes | None, sealed: bool = False,
        buffers: SegmentBuffers | None = None,
    ) -> Fetched:  # fmt: skip
        """Segment ``index`` as buffers to send in order: its k primary shares as they came
        (trimmed of padding) when they all did and nothing is to be decrypted, so the
        segment is never joined into a copy; else the one decoded segment. Shares are read
        into ``buffers``' buffers where they fit; those the pieces are views of are lent to
        the caller (:attr:`Fetched.lent`), the rest go back at once."""
        manifest = plan.manifest
        k = manifest.params.k
        good: dict[int, bytes | bytearray] = {}
        try:
            await self._gather(plan, index, buffers, good)
        except BaseException:
            _give_back(buffers, good.values())
            raise
        size = manifest.segments[index].size
        if (sealed or not (manifest.encrypted or key or plan.stored_key)) and all(
            n in good for n in range(k)
        ):
            out: list[Buffer] = []
            for n in range(k):  # primaries are the stored bytes; the last ones are padded
                take = min(len(good[n]), size)
                out.append(memoryview(good[n])[:take] if take < len(good[n]) else good[n])
                size -= take
            pooled = [b for b in good.values() if isinstance(b, bytearray)] if buffers else []
            return Fetched(out, lent=pooled)
        try:
            decoded = await asyncio.to_thread(
                partial(decode_segment_shares, verify=False, sealed=sealed),
                manifest, index, good, key or plan.stored_key,
            )  # fmt: skip
        except DecryptionError:
            # The shards were verified against their ids, so only the key can be wrong: a
            # capability whose verifier matches (it is public) with another object's key.
            raise DownloadError(
                "wrong_key", f"that capability's key does not open {plan.name!r}"
            ) from None
        finally:
            _give_back(buffers, good.values())  # decoded into a buffer of its own
        return Fetched([decoded])

    async def _gather(
        self, plan: ObjectPlan, index: int, buffers: SegmentBuffers | None,
        good: dict[int, bytes | bytearray],
    ) -> None:  # fmt: skip
        """Fill ``good`` with k verified shares of segment ``index``, by share number;
        hedged as the module says."""
        manifest = plan.manifest
        k = manifest.params.k
        # Primaries first (no decoding), then by how fast each miner answered before; miners
        # seen down at the last look after all the others.
        ordered = sorted(
            plan.sources[index],
            key=lambda s: (not s.active, s.share >= k, self.latency.get(s.miner.hotkey, 0.5)),
        )
        waiting: set[asyncio.Task[tuple[Source, bytes | bytearray | None]]] = set()
        queue = list(ordered)

        def launch(count: int) -> None:
            while count > 0 and queue:
                source = queue.pop(0)
                if source.share in good or any(t.get_name() == str(source.share) for t in waiting):
                    continue
                task = asyncio.create_task(self._fetch(manifest, index, source, buffers))
                task.set_name(str(source.share))
                waiting.add(task)
                count -= 1

        launch(k)
        hedged = False
        try:
            while len(good) < k:
                if not waiting:
                    if not queue:
                        raise DownloadError(
                            "not_enough_shards",
                            f"segment {index} of {plan.name!r}: only {len(good)} of the {k} "
                            "shards needed could be fetched; too many miners are down",
                        )
                    launch(k - len(good))
                    continue
                timeout = None if hedged else self.hedge_after
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    hedged = True
                    launch(self.hedge)
                    continue
                for task in done:
                    waiting.discard(task)
                    source, data = task.result()
                    if data is not None and source.share not in good:
                        good[source.share] = data
                if len(good) + len(waiting) < k:
                    launch(k - len(good) - len(waiting))
        finally:
            for task in waiting:
                task.cancel()

    async def _fetch(
        self, manifest: Manifest, index: int, source: Source,
        buffers: SegmentBuffers | None = None,
    ) -> tuple[Source, bytes | bytearray | None]:  # fmt: skip
        """The share ``source`` holds, verified, or None; read into one of ``buffers``' when
        its size fits, which goes back to them unless it is the share returned."""
        size = manifest.segments[index].shard_size
        into = buffers.take() if buffers is not None and buffers.size == size else None
        try:
            found = await self._fetch_into(manifest, index, source, into)
        except BaseException:
            _give_back(buffers, [into])
            raise
        if found[1] is not into:
            _give_back(buffers, [into])
        return found

    async def _fetch_into(
        self, manifest: Manifest, index: int, source: Source, into: bytearray | None
    ) -> tuple[Source, bytes | bytearray | None]:
        started = time.perf_counter()
        try:
            size = manifest.segments[index].shard_size
            data = await self.miners.get_shard(source.miner, source.shard_id, size=size, into=into)
        except MinerError as exc:
            log.info("shard fetch failed", extra={"miner": source.miner.hotkey, "why": exc.kind})
            self.latency[source.miner.hotkey] = 10.0  # try it last next time
            if exc.status == 404:
                self._observe(source, served=False, why="missing")
            return source, None
        elapsed = time.perf_counter() - started
        previous = self.latency.get(source.miner.hotkey, elapsed)
        self.latency[source.miner.hotkey] = 0.7 * previous + 0.3 * elapsed
        info = manifest.segments[index]
        ok = len(data) == info.shard_size and await asyncio.to_thread(
            _matches, data, manifest.params.leaf_size, source.shard_id
        )
        if not ok:
            log.warning("miner served a corrupt shard", extra={"miner": source.miner.hotkey})
            self._observe(source, served=False, why="wrong")
            return source, None
        self._observe(source, served=True)
        return source, data

    def _observe(self, source: Source, *, served: bool, why: str = "") -> None:
        if self.reads is not None:
            self.reads(source.miner.hotkey, source.shard_id, served=served, why=why)


def _chunks(pieces: list[Buffer], lo: int, hi: int) -> Iterator[memoryview]:
    """Bytes ``lo..hi`` of a segment sent as ``pieces``, in views of at most OUT_CHUNK: a
    whole segment handed to the transport at once would be copied into its buffer, a fresh
    mapping every time."""
    at = 0
    for piece in pieces:
        view = memoryview(piece)[max(lo - at, 0) : max(min(hi - at, len(piece)), 0)]
        at += len(piece)
        for off in range(0, len(view), OUT_CHUNK):
            yield view[off : off + OUT_CHUNK]


def _give_back(buffers: SegmentBuffers | None, shares: Iterable[bytes | bytearray | None]) -> None:
    """Return pooled share buffers once nothing will read them (others are just dropped)."""
    if buffers is not None:
        for share in shares:
            if isinstance(share, bytearray):
                buffers.give(share)


def _matches(data: bytes | bytearray, leaf_size: int, shard_id: str) -> bool:
    return MerkleTree.build(data, leaf_size).root.hex() == shard_id


def _address(placement: Placement) -> MinerAddress:
    return MinerAddress(placement.miner.hotkey, placement.miner.host, placement.miner.port)
