"""Verified bytes: per miner, the bytes of its stored placements whose latest challenge
passed (what capacity, and so weight, is made of).

``miners.verified_bytes`` is a running total rather than a sum over the placements each round
(that sum reads every placement: seconds per round at 1M of them). Every writer that changes
whether a placement counts adds its change in the same transaction: the challenger's
verdicts (``challenger.py``), and repair and quarantines marking placements lost
(``repair.py``). The change is added in SQL (``verified_bytes = verified_bytes + :change``),
so two transactions changing one miner's total never overwrite each other's change.

Deleting an object (``Gateway.delete``) takes its counted placements off before they go by
cascade. The challenger also recounts every miner from the rows in its first round and every
``ChallengePolicy.verified_recount_rounds`` rounds after, so a writer that forgets cannot
leave a total wrong for long.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from validator.models import Miner, Placement, Shard


def counted(state: str, last_verdict: str | None) -> bool:
    """Whether a placement in this state, with this latest verdict, counts as verified."""
    return state == "stored" and last_verdict == "pass"


def counts(placement: Placement | None) -> bool:
    """Whether a placement's bytes count as verified."""
    return placement is not None and counted(placement.state, placement.last_verdict)


def add(session: Session, change: Mapping[int, int]) -> None:
    """Add ``change`` (miner id -> bytes gained, negative for lost) to the running totals."""
    # In id order, the order the ORM flushes miners rows and recount() locks them: two
    # transactions doing either never wait on each other's rows crosswise (a deadlock).
    rows = [{"miner": miner_id, "change": change[miner_id]} for miner_id in sorted(change)]
    rows = [row for row in rows if row["change"]]
    if rows:
        # Core executemany on the session's connection: one statement for all miners, and
        # the ORM's copies of these rows (stale now) are never written back over it.
        session.connection().execute(
            update(Miner)
            .where(Miner.id == bindparam("miner"))
            .values(verified_bytes=Miner.verified_bytes + bindparam("change")),
            rows,
        )


def recount(session: Session, miner_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Miner id -> verified bytes summed from the placements (every miner if ``miner_ids``
    is None; a miner with none counts 0).

    Every miner's row is locked first (PostgreSQL; SQLite has one writer anyway): a change
    another transaction added meanwhile is then either committed before the sum is read, and
    in it, or added after this transaction stores the sum, on top of it; never lost.
    """
    query = (
        select(Placement.miner_id, func.sum(Shard.size))
        .join(Shard, Shard.id == Placement.shard_id)
        .where(Placement.state == "stored", Placement.last_verdict == "pass")
        .group_by(Placement.miner_id)
    )
    if miner_ids is None:
        ids = list(session.scalars(select(Miner.id).order_by(Miner.id).with_for_update()))
    else:
        ids = list(miner_ids)
        query = query.where(Placement.miner_id.in_(ids))
    if not ids:
        return {}
    sums = dict(session.execute(query).all())
    return {miner_id: int(sums.get(miner_id) or 0) for miner_id in ids}


def store(session: Session, totals: Mapping[int, int]) -> None:
    """Set the running totals to ``totals`` (miner id -> bytes), e.g. a recount."""
    if totals:
        session.connection().execute(  # (rows locked by recount())
            update(Miner)
            .where(Miner.id == bindparam("miner"))
            .values(verified_bytes=bindparam("total")),
            [{"miner": miner_id, "total": total} for miner_id, total in totals.items()],
        )


def stored(session: Session, miner_ids: Iterable[int]) -> dict[int, int]:
    """Miner id -> its running total, as the database has it now."""
    ids = list(miner_ids)
    found: dict[int, int] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found.update(
            session.execute(select(Miner.id, Miner.verified_bytes).where(Miner.id.in_(chunk))).all()
        )
    return found
