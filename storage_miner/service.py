"""The miner's behaviour, independent of HTTP: store, read, delete, prove, report.

Every blocking step (disk, S3, hashing) runs in a worker thread; this class only
coordinates. Errors are the domain's own (:mod:`storage_miner.store`,
:mod:`storage_miner.prover`, and the ones below); the HTTP layer maps them to statuses.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from bittensor_wallet import Keypair

from erasure import MerkleBuilder, MerkleTree
from erasure.params import MAX_LEAF_SIZE, MIN_LEAF_SIZE
from protocol.wire import StorageReceipt
from storage_miner.health import StoreHealth
from storage_miner.index import ShardIndex, ShardRecord
from storage_miner.prover import ChallengeAnswer, ChallengeRejected, TreeCache, answer
from storage_miner.settings import MinerSettings
from storage_miner.store import ShardKey, ShardNotFound, ShardStore, ShardWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

WRITE_BATCH = 4 * 1024 * 1024  # hand the disk and the hasher ~4 MiB at a time
VERSION = "0.1.0"


class CapacityExceeded(Exception):
    pass


class NotYourShard(Exception):
    """The shard exists, but another validator stored it."""


class BadUpload(ValueError):
    pass


class ShardTooLarge(BadUpload):
    pass


@dataclass(frozen=True, slots=True)
class Challenge:
    shard_id: str
    nonce: str
    indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ChallengeOutcome:
    challenge: Challenge
    answer: ChallengeAnswer | None
    error: str | None  # "not_found", "not_yours" or why the challenge was refused


async def _absorb(
    writer: ShardWriter,
    builder: MerkleBuilder,
    size: int,
    body: AsyncIterator[bytes],
    seal: Callable[[MerkleTree], T],
) -> T:
    """Hash and stage exactly ``size`` bytes of ``body`` off the event loop, then ``seal`` the
    finished tree in the same thread hop as the last batch.

    Each hop is a thread wake-up and a GIL hand-over, the largest part of a miner's CPU per
    upload (py-spy), so batches are large and the end is one hop, not three.
    """

    def stage(batch: list[bytes]) -> None:
        # Chunk by chunk rather than joined: a joined copy would be a fresh mapping whose
        # every page faults in (large buffers are mmapped: protocol/memory.py).
        for chunk in batch:
            builder.update(chunk)
            writer.write(chunk)

    def stage_and_seal(batch: list[bytes]) -> T:
        stage(batch)
        if builder.size != size:
            raise BadUpload(f"body ended after {builder.size} of {size} bytes")
        return seal(builder.finish())

    pending: list[bytes] = []
    held = 0
    async for chunk in body:
        if builder.size + held + len(chunk) > size:
            raise BadUpload(f"body is longer than the declared {size} bytes")
        pending.append(chunk)
        held += len(chunk)
        if held >= WRITE_BATCH:
            await asyncio.to_thread(stage, pending)
            pending, held = [], 0
    return await asyncio.to_thread(stage_and_seal, pending)


def _close_opened(opening: asyncio.Future[BinaryIO | None]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        file = opening.result()
        if file is not None:
            file.close()


class MinerService:
    def __init__(
        self,
        settings: MinerSettings,
        keypair: Keypair,
        store: ShardStore,
        index: ShardIndex,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.keypair = keypair
        self.store = store
        self.index = index
        self.trees = TreeCache(settings.tree_cache)
        self.clock = clock
        self._reserved = 0  # bytes of uploads in flight, counted against capacity
        unavailable = str(getattr(store, "unavailable", ""))  # the S3 store's first probe
        self.health = StoreHealth(ok=not unavailable, detail=unavailable)

    @property
    def hotkey(self) -> str:
        return self.keypair.ss58_address

    def _receipt(
        self, validator: str, shard_id: str, size: int, stored_at: float
    ) -> StorageReceipt:
        receipt = StorageReceipt(
            miner=self.hotkey,
            validator=validator,
            shard_id=shard_id,
            size=size,
            root=shard_id,
            stored_at=stored_at,
        )
        return receipt.signed_by(self.keypair)

    async def _own(self, validator: str, shard_id: str) -> tuple[ShardKey, ShardRecord]:
        """A live shard of ``validator``'s, or NotYourShard / ShardNotFound."""
        key = ShardKey(validator, shard_id)
        record = await asyncio.to_thread(self.index.get, validator, shard_id)
        if record is not None and record.state == "ok":
            return key, record
        holders = await asyncio.to_thread(self.index.holders, shard_id)
        if any(ns != validator for ns in holders):
            raise NotYourShard(shard_id)
        raise ShardNotFound(shard_id)

    async def store_shard(
        self,
        validator: str,
        shard_id: str,
        *,
        size: int,
        leaf_size: int,
        body: AsyncIterator[bytes],
        check_root: Callable[[str], None],
    ) -> tuple[StorageReceipt, bool]:
        """Stream a shard in; returns its receipt and whether it was newly stored.

        ``check_root`` raises if the bytes' Merkle root is not what the caller signed; it runs
        before anything becomes visible.
        """
        key = ShardKey(validator, shard_id)
        if not (MIN_LEAF_SIZE <= leaf_size <= MAX_LEAF_SIZE and leaf_size & (leaf_size - 1) == 0):
            raise BadUpload(f"leaf_size must be a power of two in {MIN_LEAF_SIZE}..{MAX_LEAF_SIZE}")
        if size > self.settings.max_shard_size:
            raise ShardTooLarge(
                f"a shard is at most {self.settings.max_shard_size} bytes; this one is {size}"
            )
        if size <= 0:
            raise BadUpload("a shard has at least one byte")
        record = await asyncio.to_thread(self.index.get, validator, shard_id)
        if record is not None and record.state == "ok":
            return self._receipt(validator, shard_id, record.size, record.stored_at), False
        if record is not None and record.state == "trash":
            # Stored again within the grace period: bring the old bytes back.
            await asyncio.to_thread(self.store.restore, key)
            if await asyncio.to_thread(self.store.exists, key):
                now = self.clock()
                await asyncio.to_thread(self.index.add, validator, shard_id, record.size, now)
                return self._receipt(validator, shard_id, record.size, now), True
        if record is not None and record.state == "quarantined":
            await asyncio.to_thread(self.store.purge, key)  # its bytes stay counted once
        if record is None:
            self._reserve(size)
        try:
            now = await self._write(key, size, leaf_size, body, check_root)
        finally:
            if record is None:
                self._reserved -= size
        self.trees.forget(key)
        return self._receipt(validator, shard_id, size, now), True

    def _reserve(self, size: int) -> None:
        used = self.index.used_bytes + self._reserved
        if used + size > self.settings.capacity:
            free = max(0, self.settings.capacity - used)
            raise CapacityExceeded(
                f"this miner advertises {self.settings.capacity} bytes and has {free} free; "
                f"a {size}-byte shard does not fit"
            )
        self._reserved += size

    async def _write(
        self,
        key: ShardKey,
        size: int,
        leaf_size: int,
        body: AsyncIterator[bytes],
        check_root: Callable[[str], None],
    ) -> float:
        """Stream the shard in, commit it and index it; returns when it was stored."""
        writer = await asyncio.to_thread(self.store.writer, key)

        def seal(tree: MerkleTree) -> float:  # in the thread of the last batch
            check_root(tree.root.hex())
            writer.commit(tree.to_bytes())
            now = self.clock()
            self.index.add(key.namespace, key.shard_id, size, now)
            return now

        try:
            return await _absorb(writer, MerkleBuilder(leaf_size), size, body, seal)
        except BaseException:
            # Also on cancellation (a client that hung up): no partial file stays behind.
            await asyncio.shield(asyncio.to_thread(writer.abort))
            raise

    async def stat(self, validator: str, shard_id: str) -> ShardRecord:
        """The index record of a live shard of ``validator``'s."""
        _, record = await self._own(validator, shard_id)
        return record

    async def open_shard(self, validator: str, shard_id: str) -> BinaryIO | None:
        """A live shard's local file, for ``sendfile``; None where the store keeps no files."""
        key, _ = await self._own(validator, shard_id)
        opening = asyncio.ensure_future(asyncio.to_thread(self.store.open_file, key))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The reader hung up while the thread was opening it: close it once it is open.
            opening.add_done_callback(_close_opened)
            raise

    async def read_shard(
        self, validator: str, shard_id: str, start: int, end: int | None
    ) -> tuple[int, AsyncIterator[bytes]]:
        """The shard's total size, and its bytes ``start..end`` as an async stream."""
        key, record = await self._own(validator, shard_id)
        chunks = await asyncio.to_thread(self.store.read, key, start, end)
        # Open it now: a shard lost behind the index's back is a 404, not a cut-off body.
        first = await asyncio.to_thread(next, chunks, None)

        async def stream() -> AsyncIterator[bytes]:
            if first is None:
                return
            yield first
            sentinel = object()
            while True:
                chunk = await asyncio.to_thread(next, chunks, sentinel)
                if chunk is sentinel:
                    return
                assert isinstance(chunk, bytes)
                yield chunk

        return record.size, stream()

    async def delete_shard(self, validator: str, shard_id: str) -> float:
        """Move the shard to the trash; returns when it will be purged."""
        key, _ = await self._own(validator, shard_id)
        now = self.clock()
        await asyncio.to_thread(self.store.trash, key)
        await asyncio.to_thread(
            self.index.set_state, validator, shard_id, "trash", now, "deleted by its validator"
        )
        self.trees.forget(key)
        return now + self.settings.trash_grace_seconds

    async def answer_challenges(
        self, validator: str, challenges: Sequence[Challenge]
    ) -> list[ChallengeOutcome]:
        return await asyncio.to_thread(self._answer_all, validator, challenges)

    def _answer_all(
        self, validator: str, challenges: Sequence[Challenge]
    ) -> list[ChallengeOutcome]:
        outcomes = []
        for challenge in challenges:
            key = ShardKey(validator, challenge.shard_id)
            record = self.index.get(validator, challenge.shard_id)
            if record is None or record.state != "ok":
                others = any(ns != validator for ns in self.index.holders(challenge.shard_id))
                outcomes.append(
                    ChallengeOutcome(challenge, None, "not_yours" if others else "not_found")
                )
                continue
            try:
                reply = answer(self.store, self.trees, key, challenge.indices)
            except ChallengeRejected as exc:
                outcomes.append(ChallengeOutcome(challenge, None, str(exc)))
            except ShardNotFound:
                outcomes.append(ChallengeOutcome(challenge, None, "not_found"))
            else:
                outcomes.append(ChallengeOutcome(challenge, reply, None))
        return outcomes

    async def purge_expired(self) -> int:
        """Remove trashed shards whose grace period is over; returns how many."""
        before = self.clock() - self.settings.trash_grace_seconds
        expired = await asyncio.to_thread(self.index.expired_trash, before, 1000)
        for record in expired:
            key = ShardKey(record.namespace, record.shard_id)
            await asyncio.to_thread(self.store.purge, key)
            await asyncio.to_thread(self.index.remove, record.namespace, record.shard_id, "trash")
        return len(expired)

    def info(self) -> dict[str, object]:
        used = self.index.used_bytes
        counts = self.index.counts()
        return {
            "hotkey": self.hotkey,
            "version": VERSION,
            "backend": self.settings.backend,
            "capacity": self.settings.capacity,
            # What the disk under data_dir has free (fs backend; None for S3): a capacity
            # beyond used + disk_free is a promise the disk cannot keep.
            "disk_free": disk_free(self.settings),
            "used": used,
            "free": max(0, self.settings.capacity - used - self._reserved),
            "shards": counts["ok"],
            "quarantined": counts["quarantined"],
            "trashed": counts["trash"],
        }


def disk_free(settings: MinerSettings) -> int | None:
    """Free bytes on the disk holding the shards, or None when they are not on it (S3)."""
    if settings.backend != "fs":
        return None
    return shutil.disk_usage(settings.data_dir).free


def capacity_warning(settings: MinerSettings, used: int) -> str | None:
    """Why the advertised capacity cannot be met, if it cannot (see ``runner.serve``)."""
    free = disk_free(settings)
    if free is None or settings.capacity <= used + free:
        return None
    return (
        f"--capacity {settings.capacity:,} bytes is more than this disk can hold "
        f"({used:,} used + {free:,} free under {settings.data_dir}): writes will fail with "
        "the disk full before the capacity is reached; lower --capacity or free the disk"
    )
