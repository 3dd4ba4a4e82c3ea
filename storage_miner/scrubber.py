"""The scrubber: re-hash stored shards at a bounded I/O rate, and set corrupt ones aside.

A shard whose bytes no longer hash to its id (bit rot, truncation, a tampered file) is
quarantined: never served again, listed in ``/v1/quarantine`` and ``/v1/info`` so its
validator can repair it. A shard that vanished from the backend is quarantined too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from erasure import MerkleBuilder, MerkleTree, TreeFormatError
from storage_miner.index import ShardIndex, ShardRecord
from storage_miner.store import ShardKey, ShardNotFound, ShardStore

log = logging.getLogger(__name__)


def find_corruption(store: ShardStore, key: ShardKey) -> str | None:
    """Why the stored shard is bad, or None if its bytes and tree both match its id."""
    try:
        tree = MerkleTree.from_bytes(store.read_tree(key))
        builder = MerkleBuilder(tree.leaf_size)
        for chunk in store.read(key):
            builder.update(chunk)
    except ShardNotFound:
        return "shard or its tree is missing from the store"
    except TreeFormatError as exc:
        return f"saved tree is unreadable: {exc}"
    rebuilt = builder.finish()
    if rebuilt.size != tree.size:
        return f"shard holds {rebuilt.size} bytes, {tree.size} were stored"
    if rebuilt.root.hex() != key.shard_id:
        return "shard bytes do not hash to the shard id"
    if rebuilt.levels != tree.levels:
        return "saved tree does not match the shard bytes"
    return None


@dataclass(frozen=True, slots=True)
class ScrubPass:
    checked: int
    bytes_read: int
    quarantined: tuple[str, ...]


def quarantine(store: ShardStore, index: ShardIndex, record: ShardRecord, reason: str) -> None:
    key = ShardKey(record.namespace, record.shard_id)
    store.quarantine(key)
    index.set_state(record.namespace, record.shard_id, "quarantined", time.time(), reason)
    log.warning(
        "shard quarantined",
        extra={"shard_id": record.shard_id, "validator": record.namespace, "reason": reason},
    )


def scrub_batch(store: ShardStore, index: ShardIndex, limit: int) -> ScrubPass:
    """Check the ``limit`` least recently scrubbed live shards."""
    bad: list[str] = []
    total = 0
    records = index.next_to_scrub(limit)
    for record in records:
        reason = find_corruption(store, ShardKey(record.namespace, record.shard_id))
        total += record.size
        if reason is None:
            index.mark_scrubbed(record.namespace, record.shard_id, time.time())
        else:
            quarantine(store, index, record, reason)
            bad.append(record.shard_id)
    return ScrubPass(checked=len(records), bytes_read=total, quarantined=tuple(bad))


async def run_scrubber(
    store: ShardStore,
    index: ShardIndex,
    *,
    bytes_per_second: int,
    idle_seconds: float = 30.0,
    on_pass: Callable[[ScrubPass], None] = lambda _p: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Scrub forever, one shard at a time, sleeping so reads average ``bytes_per_second``."""
    while True:
        try:
            result = await asyncio.to_thread(scrub_batch, store, index, 1)
        except Exception:  # a backend hiccup must not end the loop; it is logged and retried
            log.exception("scrub pass failed; retrying after a pause")
            await sleep(idle_seconds)
            continue
        on_pass(result)
        if result.checked == 0:
            await sleep(idle_seconds)
        else:
            await sleep(result.bytes_read / bytes_per_second)
