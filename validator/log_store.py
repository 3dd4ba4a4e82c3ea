"""The challenge log in the validator's database: append signed entries, read them back.

One writer appends (the challenger): the head (last seq and entry hash) is read from the
table at the first append and kept in memory, and moves only after the rows are committed,
so a failed transaction leaves the chain where it was. Reads page by ``seq`` so millions of
rows stream without being held at once. Each append also adds to the per-miner figures
(``challenge_stats``) in the same transaction.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bittensor_wallet import Keypair
from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session, sessionmaker

from validator import challenge_stats
from validator.audit_log import LogEntry, chain_after
from validator.models import ChallengeRecord

HASH = 32
PAGE = 1000
# Seqs one filtered page looks through at most: a filter that matches rarely must not make
# one request read the whole log. The page then says where to go on from (``page``).
SCAN = 200_000


@dataclass(frozen=True, slots=True)
class LogFilter:
    miner: str | None = None
    verdict: str | None = None
    kind: str | None = None
    since: float | None = None  # unix seconds, on issued_at
    until: float | None = None
    shard_id: str | None = None

    def apply(self, query: Select[ChallengeRecord]) -> Select[ChallengeRecord]:
        c = ChallengeRecord
        for column, value in (
            (c.miner, self.miner),
            (c.verdict, self.verdict),
            (c.kind, self.kind),
            (c.shard_id, self.shard_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.since is not None:
            query = query.where(c.issued_at >= self.since)
        if self.until is not None:
            query = query.where(c.issued_at < self.until)
        return query


def to_row(entry: LogEntry) -> ChallengeRecord:
    return ChallengeRecord(**to_values(entry))


def to_values(entry: LogEntry, entry_hash: str | None = None) -> dict[str, Any]:
    """The row's columns, for a bulk insert; ``entry_hash`` if the caller has it already
    (hashing is the entry's JSON again, then BLAKE3)."""
    return {
        "seq": entry.seq,
        "validator": entry.validator,
        "miner": entry.miner,
        "shard_id": entry.shard_id,
        "kind": entry.kind,
        "nonce": entry.nonce,
        "indices": json.dumps(list(entry.indices)),
        "root": entry.root,
        "issued_at": entry.issued_at,
        "answered_at": entry.answered_at,
        "latency_ms": entry.latency_ms,
        "verdict": entry.verdict,
        "reason": entry.reason,
        "proof_digest": entry.proof_digest,
        "leaf_count": entry.leaf_count,
        "leaf_hashes": b"".join(bytes.fromhex(h) for h in entry.leaf_hashes),
        "proof": bytes.fromhex(entry.proof),
        "size": entry.size,
        "prev_hash": entry.prev_hash,
        "signature": entry.signature,
        "entry_hash": entry_hash or entry.entry_hash,
    }


def to_entry(row: ChallengeRecord) -> LogEntry:
    hashes = row.leaf_hashes
    return LogEntry(
        seq=row.seq,
        validator=row.validator,
        miner=row.miner,
        shard_id=row.shard_id,
        kind=row.kind,
        nonce=row.nonce,
        indices=tuple(json.loads(row.indices)),
        root=row.root,
        issued_at=row.issued_at,
        answered_at=row.answered_at,
        latency_ms=row.latency_ms,
        verdict=row.verdict,
        reason=row.reason,
        proof_digest=row.proof_digest,
        leaf_count=row.leaf_count,
        leaf_hashes=tuple(hashes[i : i + HASH].hex() for i in range(0, len(hashes), HASH)),
        proof=row.proof.hex(),
        size=row.size,
        prev_hash=row.prev_hash,
        signature=row.signature,
    )


class ChallengeLogStore:
    def __init__(self, sessions: sessionmaker[Session], keypair: Keypair) -> None:
        self.sessions = sessions
        self.keypair = keypair
        self._head: tuple[int, str] | None = None
        self._loaded = False
        self._lock = threading.Lock()

    def record(self, work: Callable[[Session], Sequence[LogEntry]]) -> list[LogEntry]:
        """One transaction: ``work`` updates state and returns entries, which are chained,
        signed and added; the head moves only once it all committed. Blocking."""
        with self._lock:
            try:
                with self.sessions.begin() as session:
                    if not self._loaded:
                        self._head = _last(session)
                        self._loaded = True
                    head = self._head
                    chained = []
                    rows = []
                    for entry in work(session):
                        signed = chain_after(head, entry, self.keypair)
                        chained.append(signed)
                        head = (signed.seq, signed.entry_hash)
                        rows.append(to_values(signed, head[1]))  # hashed once, not twice
                    if rows:  # one executemany, not an ORM object per entry
                        session.execute(insert(ChallengeRecord), rows)
                        # the per-miner figures, in the same transaction: never out of step
                        challenge_stats.add(session, challenge_stats.tally(map(_seen, chained)))
            except BaseException:
                self._loaded = False  # re-read the head: nothing chained here was kept
                raise
            self._head = head
            return chained

    def read(
        self, where: LogFilter = LogFilter(), *, after: int = -1, limit: int = PAGE
    ) -> list[LogEntry]:
        """Up to ``limit`` entries with seq > ``after``, in order."""
        with self.sessions() as session:
            query = where.apply(select(ChallengeRecord).where(ChallengeRecord.seq > after))
            rows = session.scalars(query.order_by(ChallengeRecord.seq).limit(limit))
            return [to_entry(row) for row in rows]

    def page(
        self, where: LogFilter = LogFilter(), *, after: int = -1, limit: int = PAGE
    ) -> tuple[list[LogEntry], int | None]:
        """Up to ``limit`` entries with seq > ``after``, looking through at most ``SCAN`` seqs
        when filtered; and the ``after`` a next page starts from (None: the log's end)."""
        if where == LogFilter():
            entries = self.read(where, after=after, limit=limit)
            return entries, entries[-1].seq if len(entries) == limit else None
        with self.sessions() as session:
            last = _last(session)
            query = where.apply(
                select(ChallengeRecord).where(
                    ChallengeRecord.seq > after, ChallengeRecord.seq <= after + SCAN
                )
            )
            rows = session.scalars(query.order_by(ChallengeRecord.seq).limit(limit))
            entries = [to_entry(row) for row in rows]
        if len(entries) == limit:
            return entries, entries[-1].seq
        looked_to = after + SCAN
        return entries, looked_to if last is not None and looked_to < last[0] else None

    def iterate(self, where: LogFilter = LogFilter(), *, after: int = -1) -> Iterator[LogEntry]:
        """Every matching entry, a page at a time."""
        while page := self.read(where, after=after):
            yield from page
            after = page[-1].seq

    def head(self) -> tuple[int, str] | None:
        with self.sessions() as session:
            return _last(session)

    def previous_hash(self, seq: int) -> str | None:
        """The entry hash before ``seq`` (what a reader starting there chains from)."""
        with self.sessions() as session:
            return session.scalar(
                select(ChallengeRecord.entry_hash).where(ChallengeRecord.seq == seq - 1)
            )


def _seen(entry: LogEntry) -> challenge_stats.Observation:
    return challenge_stats.Observation(
        entry.miner, entry.kind, entry.verdict, entry.issued_at, entry.latency_ms
    )


def _last(session: Session) -> tuple[int, str] | None:
    row = session.execute(
        select(ChallengeRecord.seq, ChallengeRecord.entry_hash)
        .order_by(ChallengeRecord.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])
