"""Verified bytes: per miner, the bytes of its stored placements whose latest challenge
passed (what capacity, and so weight, is made of).

``miners.verified_bytes`` is a running total rather than a sum over the placements each round
(that sum reads every placement: seconds per round at 1M of them). The database keeps it:
row triggers on ``placements`` (migration 0012) add a placement's ``size`` when it comes to
count and take it off when it stops, whoever changes the row and however: the challenger's
verdicts, repair, quarantine, an object's delete and a failed upload's rows going by
cascade. A trigger sees the row as it was and as it becomes, under the row's lock, so two
writers racing on one placement cannot both take it off (or add it twice), which writers
computing their own change from rows read earlier did.

Every change of a placement's (state, last_verdict), and what the triggers do with it:

- inserted ``(stored, None)`` by an upload or a repair: nothing until it passes;
- a challenge's pass -> ``(stored, pass)``: + its size, unless it had passed already;
- a timeout within containment -> ``(stored, contained[-read])``, a failure beyond it, a
  quarantine or a repair giving it up -> ``(lost, ...)``: - its size, if it counted;
- revived by a repair on its old miner -> ``(stored, None)``: - its size, if it counted;
- deleted (an object deleted, a failed or interrupted upload, by cascade): - its size, if
  it counted.

A shard's size never changes (its id is its Merkle root), and a miner's row is never
replaced or renamed (rows are matched by hotkey).

The challenger still recounts every miner from the rows in its first round and every
``ChallengePolicy.verified_recount_rounds`` rounds after: a check, not a repair of routine
drift. What it finds off (a row changed with the triggers missing, by hand or by a migration
that rebuilt the table) is logged as drift, not silently overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import bindparam, false, func, select, update
from sqlalchemy.orm import Session

from validator.models import Miner, Placement


def hold(session: Session, miner_ids: Iterable[int] | None = None) -> None:
    """Take these miners' rows (every miner's if None) for the transaction, in id order,
    before changing or deleting any of their placements.

    The triggers write a miner's row as its placements change, so a writer holds placement
    rows and then wants miner rows; one that took miner rows in another order could wait on
    a second writer that waits on it (a deadlock, seen as a delete racing a challenge
    round). Every writer of placements takes its miners first, in id order, so none ever
    waits holding what another needs. ``FOR NO KEY UPDATE``: an upload's new placements (a
    foreign key's share lock on their miners) do not wait. SQLite has one writer and no
    FOR UPDATE: a write takes its lock, and the reads after it then see what this
    transaction will change (nothing commits in between).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Miner).where(false()).values(verified_bytes=Miner.verified_bytes))
        return
    query = select(Miner.id).order_by(Miner.id).with_for_update(key_share=True)
    if miner_ids is None:
        session.scalars(query).all()
        return
    ids = sorted(set(miner_ids))
    for start in range(0, len(ids), 500):
        session.scalars(query.where(Miner.id.in_(ids[start : start + 500]))).all()


def recount(session: Session, miner_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Miner id -> verified bytes summed from the placements (every miner if ``miner_ids``
    is None; a miner with none counts 0).

    The miners' rows are held first (:func:`hold`): a change another transaction's trigger
    added meanwhile is then either committed before the sum is read, and in it (READ
    COMMITTED reads the sum after the wait), or added after this transaction stores the
    sum, on top of it; never lost.
    """
    query = (
        select(Placement.miner_id, func.sum(Placement.size))
        .where(Placement.state == "stored", Placement.last_verdict == "pass")
        .group_by(Placement.miner_id)
    )
    chosen = None if miner_ids is None else sorted(set(miner_ids))
    hold(session, chosen)
    if chosen is None:
        ids = list(session.scalars(select(Miner.id).order_by(Miner.id)))
    else:
        ids = chosen
        query = query.where(Placement.miner_id.in_(ids))
    if not ids:
        return {}
    sums = dict(session.execute(query).all())
    return {miner_id: int(sums.get(miner_id) or 0) for miner_id in ids}


def store(session: Session, totals: Mapping[int, int]) -> dict[int, int]:
    """Set the running totals to ``totals`` (miner id -> bytes, from :func:`recount`, whose
    locks this relies on); returns miner id -> how far its running total was off (only the
    miners that were)."""
    drift = {
        miner_id: running - totals[miner_id]
        for miner_id, running in stored(session, totals).items()
        if running != totals[miner_id]
    }
    if drift:
        session.connection().execute(
            update(Miner)
            .where(Miner.id == bindparam("miner"))
            .values(verified_bytes=bindparam("total")),
            [{"miner": miner_id, "total": totals[miner_id]} for miner_id in sorted(drift)],
        )
    return drift


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
