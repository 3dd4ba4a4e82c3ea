"""Uploads: a stream in, encoded segments out, shards placed on miners, one commit.

The erasure pipeline is synchronous and CPU-bound, so it runs in a worker thread fed by a
small bounded queue of chunks; coded segments come back through a one-slot asyncio queue.
Both queues block their producer when full, so memory stays bounded whatever the object's
size: a few chunks, the segments the encoder holds, and the segment being pushed.

Each segment's m shards go to m miners picked by :mod:`validator.placement`, pushed
concurrently; a failed push is retried on a replacement miner (Storj's long tail). The
segment needs ``k + r`` signed receipts; shares still missing go to the repair queue. The
object becomes visible (``committed``) only after every segment has its receipts; any
failure removes its rows and asks the miners to drop what they got.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import queue
import random
import threading
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from erasure import EncodedSegment, ErasureParams, ObjectEncoder
from protocol.memory import trim
from protocol.wire import StorageReceipt
from validator import verified
from validator.budget import (
    BODY_QUEUE,
    LEAST_DEPTH,
    Depth,
    TransferBudget,
    download_charge,
    upload_window,
)
from validator.miner_client import MinerAddress, MinerClient, MinerError
from validator.models import Miner, Placement, RepairItem, Segment, Shard, StoredObject
from validator.placement import Candidate, pick, rank

log = logging.getLogger(__name__)

PUSH_ATTEMPTS = 3  # miners tried per shard before it goes to the repair queue
# A push slower than this is given up and the shard goes to a spare miner: a hung miner
# must not hold a segment (and the upload) for MinerClient's whole timeout.
PUSH_FLOOR_SECONDS = 10.0
PUSH_MIN_BYTES_PER_SECOND = 2_000_000
SEGMENTS_IN_FLIGHT = 2  # segments being pushed at once, per upload, when memory allows
UPLOAD_SLOTS = 2  # uploads encoding at once (CPU); memory is the budget's to bound
SLOT_PARTS = 64  # an upload smaller than a segment takes its share of a slot, >= 1/64
ABANDON_TRIES, ABANDON_FIRST_DELAY = 7, 0.25  # a failed upload's rows: ~16 s of retries


def push_deadline(size: int) -> float:
    return PUSH_FLOOR_SECONDS + size / PUSH_MIN_BYTES_PER_SECOND


class UploadError(Exception):
    """The upload cannot go on; ``code`` is a stable reason for the HTTP layer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class UploadOptions:
    params: ErasureParams
    extra_receipts: int = 1  # r: a segment needs k + r receipts to count as stored
    encrypt: bool = True
    keep_key: bool = False  # keep the key in the validator's database (else: capability only)
    # The body is ciphertext the client sealed (erasure.seal_segments): coded as it is; the
    # validator never has the key. Otherwise the validator seals when ``encrypt``.
    presealed: bool = False
    content_hash: str | None = None  # of the body, as signed; checked before the commit
    mode: int | None = None  # the uploaded file's permission bits, for downloads to restore
    # The body's length when known (Content-Length): what its slot weighs, and each
    # segment goes on as soon as it is cut, and a small object asks the budget for what
    # it is. A hint: the caller refuses a body of another length before the commit.
    declared_size: int | None = None

    @property
    def sealed_by(self) -> str:
        return "client" if self.presealed else "validator" if self.encrypt else "none"


@dataclass(frozen=True, slots=True)
class UploadResult:
    object_id: str
    name: str
    size: int
    segments: int
    capability: str
    queued_for_repair: int
    k: int
    m: int
    fewest_shares: int  # shares stored for the segment that got fewest (m: fully redundant)
    segments_short: int  # segments stored with fewer than m shares

    @property
    def redundancy_warning(self) -> str | None:
        """What the uploader must know when it got less redundancy than m, else None."""
        if self.segments_short == 0:
            return None
        spare = self.fewest_shares - self.k
        return (
            f"{self.segments_short} of {self.segments} segments stored with "
            f"{self.fewest_shares} of {self.m} shares (fewer miners on distinct hosts than "
            f"m={self.m}): it survives {spare} lost share{'s' if spare != 1 else ''}, not "
            f"{self.m - self.k}; run more miners, each on its own host (--external-host), "
            "and repair adds the missing shares"
        )


def _window_bytes(options: UploadOptions, depth: Depth) -> int:
    return upload_window(
        options.params,
        depth,
        size=options.declared_size,
        presealed=options.presealed,
        seals=options.encrypt and not options.presealed,
    )


def now() -> datetime:
    return datetime.now(UTC)


class Uploader:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        miners: MinerClient,
        candidates: Callable[[], Sequence[Candidate]],
        *,
        rng: random.Random | None = None,
        workers: int = 2,
        network_prefix: int = 0,
        slots_per_user: int = 1,
        budget: TransferBudget | None = None,
    ) -> None:
        self.sessions = sessions
        self.miners = miners
        self.candidates = candidates
        self.network_prefix = network_prefix  # placement's hard network rule (0: off)
        self.rng = rng or random.Random()  # noqa: S311 - placement spread, not a secret
        self.workers = workers
        self.slots = UploadSlots(UPLOAD_SLOTS, slots_per_user)
        self.budget = budget  # segments in hand, shared with downloads (None: unbounded)

    async def upload(
        self,
        owner_id: int,
        name: str,
        body: AsyncIterator[bytes],
        options: UploadOptions,
        before_commit: Callable[[], str | None] = lambda: None,
        in_commit: Callable[[Session, str], None] | None = None,
    ) -> UploadResult:
        """Store ``body`` as ``name``; ``before_commit`` may still refuse (e.g. a bad hash),
        or name the body's content hash (``"<algorithm>:<hex>"``) when only its end told it
        (a trailer).
        ``in_commit(session, object_id)`` runs in the commit's own transaction (rows that
        make the object visible elsewhere, as the S3 API's): both land, or neither.

        A body that fails (the client hung up, or stalled: the body raises) ends the upload
        at once: its rows go, its name is free, its miners are asked to drop what they got.
        """
        object_id = await asyncio.to_thread(self._begin, owner_id, name, options)
        pushed: list[tuple[MinerAddress, str]] = []
        try:
            # A slot is taken only once the body flows: a client that sends nothing (it is
            # timed out by the body's own pace) holds no slot meanwhile.
            first = await anext(body, None)
            parts = UploadSlots.parts(options.declared_size, options.params.segment_size)
            async with (
                self.slots.hold(owner_id, parts),
                self._window(owner_id, options) as depth,
            ):
                flowing = _resumed(first, body)
                return await self._run(
                    object_id, name, flowing, options, depth, pushed, before_commit, in_commit
                )
        except BaseException:
            await asyncio.shield(self._abandon(object_id, pushed))
            raise
        finally:
            await asyncio.to_thread(trim)

    @contextlib.asynccontextmanager
    async def _window(self, owner_id: int, options: UploadOptions) -> AsyncIterator[Depth]:
        """The deepest pipeline the budget grants this upload now (one grant, for its whole
        window: see ``validator/budget.py``), held until the upload ends."""
        deepest = Depth(self.workers, SEGMENTS_IN_FLIGHT)
        if self.budget is None:
            yield deepest
            return
        least = _window_bytes(options, LEAST_DEPTH)
        # Uploads leave downloads room for two segments in hand: an upload never waits on
        # them for long, but a download behind a long upload would.
        room = self.budget.total - 2 * download_charge(options.params)
        wish = max(least, min(_window_bytes(options, deepest), room))
        grant = await self.budget.take(owner_id, wish, least=least)
        try:
            choices = (deepest, Depth(self.workers, 1))
            fits = (d for d in choices if _window_bytes(options, d) <= grant.size)
            # A budget set below the least window (the settings refuse that) still runs.
            yield next(fits, LEAST_DEPTH)
        finally:
            grant.release()

    def _begin(self, owner_id: int, name: str, options: UploadOptions) -> str:
        params = options.params
        object_id = uuid.uuid4().hex
        try:
            with self.sessions.begin() as session:
                # Inserted first: the unique (owner, name) refuses a taken name, so the
                # usual case costs one statement; why it is taken is asked only then.
                session.execute(
                    insert(StoredObject).values(
                        id=object_id,
                        owner_id=owner_id,
                        name=name,
                        state="pending",
                        k=params.k,
                        m=params.m,
                        segment_size=params.segment_size,
                        leaf_size=params.leaf_size,
                        codec=params.codec,
                        encryption="aes-256-gcm" if options.encrypt else "none",
                        sealed_by=options.sealed_by,
                        content_hash=options.content_hash,
                        mode=options.mode,
                        created_at=now(),
                    )
                )
        except IntegrityError:
            with self.sessions() as session:
                existing = session.execute(
                    select(StoredObject.id, StoredObject.state).where(
                        StoredObject.owner_id == owner_id, StoredObject.name == name
                    )
                ).first()
            if existing is not None and existing.state == "committed":
                raise UploadError(
                    "already_exists",
                    f"{name!r} is already stored as {existing.id}; delete it to replace it",
                ) from None
            raise UploadError("upload_in_progress", f"{name!r} is being uploaded already") from None
        return object_id

    async def _run(
        self,
        object_id: str,
        name: str,
        body: AsyncIterator[bytes],
        options: UploadOptions,
        depth: Depth,
        pushed: list[tuple[MinerAddress, str]],
        before_commit: Callable[[], str | None],
        in_commit: Callable[[Session, str], None] | None,
    ) -> UploadResult:
        encoder = ObjectEncoder(
            options.params,
            encrypt=options.encrypt,
            workers=depth.workers,
            presealed=options.presealed,
            size_hint=options.declared_size,
        )
        bridge = _EncodingBridge(encoder, asyncio.get_running_loop())
        encoding = asyncio.create_task(_in_own_thread(bridge.run))
        feeding = asyncio.create_task(bridge.feed(body))
        storing: set[asyncio.Task[int]] = set()
        stored: list[int] = []  # shares stored, per segment
        try:
            while True:
                # Push the next segment while the previous one's slowest miner finishes. A
                # slot is freed before the next segment is taken, so that no coded segment
                # waits here on top of those in the queue (memory: docs/benchmarks.md).
                # Each wait also watches the body: when it fails the upload ends now, not
                # after waiting for a segment that will never come.
                while len(storing) >= depth.in_flight:
                    done, storing = await _pushes_done(storing, feeding)
                    stored += _collect(done)
                if (item := await _next_segment(bridge.segments, feeding)) is None:
                    break
                if isinstance(item, Exception):
                    raise item
                storing.add(
                    asyncio.create_task(self._store_segment(object_id, item, options, pushed))
                )
            for task in asyncio.as_completed(storing):
                stored.append(await task)
            storing.clear()
            await feeding
        finally:
            bridge.stop.set()  # every blocking step on both sides polls this
            feeding.cancel()
            # Let pushes in flight finish (each is bounded by attempts and timeouts) rather
            # than cancel them: a cancelled push can still land, and would then leak.
            await asyncio.gather(encoding, feeding, *storing, return_exceptions=True)
        content_hash = before_commit() or options.content_hash
        manifest = encoder.manifest()
        capability = encoder.capability()
        await asyncio.to_thread(
            self._commit,
            object_id,
            manifest.to_json().decode(),
            manifest.verifier_hash().hex(),
            manifest.size,
            encoder.key if options.keep_key else None,
            content_hash,
            in_commit,
        )
        return UploadResult(
            object_id=object_id,
            name=name,
            size=manifest.size,
            segments=len(manifest.segments),
            capability=str(capability),
            queued_for_repair=sum(options.params.m - n for n in stored),
            k=options.params.k,
            m=options.params.m,
            fewest_shares=min(stored, default=options.params.m),
            segments_short=sum(n < options.params.m for n in stored),
        )

    async def _store_segment(
        self,
        object_id: str,
        segment: EncodedSegment,
        options: UploadOptions,
        pushed: list[tuple[MinerAddress, str]],
    ) -> int:
        params = options.params
        ranked = rank(self.candidates(), segment.info.shard_size, self.rng)
        needed = params.k + options.extra_receipts
        hosts_with_room = len({c.host for c in ranked})
        if hosts_with_room < needed:
            # Shares of a segment go to distinct hosts, so count hosts, and say so.
            raise UploadError(
                "not_enough_miners",
                f"{len(ranked)} miners with room, on {hosts_with_room} distinct hosts; a "
                f"segment needs at least {needed} hosts (k={params.k} + r="
                f"{options.extra_receipts}): give each miner its own address "
                "(--external-host on the miner), add miners, or upload with a smaller k",
            )
        assigned = pick(ranked, params.m, network_prefix=self.network_prefix)
        hosts = {c.host for c in assigned}
        failed: set[str] = set()
        placed: dict[int, tuple[Candidate, StorageReceipt]] = {}

        async def push(share: int, target: Candidate | None) -> None:
            shard = segment.shards[share]
            for _ in range(PUSH_ATTEMPTS):
                if target is None:
                    spare = pick(
                        ranked,
                        1,
                        taken_hosts=hosts,
                        exclude=failed | _used(),
                        network_prefix=self.network_prefix,
                    )
                    if not spare:
                        return
                    target = spare[0]
                    hosts.add(target.host)
                address = MinerAddress(target.hotkey, target.host, target.port)
                pushed.append((address, shard.id))  # before the push: it may land regardless
                try:
                    async with asyncio.timeout(push_deadline(shard.size)):
                        receipt = await self.miners.put_shard(
                            address, shard.id, shard.pieces, shard.size, params.leaf_size
                        )
                except (MinerError, TimeoutError) as exc:
                    why = exc.kind if isinstance(exc, MinerError) else "timeout"
                    log.info("shard push failed", extra={"miner": target.hotkey, "why": why})
                    failed.add(target.hotkey)
                    hosts.discard(target.host)
                    target = None
                    continue
                placed[share] = (target, receipt)
                return

        def _used() -> set[str]:
            return {c.hotkey for c, _ in placed.values()}

        targets: list[Candidate | None] = [*assigned, *[None] * (params.m - len(assigned))]
        try:
            await asyncio.gather(*(push(i, t) for i, t in enumerate(targets)))
        finally:
            segment.release()  # every push has ended: its buffer cuts a later segment
        if len(placed) < needed:
            raise UploadError(
                "not_enough_receipts",
                f"segment {segment.index}: {len(placed)} miners stored a shard, "
                f"{needed} are needed; is the subnet short of healthy miners?",
            )
        await asyncio.to_thread(self._record_segment, object_id, segment, placed)
        return len(placed)

    def _record_segment(
        self,
        object_id: str,
        segment: EncodedSegment,
        placed: dict[int, tuple[Candidate, StorageReceipt]],
    ) -> None:
        # Core inserts, one statement per table: the ORM's unit of work cost more CPU than
        # anything else in a small upload (docs/benchmarks.md).
        info = segment.info
        stored_at = now()
        with self.sessions.begin() as session:
            segment_id = session.execute(
                insert(Segment)
                .values(
                    object_id=object_id,
                    index=segment.index,
                    size=info.size,
                    padding=info.padding,
                    shard_size=info.shard_size,
                )
                .returning(Segment.id)
            ).scalar_one()
            shard_rows = session.execute(
                insert(Shard).returning(Shard.id, sort_by_parameter_order=True),
                [
                    {"segment_id": segment_id, "share": s.share, "shard_id": s.id, "size": s.size}
                    for s in segment.shards
                ],
            ).scalars()
            row_of = dict(zip((s.share for s in segment.shards), shard_rows, strict=True))
            size_of = {s.share: s.size for s in segment.shards}
            hotkeys = [c.hotkey for c, _ in placed.values()]
            miner_of: dict[str, int] = dict(
                session.execute(
                    select(Miner.hotkey, Miner.id).where(Miner.hotkey.in_(hotkeys))
                ).all()
            )
            if placed:
                session.execute(
                    insert(Placement),
                    [
                        {
                            "shard_id": row_of[share],
                            "miner_id": miner_of[candidate.hotkey],
                            "state": "stored",
                            "size": size_of[share],  # what the verified-bytes triggers count
                            "receipt_json": _receipt_json(receipt),
                            "stored_at": stored_at,
                            "containment": 0,
                        }
                        for share, (candidate, receipt) in placed.items()
                    ],
                )
            missing = [row_of[s.share] for s in segment.shards if s.share not in placed]
            if missing:
                session.execute(
                    insert(RepairItem),
                    [
                        {"shard_id": sid, "reason": "not placed at upload", "created_at": stored_at}
                        for sid in missing
                    ],
                )

    def _commit(
        self,
        object_id: str,
        manifest: str,
        verifier: str,
        size: int,
        key: bytes | None,
        content_hash: str | None,
        in_commit: Callable[[Session, str], None] | None = None,
    ) -> None:
        with self.sessions.begin() as session:
            done = session.execute(
                update(StoredObject)
                .where(StoredObject.id == object_id)
                .values(
                    manifest_json=manifest,
                    verifier=verifier,
                    size=size,
                    key=key,
                    content_hash=content_hash,
                    state="committed",
                    committed_at=now(),
                )
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise UploadError("gone", "the upload was removed while it ran")
            if in_commit is not None:
                in_commit(session, object_id)

    async def recover(self) -> int:
        """Abandon uploads a previous process left ``pending`` (it died mid-upload): their
        rows go, and their miners are asked to drop what was placed. Run before serving."""

        def interrupted() -> dict[str, list[tuple[MinerAddress, str]]]:
            with self.sessions() as session:
                found: dict[str, list[tuple[MinerAddress, str]]] = {
                    oid: []
                    for oid in session.scalars(
                        select(StoredObject.id).where(StoredObject.state == "pending")
                    )
                }
                rows = session.execute(
                    select(Segment.object_id, Miner.hotkey, Miner.host, Miner.port, Shard.shard_id)
                    .join(Shard, Shard.segment_id == Segment.id)
                    .join(Placement, Placement.shard_id == Shard.id)
                    .join(Miner, Miner.id == Placement.miner_id)
                    .join(StoredObject, StoredObject.id == Segment.object_id)
                    .where(StoredObject.state == "pending")
                )
                for object_id, hotkey, host, port, shard_id in rows:
                    found[object_id].append((MinerAddress(hotkey, host, port), shard_id))
                return found

        pending = await asyncio.to_thread(interrupted)
        for object_id, pushed in pending.items():
            await self._abandon(object_id, pushed)
        if pending:
            log.warning("abandoned uploads interrupted by a restart", extra={"count": len(pending)})
        return len(pending)

    async def _abandon(self, object_id: str, pushed: list[tuple[MinerAddress, str]]) -> None:
        """Remove a failed upload's rows, then ask miners to drop its shards.

        The upload may have failed because the database did (a restart): removing the rows
        is retried for a while, since a ``pending`` row left behind keeps its name refused
        (``upload_in_progress``) until the validator restarts and ``recover`` runs. Shards
        are dropped only once the rows are gone: never the data of a row still listed."""
        delay = ABANDON_FIRST_DELAY
        for attempt in range(1, ABANDON_TRIES + 1):
            try:
                await asyncio.to_thread(self._delete_rows, object_id)
                break
            except SQLAlchemyError:
                if attempt == ABANDON_TRIES:
                    # The commit may have landed though its reply was lost: a row we could
                    # not remove may be a listed object, so its shards stay. A row still
                    # ``pending`` is cleaned, shards too, by ``recover`` at the next start.
                    log.exception(
                        "could not remove a failed upload's rows; its name stays taken and "
                        "its shards kept until the validator restarts",
                        extra={"object": object_id},
                    )
                    return
                await asyncio.sleep(delay)
                delay *= 2
        results = await asyncio.gather(
            *(self.miners.delete_shard(address, sid) for address, sid in pushed),
            return_exceptions=True,
        )
        leaked = sum(isinstance(r, Exception) for r in results)
        if leaked:
            log.warning("could not delete all shards of a failed upload", extra={"left": leaked})

    def _delete_rows(self, object_id: str) -> None:
        with self.sessions.begin() as session:
            # Its placements go by cascade, and a challenge may have passed them meanwhile:
            # the triggers take that off (validator/verified.py), their miners held first.
            held = session.scalars(
                select(Placement.miner_id)
                .join(Shard, Shard.id == Placement.shard_id)
                .join(Segment, Segment.id == Shard.segment_id)
                .where(Segment.object_id == object_id)
            )
            verified.hold(session, set(held))
            session.execute(delete(StoredObject).where(StoredObject.id == object_id))


class UploadSlots:
    """At most ``total`` slots of uploads encode at once, and at most ``per_user`` of them
    one user's: one user's many uploads (or slow ones) cannot keep everyone else waiting.

    A slot bounds memory: a large upload's pipeline holds several segments (the one being
    filled, those the encoder codes, the one queued, two being pushed), with their check
    shares. An upload declared smaller than a segment has one segment, of its own size: its
    buffer, sealed copy and check shares, about half what a large one holds at most. So it
    takes ``declared / (2 * segment_size)`` of a slot (at least ``1 / SLOT_PARTS``): boto3's
    ten concurrent 8 MiB parts, or a client's sixteen small PUTs, then run side by side
    rather than one after another (alone, each waits mostly on its miners' fsyncs), while
    large uploads still go two at once (docs/benchmarks.md, the S3 API).
    """

    def __init__(self, total: int, per_user: int) -> None:
        self._budget = TransferBudget(total * SLOT_PARTS, per_user * SLOT_PARTS)
        self.held = 0  # uploads holding a slot or part of one

    @staticmethod
    def parts(declared: int | None, segment_size: int) -> int:
        """Parts of a slot an upload takes: all of them unless its declared size is less
        than a segment (an unknown size is a whole slot)."""
        if declared is None or declared >= segment_size:
            return SLOT_PARTS
        return max(1, -(-declared * SLOT_PARTS // (2 * segment_size)))

    @contextlib.asynccontextmanager
    async def hold(self, user: int, parts: int = SLOT_PARTS) -> AsyncIterator[None]:
        grant = await self._budget.take(user, parts)
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1
            grant.release()


async def _in_own_thread(fn: Callable[[], None]) -> None:
    """``fn()`` in a thread of its own. The encoder's bridge blocks for a whole upload: in
    the default executor (a handful of threads) a few concurrent uploads would take every
    worker, and the body's hashing and the database work they wait on could never run."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not done.done():
            done.set_exception(error) if error is not None else done.set_result(None)

    def run() -> None:
        error: BaseException | None = None
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits it
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="upload-encoder", daemon=True).start()
    await asyncio.shield(done)


async def _resumed(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield first
    async for chunk in rest:
        yield chunk


def _collect(done: set[asyncio.Task[int]]) -> list[int]:
    """Finished pushes' results; the first failure raised, after every task's outcome is
    taken (else asyncio logs the others as never retrieved)."""
    failures = [error for task in done if (error := task.exception()) is not None]
    if failures:
        raise failures[0]
    return [task.result() for task in done]


def _raise_if_failed(feeding: asyncio.Task[None]) -> None:
    if feeding.done():
        feeding.result()  # the body's own error: a hang-up, a stalled body, a bad length


async def _pushes_done(
    storing: set[asyncio.Task[int]], feeding: asyncio.Task[None]
) -> tuple[set[asyncio.Task[int]], set[asyncio.Task[int]]]:
    """(finished, still running) once a push finishes; raises if the body fails first."""
    _raise_if_failed(feeding)
    watched: set[asyncio.Future[Any]] = set(storing)
    if not feeding.done():
        watched.add(feeding)
    await asyncio.wait(watched, return_when=FIRST_COMPLETED)
    _raise_if_failed(feeding)
    done = {task for task in storing if task.done()}
    return done, storing - done


async def _next_segment(
    segments: asyncio.Queue[EncodedSegment | Exception | None], feeding: asyncio.Task[None]
) -> EncodedSegment | Exception | None:
    """The encoder's next item; raises if the body fails first (the encoder then never
    hands anything: it stops when the body does)."""
    _raise_if_failed(feeding)
    if feeding.done():
        return await segments.get()
    getter = asyncio.ensure_future(segments.get())
    try:
        await asyncio.wait({getter, feeding}, return_when=FIRST_COMPLETED)
        _raise_if_failed(feeding)
        return await getter
    finally:
        getter.cancel()  # a no-op once it has its item; a waiting get gives up no item


class _EncodingBridge:
    """Chunks from the event loop to the encoder thread, segments back, both bounded: the
    chunks by their bytes (:data:`~validator.budget.BODY_QUEUE`, part of the upload's
    grant), the segments by count.

    Every wait polls ``stop``, so when either side fails the other winds down promptly and
    no thread is left blocked on a queue nobody reads.
    """

    POLL = 0.1

    def __init__(self, encoder: ObjectEncoder, loop: asyncio.AbstractEventLoop) -> None:
        self.encoder = encoder
        self.loop = loop
        self.chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.queued = 0  # bytes in `chunks`, under `room`
        self.room = threading.Condition()
        self.segments: asyncio.Queue[EncodedSegment | Exception | None] = asyncio.Queue(1)
        self.stop = threading.Event()

    def _reserve(self, size: int, *, wait: bool) -> bool:
        """Count ``size`` more bytes as queued once they fit (a chunk larger than the bound
        goes alone); without ``wait``, False when they do not fit now."""
        with self.room:
            while self.queued and self.queued + size > BODY_QUEUE:
                if not wait or self.stop.is_set():
                    return False
                self.room.wait(self.POLL)
            self.queued += size
            return True

    async def feed(self, body: AsyncIterator[bytes]) -> None:
        async for chunk in body:
            if not self._reserve(len(chunk), wait=False):  # no thread hop while it keeps up
                await asyncio.to_thread(self._reserve, len(chunk), wait=True)
            self.chunks.put(chunk)
        self.chunks.put(None)

    def _source(self) -> Iterator[bytes]:
        while not self.stop.is_set():
            try:
                chunk = self.chunks.get(timeout=self.POLL)
            except queue.Empty:
                continue
            if chunk is None:
                return
            with self.room:
                self.queued -= len(chunk)
                self.room.notify()
            yield chunk

    def _hand(self, item: EncodedSegment | Exception | None) -> None:
        if self.stop.is_set():
            return
        put = self.segments.put(item)
        try:
            future = asyncio.run_coroutine_threadsafe(put, self.loop)
        except RuntimeError:  # the loop is closed (the process is stopping): nobody reads
            put.close()
            return
        while not self.stop.is_set():
            try:
                future.result(timeout=self.POLL)
            except concurrent.futures.TimeoutError:
                continue
            return
        future.cancel()

    def run(self) -> None:
        try:
            for segment in self.encoder.encode(self._source()):
                self._hand(segment)
                if self.stop.is_set():
                    return
            self._hand(None)
        except Exception as exc:  # noqa: BLE001 - handed to the event loop, which re-raises it
            self._hand(exc)


def _receipt_json(receipt: StorageReceipt) -> str:
    return json.dumps(receipt.to_dict(), sort_keys=True, separators=(",", ":"))
