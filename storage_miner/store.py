"""Where shard bytes live: the ``ShardStore`` interface that both backends implement.

Stores are synchronous; the service calls them through ``asyncio.to_thread``. A shard is
addressed by a :class:`ShardKey`: the validator namespace that stored it and its id (the hex
Merkle root). Neither is ever used raw in a path or object name: both are validated, and
the namespace is hashed.

A write goes through a :class:`ShardWriter`: bytes are staged where no reader can see them,
and :meth:`ShardWriter.commit` makes the shard and its tree visible at once, durably. A
shard either exists whole, tree and all, or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from blake3 import blake3

_SHARD_ID = re.compile(r"[0-9a-f]{64}")
_SS58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{46,48}")


class StoreError(Exception):
    """Base of shard store errors."""


class ShardNotFound(StoreError):
    pass


class StoreUnavailable(StoreError):
    """The backend cannot be reached (an S3 endpoint down): nothing is lost, nothing can be
    served until it is back. The miner reports itself unhealthy meanwhile."""


class InvalidShardKey(StoreError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ShardKey:
    namespace: str  # the ss58 hotkey of the validator that stored the shard
    shard_id: str

    def __post_init__(self) -> None:
        if not _SHARD_ID.fullmatch(self.shard_id):
            raise InvalidShardKey("a shard id is 64 lowercase hex characters (a Merkle root)")
        if not _SS58.fullmatch(self.namespace):
            raise InvalidShardKey("a namespace is an ss58 hotkey address")

    @property
    def namespace_dir(self) -> str:
        """A fixed-width, filesystem-safe name for the namespace."""
        return blake3(self.namespace.encode()).hexdigest()[:32]

    @property
    def relative(self) -> str:
        """``<namespace>/<ab>/<cd>/<id>``: fanned out so no directory grows huge."""
        sid = self.shard_id
        return f"{self.namespace_dir}/{sid[:2]}/{sid[2:4]}/{sid}"


class ShardWriter(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def commit(self, tree: bytes) -> None:
        """Make the shard and its tree visible together, durably."""

    def abort(self) -> None:
        """Drop everything staged. Safe to call after commit or twice."""


class ShardStore(Protocol):
    """The contract both backends meet (see ``tests/storage_miner/test_store_contract.py``)."""

    def writer(self, key: ShardKey) -> ShardWriter: ...

    def exists(self, key: ShardKey) -> bool: ...

    def read(self, key: ShardKey, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start..end`` (end exclusive) in chunks; ShardNotFound if absent."""

    def open_file(self, key: ShardKey) -> BinaryIO | None:
        """The shard opened for reading if it is a local file, else None (an S3 object).

        A local file is sent with ``sendfile``: the kernel copies it to the socket, with no
        chunk crossing into Python. ShardNotFound if absent.
        """

    def read_leaves(self, key: ShardKey, leaf_size: int, indices: Sequence[int]) -> list[bytes]:
        """The given leaves, each ``leaf_size`` bytes except a short last one."""

    def read_tree(self, key: ShardKey) -> bytes: ...

    def trash(self, key: ShardKey) -> None:
        """Hide the shard from readers; :meth:`purge` removes it for good later."""

    def restore(self, key: ShardKey) -> None:
        """Undo :meth:`trash` (a re-store during the grace period)."""

    def purge(self, key: ShardKey) -> None:
        """Remove a trashed or quarantined shard's bytes. Idempotent."""

    def quarantine(self, key: ShardKey) -> None:
        """Move a corrupt shard aside: never served, kept for inspection until purged."""

    def clean_incoming(self) -> int:
        """Remove partial writes left by a crash; returns how many. Run at start."""
