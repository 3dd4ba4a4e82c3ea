"""An object's health, as ``subnet check`` shows it (after ``tahoe check``).

Per segment: how many of its m shares are healthy now, by the repairer's own definition
(:func:`validator.repair.healthy_shares`: nothing here decides what healthy means), and
when one of its shares last passed a challenge. An object is

- ``healthy`` when every segment has all m shares;
- ``at_risk`` when some segment has fewer than m but at least k (still readable; repair
  restores it if there are miners on enough distinct hosts to take the missing shares);
- ``lost`` when some segment has fewer than k (that segment cannot be read or rebuilt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from validator.models import Placement, Segment, Shard, StoredObject
from validator.repair import CHUNK, healthy_shares

STATUSES = ("healthy", "at_risk", "lost")


def status_of(shares: Sequence[int], k: int, m: int) -> str:
    """``healthy``, ``at_risk`` or ``lost`` for an object whose segments hold ``shares``."""
    fewest = min(shares, default=m)
    return "lost" if fewest < k else "at_risk" if fewest < m else "healthy"


@dataclass(frozen=True, slots=True)
class ObjectHealth:
    id: str
    name: str
    size: int
    k: int
    m: int
    shares: tuple[int, ...]  # healthy shares of each segment, in segment order
    last_verified: datetime | None  # the latest passed challenge of any of its shares

    @property
    def status(self) -> str:
        return status_of(self.shares, self.k, self.m)

    @property
    def at_risk(self) -> list[int]:
        """Segments short of a share (readable or not)."""
        return [index for index, n in enumerate(self.shares) if n < self.m]

    @property
    def lost(self) -> list[int]:
        return [index for index, n in enumerate(self.shares) if n < self.k]

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "k": self.k,
            "m": self.m,
            "status": self.status,
            "segments": len(self.shares),
            "shares": list(self.shares),
            "fewest_shares": min(self.shares, default=self.m),
            "at_risk_segments": self.at_risk,
            "lost_segments": self.lost,
            "last_verified": self.last_verified.isoformat() if self.last_verified else None,
        }


def objects_health(
    session: Session, objects: Sequence[StoredObject], unseen_after: float
) -> list[ObjectHealth]:
    """The health of ``objects`` (committed rows the caller may see), in the given order."""
    cutoff = datetime.now(UTC) - timedelta(seconds=unseen_after)
    by_object: dict[str, list[tuple[int, int]]] = {o.id: [] for o in objects}  # (index, id)
    ids = list(by_object)
    for at in range(0, len(ids), CHUNK):
        rows = session.execute(
            select(Segment.object_id, Segment.index, Segment.id).where(
                Segment.object_id.in_(ids[at : at + CHUNK])
            )
        )
        for object_id, index, segment_id in rows:
            by_object[object_id].append((index, segment_id))
    segment_ids = [sid for segments in by_object.values() for _, sid in segments]
    healthy: dict[int, int] = {}
    verified: dict[int, datetime] = {}
    for at in range(0, len(segment_ids), CHUNK):
        chunk = segment_ids[at : at + CHUNK]
        shares = healthy_shares(session, chunk, cutoff)
        healthy.update((sid, len(shards)) for sid, shards in shares.items())
        passed = session.execute(
            select(Shard.segment_id, func.max(Placement.last_challenged_at))
            .join(Placement, Placement.shard_id == Shard.id)
            .where(Shard.segment_id.in_(chunk), Placement.last_verdict == "pass")
            .group_by(Shard.segment_id)
        )
        verified.update((sid, _aware(when)) for sid, when in passed if when is not None)
    report = []
    for row in objects:
        segments = sorted(by_object[row.id])
        times = [verified[sid] for _, sid in segments if sid in verified]
        report.append(
            ObjectHealth(
                id=row.id,
                name=row.name,
                size=row.size,
                k=row.k,
                m=row.m,
                shares=tuple(healthy.get(sid, 0) for _, sid in segments),
                last_verified=max(times, default=None),
            )
        )
    return report


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
