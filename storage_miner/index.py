"""The miner's shard index: which shards it holds for whom, and how many bytes that is.

It is the miner's only walk-free source of truth (it also keeps the dashboard's per-minute
challenge history, so that survives a restart). A shard counts as stored once its row is
committed here, which happens after its bytes and tree are durably in place, and before the
signed receipt goes out. ``used_bytes`` is kept incrementally in the same transactions, so a
start reads one row instead of walking the store.

SQLite from the standard library, in WAL mode with ``synchronous=FULL``: an acknowledged
shard survives a crash or power loss. One connection, guarded by a lock, because callers
arrive from worker threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

SCHEMA_VERSION = 1
ShardState = Literal["ok", "quarantined", "trash"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
    namespace   TEXT NOT NULL,
    shard_id    TEXT NOT NULL,
    size        INTEGER NOT NULL,
    stored_at   REAL NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('ok', 'quarantined', 'trash')),
    state_at    REAL NOT NULL,
    scrubbed_at REAL,
    reason      TEXT,
    PRIMARY KEY (namespace, shard_id)
);
CREATE INDEX IF NOT EXISTS shards_by_state ON shards (state, state_at);
CREATE INDEX IF NOT EXISTS shards_by_scrub ON shards (state, scrubbed_at);
CREATE TABLE IF NOT EXISTS totals (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals (name, value) VALUES ('used_bytes', 0), ('shard_count', 0);
-- The dashboard's challenge history: one row per minute. A table only added, never read by
-- the shard paths, so the schema version stays 1 (an older miner ignores it).
CREATE TABLE IF NOT EXISTS challenge_minutes (
    start          REAL PRIMARY KEY,
    ok             INTEGER NOT NULL,
    failed         INTEGER NOT NULL,
    latency_ms_sum REAL NOT NULL,
    batches        INTEGER NOT NULL
);
"""
_COLUMNS = "namespace, shard_id, size, stored_at, state, state_at, scrubbed_at, reason"


@dataclass(frozen=True, slots=True)
class ShardRecord:
    namespace: str
    shard_id: str
    size: int
    stored_at: float
    state: ShardState
    state_at: float
    scrubbed_at: float | None
    reason: str | None


class MinuteRecord(NamedTuple):
    """A minute of the challenge batches the miner answered (the dashboard's history)."""

    start: float
    ok: int
    failed: int
    latency_ms_sum: float
    batches: int


class IndexVersionError(RuntimeError):
    """The index was written by a newer miner than this one."""


class ShardIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise IndexVersionError(
                f"{path} has index schema {version}; this miner reads up to {SCHEMA_VERSION}. "
                "Upgrade the miner."
            )
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # Cached so capacity checks on the event loop never touch the disk.
            self._used = self._total("used_bytes")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _total(self, name: str) -> int:
        (value,) = self._db.execute("SELECT value FROM totals WHERE name = ?", (name,)).fetchone()
        return int(value)

    @property
    def used_bytes(self) -> int:
        """Bytes held on the miner's storage: live, quarantined and trashed shards alike."""
        return self._used

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM shards GROUP BY state")
            found = {state: int(n) for state, n in rows}
        return {state: found.get(state, 0) for state in ("ok", "quarantined", "trash")}

    def get(self, namespace: str, shard_id: str) -> ShardRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM shards WHERE namespace = ? AND shard_id = ?",  # noqa: S608
                (namespace, shard_id),
            ).fetchone()
        return ShardRecord(*row) if row else None

    def add(self, namespace: str, shard_id: str, size: int, now: float) -> bool:
        """Record a stored shard; False if it was already live (an idempotent re-store).

        A trashed or quarantined shard comes back to life, its bytes already counted.
        """
        with self._lock:
            with self._transaction():
                row = self._db.execute(
                    "SELECT state FROM shards WHERE namespace = ? AND shard_id = ?",
                    (namespace, shard_id),
                ).fetchone()
                if row is not None and row[0] == "ok":
                    return False
                if row is not None:
                    self._db.execute(
                        "UPDATE shards SET state = 'ok', state_at = ?, reason = NULL, "
                        "stored_at = ? WHERE namespace = ? AND shard_id = ?",
                        (now, now, namespace, shard_id),
                    )
                    return True
                self._db.execute(
                    "INSERT INTO shards (namespace, shard_id, size, stored_at, state, state_at) "
                    "VALUES (?, ?, ?, ?, 'ok', ?)",
                    (namespace, shard_id, size, now, now),
                )
                self._bump(size, 1)
            self._used += size  # only once the insert has committed
        return True

    def set_state(
        self, namespace: str, shard_id: str, state: ShardState, now: float, reason: str | None
    ) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE shards SET state = ?, state_at = ?, reason = ? "
                "WHERE namespace = ? AND shard_id = ?",
                (state, now, reason, namespace, shard_id),
            )

    def mark_scrubbed(self, namespace: str, shard_id: str, now: float) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE shards SET scrubbed_at = ? WHERE namespace = ? AND shard_id = ?",
                (now, namespace, shard_id),
            )

    def remove(self, namespace: str, shard_id: str, only_if: ShardState | None = None) -> bool:
        """Forget a shard (and its bytes in the total); with ``only_if``, only in that state."""
        condition = " AND state = ?" if only_if else ""
        args = (namespace, shard_id, only_if) if only_if else (namespace, shard_id)
        with self._lock:
            with self._transaction():
                row = self._db.execute(
                    "DELETE FROM shards WHERE namespace = ? AND shard_id = ?"  # noqa: S608
                    f"{condition} RETURNING size",
                    args,
                ).fetchone()
                if row:
                    self._bump(-int(row[0]), -1)
            if row:
                self._used -= int(row[0])
        return row is not None

    def holders(self, shard_id: str) -> list[str]:
        """Namespaces holding ``shard_id`` in any state."""
        with self._lock:
            rows = self._db.execute("SELECT namespace FROM shards WHERE shard_id = ?", (shard_id,))
            return [ns for (ns,) in rows]

    def expired_trash(self, before: float, limit: int) -> list[ShardRecord]:
        return self._select("state = 'trash' AND state_at < ?", (before,), "state_at", limit)

    def quarantined(self, namespace: str | None = None, limit: int = 1000) -> list[ShardRecord]:
        if namespace is None:
            return self._select("state = 'quarantined'", (), "state_at", limit)
        return self._select(
            "state = 'quarantined' AND namespace = ?", (namespace,), "state_at", limit
        )

    def next_to_scrub(self, limit: int) -> list[ShardRecord]:
        """Live shards, least recently scrubbed (never-scrubbed first)."""
        return self._select("state = 'ok'", (), "scrubbed_at IS NOT NULL, scrubbed_at", limit)

    def _select(
        self, where: str, args: tuple[object, ...], order: str, limit: int
    ) -> list[ShardRecord]:
        # where/order are fixed fragments from this module, never caller input.
        query = f"SELECT {_COLUMNS} FROM shards WHERE {where} ORDER BY {order} LIMIT ?"  # noqa: S608
        with self._lock:
            return [ShardRecord(*row) for row in self._db.execute(query, (*args, limit))]

    def save_minutes(self, minutes: Iterable[MinuteRecord], forget_before: float) -> None:
        """Write these minutes of challenge history (each replaces its row: it holds the
        minute's whole total) and forget rows older than ``forget_before``."""
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO challenge_minutes "
                "(start, ok, failed, latency_ms_sum, batches) VALUES (?, ?, ?, ?, ?)",
                minutes,
            )
            self._db.execute("DELETE FROM challenge_minutes WHERE start < ?", (forget_before,))

    def minutes(self, since: float) -> list[MinuteRecord]:
        """The challenge history from ``since``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT start, ok, failed, latency_ms_sum, batches FROM challenge_minutes "
                "WHERE start >= ? ORDER BY start",
                (since,),
            )
            return [MinuteRecord(*row) for row in rows]

    def _bump(self, size: int, count: int) -> None:
        self._db.execute("UPDATE totals SET value = value + ? WHERE name = 'used_bytes'", (size,))
        self._db.execute("UPDATE totals SET value = value + ? WHERE name = 'shard_count'", (count,))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
