"""Repair (DESIGN §7): rebuild the shares a segment lost and place them on new miners.

A segment's **health** is its healthy shares minus k: how many more shares it can lose and
still be read. A share is healthy when at least one of its placements is ``stored`` on a
miner that is registered and was seen within ``unseen_after`` seconds (a miner never
refreshed yet counts as seen, so a validator that just started does not repair everything;
one failed refresh is a blip, not a loss). A share stops being healthy when

- the challenger gave up on its placement (``lost``: failed beyond containment);
- its miner deregistered (``deregistered_at`` set by the metagraph sync) or went unseen
  too long;
- the miner's scrubber quarantined it (polled here, from ``GET /v1/quarantine``);
- it was never placed (the repair queue, from uploads).

``run_once`` polls quarantines, then takes up to ``max_segments`` segments whose health is
below ``threshold`` (None, the default: below m - k, i.e. repair as soon as one share is
unhealthy; a lower number repairs lazily and saves bandwidth), most at risk first. Per
segment it fetches k healthy shares (each hashed against its id), decodes the segment's
stored bytes with the object's codec (``objects.codec``: zfec or isal), re-encodes only the
missing share numbers with it, checks each against its recorded id, pushes it to a new
miner (placement rules as at upload, never a miner or IP holding a healthy share of the
segment; one whose copy was lost only when no other is free) and records the receipts in
one transaction: new
``stored`` placements, the replaced placements kept as ``lost`` (so a later object delete
still asks their miners to drop them), and the shares' repair-queue rows removed. Then it
asks the old miners to drop their copies, best effort.

A segment with fewer than k healthy shares cannot be rebuilt: it is logged as an error and
reported, and nothing is written. Memory is bounded by ``segments_at_once`` segments, each
holding k fetched shares and its rebuilt shares.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import ColumnElement, and_, case, delete, func, not_, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased, selectinload, sessionmaker

from erasure import MerkleBuilder, MerkleTree
from erasure.codec import DEFAULT_CODEC, check_stripes, decode_segment, primary_blocks
from protocol.wire import StorageReceipt
from validator import verified
from validator.audit_log import LogEntry
from validator.miner_client import (
    MinerAddress,
    MinerClient,
    MinerError,
    ReadObserver,
    gather_limited,
)
from validator.models import Miner, Placement, RepairItem, Segment, Shard, StoredObject
from validator.placement import Candidate, pick, rank

log = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview

PUSH_ATTEMPTS = 3  # miners tried per rebuilt shard, as at upload
MINERS_AT_ONCE = 16  # quarantine polls in flight
CALL_TIMEOUT = 10.0  # seconds for a quarantine poll or a best-effort delete
UNREPAIRABLE_LISTED = 100  # at-risk segments named in one report (all are counted)


class RebuildError(Exception):
    """A rebuilt share does not hash to its recorded id: the records or the code are wrong."""


# --- what a run reports ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentRef:
    object_id: str
    name: str
    segment: int  # index within the object
    healthy: int  # shares with a healthy placement
    k: int


AT_RISK_KEPT = 50  # segments the at-risk view keeps, most at risk first


@dataclass(frozen=True, slots=True)
class AtRisk:
    """Segments short of a healthy share at ``at`` (unix seconds): how many, and the
    ``AT_RISK_KEPT`` most at risk (fewest healthy shares beyond k first)."""

    at: float
    short: int
    most: list[SegmentRef]


def _at_risk(health: Mapping[int, tuple[SegmentRef, int]]) -> AtRisk:
    short = [ref for ref, m in health.values() if ref.healthy < m]
    short.sort(key=lambda ref: (ref.healthy - ref.k, ref.object_id, ref.segment))
    return AtRisk(time.time(), len(short), short[:AT_RISK_KEPT])


@dataclass(frozen=True, slots=True)
class ShardMove:
    """One share of a repaired segment: where it was lost and where it went."""

    share: int
    shard_id: str
    lost_from: tuple[tuple[str, str], ...]  # (miner hotkey, why) of its unhealthy placements
    placed_on: str | None  # the new miner's hotkey; None if it could not be placed
    receipt_json: str | None


@dataclass(frozen=True, slots=True)
class RepairEvent:
    """One segment's repair attempt: enough for an audit view and for metrics."""

    object_id: str
    segment: int
    outcome: str  # repaired | partial | failed
    reason: str
    health_before: int
    health_after: int
    sources: tuple[str, ...]  # miners the k shards were fetched from
    moves: tuple[ShardMove, ...]
    bytes_fetched: int
    bytes_pushed: int
    started_at: float  # unix seconds
    seconds: float


@dataclass
class RepairReport:
    segments_below_threshold: int = 0  # repairable ones found (before max_segments)
    segments_repaired: int = 0  # every missing share placed
    segments_partial: int = 0  # some placed
    segments_failed: int = 0  # none placed
    shards_rebuilt: int = 0
    bytes_fetched: int = 0
    bytes_pushed: int = 0
    quarantined: int = 0  # placements found quarantined by their miner and marked lost
    stale_queue_items: int = 0  # repair-queue rows whose shard was healthy again
    unrepairable_count: int = 0
    unrepairable: list[SegmentRef] = field(default_factory=list)  # the first ones
    events: list[RepairEvent] = field(default_factory=list)
    seconds: float = 0.0


class RepairMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.segments = Counter(
            "validator_repair_segments",
            "Segment repairs, by outcome (repaired, partial, failed).",
            ["outcome"],
            registry=registry,
        )
        self.shards = Counter(
            "validator_repair_shards_rebuilt", "Shards rebuilt and placed.", registry=registry
        )
        self.bytes = Counter(
            "validator_repair_bytes",
            "Repair traffic, by direction (fetched, pushed).",
            ["direction"],
            registry=registry,
        )
        self.quarantined = Counter(
            "validator_repair_quarantined",
            "Placements miners reported quarantined by their scrubber.",
            registry=registry,
        )
        self.unrepairable = Counter(
            "validator_repair_unrepairable",
            "Times a segment was found with fewer than k healthy shares.",
            registry=registry,
        )

    def observe(self, report: RepairReport) -> None:
        for event in report.events:
            self.segments.labels(event.outcome).inc()
        self.shards.inc(report.shards_rebuilt)
        self.bytes.labels("fetched").inc(report.bytes_fetched)
        self.bytes.labels("pushed").inc(report.bytes_pushed)
        self.quarantined.inc(report.quarantined)
        self.unrepairable.inc(report.unrepairable_count)


# --- a segment as the repair sees it -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Holder:
    placement_id: int
    miner_id: int
    address: MinerAddress
    why_unhealthy: str | None  # None: healthy


@dataclass(frozen=True, slots=True)
class _Share:
    row_id: int
    share: int
    shard_id: str
    holders: tuple[_Holder, ...]

    @property
    def healthy(self) -> list[_Holder]:
        return [h for h in self.holders if h.why_unhealthy is None]


@dataclass(frozen=True, slots=True)
class _Plan:
    segment_id: int
    object_id: str
    index: int
    k: int
    m: int
    size: int  # stored bytes (sealed), what the codec coded
    shard_size: int
    leaf_size: int
    codec: str
    shares: tuple[_Share, ...]
    miner_ids: Mapping[str, int]  # hotkey -> row id, healthy miners only

    @property
    def healthy_count(self) -> int:
        return sum(1 for s in self.shares if s.healthy)


@dataclass
class _Tally:
    """What one segment's repair did so far (filled in as it goes)."""

    started_at: float  # unix seconds
    started: float  # perf counter
    sources: tuple[str, ...] = ()
    fetched: int = 0
    pushed: int = 0
    placed: Mapping[int, tuple[Candidate, StorageReceipt]] = field(default_factory=dict)

    def event(self, plan: _Plan, missing: Sequence[_Share], reason: str) -> RepairEvent:
        moves = []
        for share in missing:
            lost = tuple((h.address.hotkey, h.why_unhealthy or "") for h in share.holders)
            home = self.placed.get(share.share)
            moves.append(
                ShardMove(
                    share=share.share,
                    shard_id=share.shard_id,
                    lost_from=lost,
                    placed_on=home[0].hotkey if home else None,
                    receipt_json=_receipt_json(home[1]) if home else None,
                )
            )
        placed = len(self.placed)
        outcome = "repaired" if placed == len(missing) else "partial" if placed else "failed"
        before = plan.healthy_count - plan.k
        return RepairEvent(
            object_id=plan.object_id,
            segment=plan.index,
            outcome=outcome,
            reason=reason,
            health_before=before,
            health_after=before + placed,
            sources=self.sources,
            moves=tuple(moves),
            bytes_fetched=self.fetched,
            bytes_pushed=self.pushed,
            started_at=self.started_at,
            seconds=time.perf_counter() - self.started,
        )


CHUNK = 500  # ids per IN (...) list


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def _healthy(
    deregistered_at: datetime | None, last_seen: datetime | None, cutoff: datetime
) -> bool:
    """``_healthy_miner`` in Python, for rows already read (``deregistered_at`` standing
    for every reason a miner is out: see :func:`_out_since`)."""
    return deregistered_at is None and (last_seen is None or _aware(last_seen) >= cutoff)


def _out_since() -> ColumnElement[datetime | None]:
    """When the miner stopped being trusted with the shares it holds, for whatever reason:
    it left the metagraph, was disqualified, or is suspended for not serving reads (one
    suspended for timeouts is offline: each of its shares follows its own challenges)."""
    not_serving = case((Miner.suspended_for == "serving", Miner.suspended_at), else_=None)
    return func.coalesce(Miner.deregistered_at, Miner.disqualified_at, not_serving)


def healthy_shares(
    session: Session, segment_ids: Sequence[int], cutoff: datetime
) -> dict[int, set[int]]:
    """Segment id -> the ids of its shards that are healthy (the definition in this module's
    docstring), for at most :data:`CHUNK` segments. The one place that says what a healthy
    share is: the repairer's choice and ``subnet check`` both read it."""
    healthy: dict[int, set[int]] = {segment_id: set() for segment_id in segment_ids}
    rows = session.execute(
        select(Shard.segment_id, Shard.id, Placement.state, _out_since(), Miner.last_seen)
        .join(Placement, Placement.shard_id == Shard.id)
        .join(Miner, Miner.id == Placement.miner_id)
        .where(Shard.segment_id.in_(list(segment_ids)))
    )
    for segment_id, shard_id, state, gone_at, seen in rows:
        if state == "stored" and _healthy(gone_at, seen, cutoff):
            healthy[segment_id].add(shard_id)
    return healthy


def _health_at_risk(session: Session, cutoff: datetime) -> dict[int, tuple[SegmentRef, int]]:
    """Segment id -> (its health, m), for every committed segment that may be short of a
    share.

    The conditions on low-cardinality columns (a placement's or an object's state) are
    checked here, not in SQL: without statistics (SQLite's default) the planner takes an
    index on such a column for a selective one and reads every stored placement.
    """
    shards = set(session.scalars(select(RepairItem.shard_id)))
    # A lost placement stays (a later delete asks its miner to drop it) after its share was
    # placed again; it matters only while its shard has no stored placement (one that is
    # stored on a miner gone bad is found through that miner below). Otherwise every share
    # ever repaired would be read again on every run.
    stored = aliased(Placement)
    replaced = (
        select(stored.id)
        .where(stored.shard_id == Placement.shard_id, stored.state == "stored")
        .exists()
    )
    shards.update(
        session.scalars(select(Placement.shard_id).where(Placement.state == "lost", not_(replaced)))
    )
    gone = session.scalars(select(Miner.id).where(not_(_healthy_miner(cutoff)))).all()
    for chunk in _chunks(gone):
        shards.update(
            session.scalars(select(Placement.shard_id).where(Placement.miner_id.in_(chunk)))
        )
    segments: set[int] = set()
    for chunk in _chunks(shards):
        segments.update(session.scalars(select(Shard.segment_id).where(Shard.id.in_(chunk))))
    health: dict[int, tuple[SegmentRef, int]] = {}
    for chunk in _chunks(segments):
        healthy = healthy_shares(session, chunk, cutoff)
        objects = session.execute(
            select(
                Segment.id, StoredObject.id, StoredObject.name, Segment.index, StoredObject.k,
                StoredObject.m, StoredObject.state,
            )
            .join(StoredObject, StoredObject.id == Segment.object_id)
            .where(Segment.id.in_(chunk))
        )  # fmt: skip
        for segment_id, object_id, name, index, k, m, state in objects:
            if state == "committed":
                health[segment_id] = (
                    SegmentRef(object_id, name, index, len(healthy[segment_id]), k),
                    m,
                )
    return health


def _why_unhealthy(miner: Miner, cutoff: datetime) -> str | None:
    if miner.deregistered_at is not None:
        return "deregistered"
    if miner.disqualified_at is not None:
        return "disqualified"
    if miner.suspended_for == "serving":
        return "suspended: not serving"
    if miner.last_seen is not None and _aware(miner.last_seen) < cutoff:
        return "unseen"
    return None


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _healthy_miner(cutoff: datetime) -> ColumnElement[bool]:
    return and_(
        Miner.deregistered_at.is_(None),
        Miner.disqualified_at.is_(None),
        or_(Miner.suspended_for.is_(None), Miner.suspended_for != "serving"),
        or_(Miner.last_seen.is_(None), Miner.last_seen >= cutoff),
    )


def _receipt_json(receipt: StorageReceipt) -> str:
    return json.dumps(receipt.to_dict(), sort_keys=True, separators=(",", ":"))


# --- the pure rebuild ----------------------------------------------------------------------


def rebuild_shares(
    shares: Mapping[int, Buffer],
    *,
    k: int,
    m: int,
    size: int,
    leaf_size: int,
    wanted: Mapping[int, str],
    codec: str = DEFAULT_CODEC,
) -> dict[int, tuple[Buffer, ...]]:
    """The pieces of each wanted share (number -> expected shard id) from any k ``shares``.

    The segment's stored bytes are decoded with ``codec`` (the object's), then only the
    wanted numbers are produced: primaries are views of the decoded bytes, check shares come
    from the codec stripe by stripe. Each is hashed and must equal its id, else
    :class:`RebuildError`.
    """
    stored = decode_segment(shares, k, m, size, codec)
    primaries = primary_blocks(stored, k)
    pieces: dict[int, list[Buffer]] = {n: [] for n in wanted}
    for n in wanted:
        if n < k:
            pieces[n].append(primaries[n])
    if any(n >= k for n in wanted):
        for _, checks in check_stripes(primaries, m, codec):
            for n in wanted:
                if n >= k:
                    pieces[n].append(checks[n - k])
    for n, expected in wanted.items():
        builder = MerkleBuilder(leaf_size)
        for piece in pieces[n]:
            builder.update(piece)
        root = builder.finish().root.hex()
        if root != expected:
            raise RebuildError(f"share {n} rebuilt to {root}, the records say {expected}")
    return {n: tuple(p) for n, p in pieces.items()}


# --- the repairer --------------------------------------------------------------------------


class Repairer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        miners: MinerClient,
        candidates: Callable[[], Sequence[Candidate]],
        *,
        threshold: int | None = None,
        unseen_after: float = 3 * 3600.0,
        max_segments: int = 32,
        segments_at_once: int = 2,
        retry_after: float = 300.0,
        metrics: RepairMetrics | None = None,
        rng: random.Random | None = None,
        network_prefix: int = 0,
        reads: ReadObserver | None = None,
    ) -> None:
        self.sessions = sessions
        self.miners = miners
        self.candidates = candidates
        self.network_prefix = network_prefix  # placement's hard network rule (0: off)
        self.reads = reads  # told what each fetch from a miner brought
        self.threshold = threshold  # repair when health < this; None: when < m - k
        self.unseen_after = unseen_after
        self.max_segments = max_segments
        self.segments_at_once = segments_at_once
        self.retry_after = retry_after  # a segment that could not be finished waits this long
        self.metrics = metrics
        self.rng = rng or random.Random()  # noqa: S311 - placement spread, not a secret
        self._busy: set[int] = set()  # segment ids being repaired, across concurrent runs
        self._retry_at: dict[int, float] = {}
        self._choosing = asyncio.Lock()  # two runs choosing at once could pick one segment
        # What the log last said of each segment a run could not finish, and of the set that
        # cannot be repaired at all: a state is logged when it changes, not on every run (a
        # net with fewer hosts than m would otherwise repeat it for every segment each run).
        self._stuck: dict[int, str] = {}
        self._unrepairable_logged: frozenset[int] = frozenset()
        self.last_at_risk: AtRisk | None = None  # what the latest run or look saw

    def at_risk(self, limit: int = AT_RISK_KEPT) -> AtRisk:
        """How many committed segments are short of a healthy share now, and the ``limit``
        most at risk (fewest healthy shares first), chosen as :meth:`run_once` chooses.
        Blocking. Each run remembers the same of what it saw (:attr:`last_at_risk`)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.unseen_after)
        with self.sessions() as session:
            health = _health_at_risk(session, cutoff)
        self.last_at_risk = _at_risk(health)
        return replace(self.last_at_risk, most=self.last_at_risk.most[:limit])

    def recent_at_risk(self, max_age: float) -> AtRisk:
        """What the last run (or look) saw if it is at most ``max_age`` seconds old, else a
        fresh look: a dashboard asking often costs at most one look per ``max_age``."""
        last = self.last_at_risk
        if last is not None and time.time() - last.at <= max_age:
            return last
        return self.at_risk()

    async def run_once(self) -> RepairReport:
        started = time.perf_counter()
        report = RepairReport()
        await self._poll_quarantines(report)
        async with self._choosing:
            now = time.monotonic()
            self._retry_at = {s: t for s, t in self._retry_at.items() if t > now}
            chosen = await asyncio.to_thread(self._choose, report, set(self._retry_at))
            self._busy.update(chosen)
        try:
            results = await gather_limited(
                self.segments_at_once, [self._repair(segment_id) for segment_id in chosen]
            )
        finally:
            self._busy.difference_update(chosen)
        stuck: dict[int, RepairEvent] = {}
        for segment_id, result in zip(chosen, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "repair of a segment crashed", exc_info=result, extra={"segment_id": segment_id}
                )
                self._retry_at[segment_id] = time.monotonic() + self.retry_after
                report.segments_failed += 1
                continue
            if result is None:
                continue  # healthy again, deleted, or short of k meanwhile
            if result.outcome == "repaired":
                self._stuck.pop(segment_id, None)
            else:
                stuck[segment_id] = result
            report.events.append(result)
            report.bytes_fetched += result.bytes_fetched
            report.bytes_pushed += result.bytes_pushed
            report.shards_rebuilt += sum(1 for mv in result.moves if mv.placed_on)
            if result.outcome == "repaired":
                report.segments_repaired += 1
            else:
                report.segments_partial += result.outcome == "partial"
                report.segments_failed += result.outcome == "failed"
                self._retry_at[segment_id] = time.monotonic() + self.retry_after
        self._log_stuck(stuck)
        report.seconds = time.perf_counter() - started
        if self.metrics:
            self.metrics.observe(report)
        return report

    def _log_stuck(self, stuck: Mapping[int, RepairEvent]) -> None:
        """One line per reason for the segments whose repair stopped short for a reason not
        logged for them before (the state changed); the rest at debug level."""
        changed: dict[str, list[RepairEvent]] = defaultdict(list)
        for segment_id, event in stuck.items():
            if self._stuck.get(segment_id) != event.reason:
                changed[event.reason].append(event)
            self._stuck[segment_id] = event.reason
        for reason, events in changed.items():
            log.warning(
                "segment repair incomplete",
                extra={
                    "segments": len(events),
                    "why": reason,
                    "first": [f"{e.object_id}/{e.segment}" for e in events[:5]],
                },
            )
        unchanged = len(stuck) - sum(len(e) for e in changed.values())
        if unchanged:
            log.debug("segment repair incomplete, as before", extra={"segments": unchanged})

    # --- quarantines ----------------------------------------------------------------------

    async def _poll_quarantines(self, report: RepairReport) -> None:
        """Ask every healthy miner holding our placements which of them its scrubber set
        aside, and mark those placements lost (queued for repair) in one transaction."""
        holders = await asyncio.to_thread(self._holders)
        replies = await gather_limited(
            MINERS_AT_ONCE, [self._quarantine(address) for _, address in holders]
        )
        found: dict[int, dict[str, str]] = {}
        for (miner_id, address), reply in zip(holders, replies, strict=True):
            if isinstance(reply, BaseException):
                log.info(
                    "quarantine poll failed",
                    extra={"miner": address.hotkey, "why": str(reply)[:200]},
                )
            elif reply:
                found[miner_id] = reply
        if found:
            report.quarantined = await asyncio.to_thread(self._mark_quarantined, found)

    def _holders(self) -> list[tuple[int, MinerAddress]]:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.unseen_after)
        with self.sessions() as session:
            rows = session.execute(
                select(Miner.id, Miner.hotkey, Miner.host, Miner.port)
                .where(
                    _healthy_miner(cutoff),
                    select(Placement.id)
                    .where(Placement.miner_id == Miner.id, Placement.state == "stored")
                    .exists(),
                )
                .order_by(Miner.id)
            ).all()
        return [(mid, MinerAddress(hk, host, port)) for mid, hk, host, port in rows]

    async def _quarantine(self, miner: MinerAddress) -> dict[str, str]:
        """shard id -> the scrubber's reason, for our shards this miner set aside."""
        async with asyncio.timeout(CALL_TIMEOUT):
            return await self.miners.quarantined(miner)

    def _mark_quarantined(self, found: Mapping[int, Mapping[str, str]]) -> int:
        marked = 0
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            verified.hold(session, found)  # before any placement changes (verified.hold)
            for miner_id, shards in found.items():
                rows = session.execute(
                    select(Placement, Miner.hotkey)
                    .join(Shard, Shard.id == Placement.shard_id)
                    .join(Miner, Miner.id == Placement.miner_id)
                    .where(
                        Placement.miner_id == miner_id,
                        Placement.state == "stored",
                        Shard.shard_id.in_(list(shards)),
                    )
                ).all()
                for placement, hotkey in rows:
                    placement.state = "lost"
                    placement.last_verdict = "quarantined"
                    marked += 1
                    queued = session.scalar(
                        select(RepairItem.id).where(RepairItem.shard_id == placement.shard_id)
                    )
                    if queued is None:
                        session.add(
                            RepairItem(
                                shard_id=placement.shard_id,
                                reason=f"quarantined by {hotkey}"[:255],
                                created_at=now,
                            )
                        )
                    # Flush per row: the same shard may be quarantined on two miners.
                    session.flush()
        if marked:
            log.warning("miners quarantined shards; queued for repair", extra={"count": marked})
        return marked

    # --- choosing segments ----------------------------------------------------------------

    def _choose(self, report: RepairReport, waiting: set[int]) -> list[int]:
        """Segments to repair this run, most at risk first; fills in the report's counts.

        Only segments that can be short of a healthy share are looked at: those with a shard
        in the repair queue, a placement given up on (``lost``), or a stored placement on a
        miner that is no longer healthy. Every query starts from that small side and uses
        one obvious index, so a run reads rows in proportion to what is or was at risk, not
        to everything stored, whatever statistics the database has.
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=self.unseen_after)
        with self.sessions.begin() as session:
            report.stale_queue_items = self._drop_stale_queue_items(session, cutoff)
            health = _health_at_risk(session, cutoff)
        self.last_at_risk = _at_risk(health)
        unrepairable = sorted(
            (ref for ref, _ in health.values() if ref.healthy < ref.k),
            key=lambda ref: (ref.object_id, ref.segment),
        )
        report.unrepairable_count = len(unrepairable)
        report.unrepairable = unrepairable[:UNREPAIRABLE_LISTED]
        # Said when the set changes, not every run (metrics count every run's).
        ids = frozenset(s for s, (ref, _) in health.items() if ref.healthy < ref.k)
        if ids != self._unrepairable_logged and unrepairable:
            log.error(
                "segments with fewer than k healthy shards cannot be repaired; "
                "their objects are at risk",
                extra={
                    "segments": report.unrepairable_count,
                    "first": [f"{r.object_id}/{r.segment}" for r in report.unrepairable[:5]],
                },
            )
        elif ids != self._unrepairable_logged:
            log.info("no segment is below k healthy shards any more")
        self._unrepairable_logged = ids
        # Forget segments no longer at risk (repaired elsewhere, deleted): memory stays
        # bounded by what is at risk now.
        self._stuck = {s: why for s, why in self._stuck.items() if s in health}
        extra = self.threshold
        repairable = [
            (ref.healthy, segment_id)
            for segment_id, (ref, m) in health.items()
            if ref.k <= ref.healthy < (m if extra is None else ref.k + extra)
        ]
        report.segments_below_threshold = len(repairable)
        skip = waiting | self._busy
        return [s for _, s in sorted(r for r in repairable if r[1] not in skip)][
            : self.max_segments
        ]

    @staticmethod
    def _drop_stale_queue_items(session: Session, cutoff: datetime) -> int:
        """Queue rows whose shard has a healthy placement again (e.g. a duplicate copy)."""
        queued = list(session.scalars(select(RepairItem.shard_id)))
        satisfied: set[int] = set()
        for chunk in _chunks(queued):
            rows = session.execute(
                select(Placement.shard_id, Placement.state, _out_since(), Miner.last_seen)
                .join(Miner, Miner.id == Placement.miner_id)
                .where(Placement.shard_id.in_(chunk))
            )
            satisfied.update(
                shard_id
                for shard_id, state, gone, seen in rows
                if state == "stored" and _healthy(gone, seen, cutoff)
            )
        dropped = 0
        for chunk in _chunks(satisfied):
            result = session.execute(delete(RepairItem).where(RepairItem.shard_id.in_(chunk)))
            dropped += int(getattr(result, "rowcount", 0) or 0)  # rows, as a shard may have two
        return dropped

    # --- one segment ----------------------------------------------------------------------

    def _plan(self, segment_id: int) -> _Plan | None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.unseen_after)
        with self.sessions() as session:
            segment = session.scalar(
                select(Segment)
                .where(Segment.id == segment_id)
                .options(
                    selectinload(Segment.object),
                    selectinload(Segment.shards)
                    .selectinload(Shard.placements)
                    .selectinload(Placement.miner),
                )
            )
            if segment is None or segment.object.state != "committed":
                return None
            shares = []
            for shard in sorted(segment.shards, key=lambda s: s.share):
                holders = []
                for p in shard.placements:
                    why = f"lost: {p.last_verdict}" if p.state != "stored" else None
                    why = why or _why_unhealthy(p.miner, cutoff)
                    address = MinerAddress(p.miner.hotkey, p.miner.host, p.miner.port)
                    holders.append(_Holder(p.id, p.miner_id, address, why))
                shares.append(_Share(shard.id, shard.share, shard.shard_id, tuple(holders)))
            miner_ids = {
                hotkey: mid
                for mid, hotkey in session.execute(
                    select(Miner.id, Miner.hotkey).where(_healthy_miner(cutoff))
                )
            }
            obj = segment.object
            return _Plan(
                segment_id=segment.id,
                object_id=obj.id,
                index=segment.index,
                k=obj.k,
                m=obj.m,
                size=segment.size,
                shard_size=segment.shard_size,
                leaf_size=obj.leaf_size,
                codec=obj.codec,
                shares=tuple(shares),
                miner_ids=miner_ids,
            )

    async def _repair(self, segment_id: int) -> RepairEvent | None:
        plan = await asyncio.to_thread(self._plan, segment_id)
        if plan is None:
            return None
        missing = [s for s in plan.shares if not s.healthy]
        if not missing or plan.healthy_count < plan.k:
            return None  # changed since it was chosen; the next run sees it as it is now
        tally = _Tally(started_at=time.time(), started=time.perf_counter())
        reason = await self._rebuild_and_place(plan, missing, tally)
        event = tally.event(plan, missing, reason)
        if event.outcome == "repaired":
            where = {"object_id": plan.object_id, "segment": plan.index, "why": reason}
            log.info("segment repaired", extra=where)
        return event  # one that stopped short is logged by run_once, once per change

    async def _rebuild_and_place(self, plan: _Plan, missing: list[_Share], tally: _Tally) -> str:
        """Fetch, rebuild, push, record; returns what happened, for the report."""
        # Pick homes before fetching anything: with none free, fetching would be wasted.
        ranked = [
            c
            for c in rank(self.candidates(), plan.shard_size, self.rng)
            if c.hotkey in plan.miner_ids
        ]
        # Miners with no copy of the segment first. One whose copy was lost (quarantined,
        # failed) holds nothing that counts and is taken only when no other will do: in a
        # small net it may be the only one left. (A miner purges a quarantined copy on PUT.)
        healthy = {h.address.hotkey for s in plan.shares for h in s.healthy}
        holding = {h.address.hotkey for s in plan.shares for h in s.holders}
        hosts = {h.address.host for s in plan.shares for h in s.healthy}
        targets = pick(
            ranked,
            len(missing),
            taken_hosts=hosts,
            exclude=holding,
            network_prefix=self.network_prefix,
        )
        if len(targets) < len(missing):
            targets += pick(
                ranked,
                len(missing) - len(targets),
                taken_hosts=hosts | {t.host for t in targets},
                exclude=healthy | {t.hotkey for t in targets},
                network_prefix=self.network_prefix,
            )
        if not targets:
            return "no eligible miner on a new host is free to take a shard"
        fetched, tally.sources = await self._fetch(plan)
        tally.fetched = sum(len(data) for data in fetched.values())
        if len(fetched) < plan.k:
            return f"only {len(fetched)} of the {plan.k} shards needed could be fetched"
        wanted = {s.share: s.shard_id for s in missing}
        try:
            rebuilt = await asyncio.to_thread(
                rebuild_shares,
                fetched,
                k=plan.k,
                m=plan.m,
                size=plan.size,
                leaf_size=plan.leaf_size,
                wanted=wanted,
                codec=plan.codec,
            )
        except RebuildError as exc:
            log.exception("a rebuilt shard does not match its recorded id")
            return str(exc)
        del fetched  # from here on only the rebuilt shares are held
        placed = await self._push(plan, rebuilt, ranked, targets, hosts, holding)
        tally.pushed = plan.shard_size * len(placed)
        try:
            drop = await asyncio.to_thread(self._record, plan, placed)
        except (SQLAlchemyError, LookupError) as exc:
            # Most likely the object was deleted meanwhile: take back what was pushed.
            await self._delete_best_effort(
                [(_address(c), wanted[n]) for n, (c, _) in placed.items()]
            )
            return f"recording the repair failed, its new shards dropped: {exc}"[:500]
        tally.placed = placed
        await self._delete_best_effort(drop)
        return f"{len(placed)} of {len(missing)} missing shares rebuilt and placed"

    async def _fetch(self, plan: _Plan) -> tuple[dict[int, bytes | bytearray], tuple[str, ...]]:
        """k verified shares, primaries first (decoding them is a join); a share whose
        holder fails is tried on its other holders, then another share is asked for."""
        queue = sorted((s for s in plan.shares if s.healthy), key=lambda s: s.share)
        good: dict[int, bytes | bytearray] = {}
        sources: list[str] = []
        running: set[asyncio.Task[tuple[int, bytes | bytearray | None, str | None]]] = set()
        try:
            while len(good) < plan.k and (queue or running):
                while queue and len(good) + len(running) < plan.k:
                    running.add(asyncio.create_task(self._fetch_share(plan, queue.pop(0))))
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    share, data, hotkey = task.result()
                    if data is not None and hotkey is not None:
                        good[share] = data
                        sources.append(hotkey)
        finally:
            for task in running:
                task.cancel()
        return good, tuple(sources)

    async def _fetch_share(
        self, plan: _Plan, share: _Share
    ) -> tuple[int, bytes | bytearray | None, str | None]:
        holders = share.healthy
        self.rng.shuffle(holders)
        for holder in holders:
            try:
                data = await self.miners.get_shard(
                    holder.address, share.shard_id, size=plan.shard_size
                )
            except MinerError as exc:
                log.info(
                    "repair fetch failed", extra={"miner": holder.address.hotkey, "why": exc.kind}
                )
                if exc.status == 404 and self.reads is not None:
                    self.reads(holder.address.hotkey, share.shard_id, served=False, why="missing")
                continue
            if len(data) == plan.shard_size and await asyncio.to_thread(
                _matches, data, plan.leaf_size, share.shard_id
            ):
                if self.reads is not None:
                    self.reads(holder.address.hotkey, share.shard_id, served=True)
                return share.share, data, holder.address.hotkey
            if self.reads is not None:
                self.reads(holder.address.hotkey, share.shard_id, served=False, why="wrong")
            log.warning(
                "miner served a corrupt shard to the repairer",
                extra={"miner": holder.address.hotkey, "shard_id": share.shard_id},
            )
        return share.share, None, None

    async def _push(
        self,
        plan: _Plan,
        rebuilt: Mapping[int, tuple[Buffer, ...]],
        ranked: Sequence[Candidate],
        targets: Sequence[Candidate],
        hosts: set[str],
        holding: set[str],
    ) -> dict[int, tuple[Candidate, StorageReceipt]]:
        """Push each rebuilt share, moving to a replacement miner when a push fails."""
        shard_ids = {s.share: s.shard_id for s in plan.shares}
        placed: dict[int, tuple[Candidate, StorageReceipt]] = {}
        failed: set[str] = set()
        hosts = hosts | {t.host for t in targets}

        async def push(share: int, target: Candidate | None) -> None:
            for _ in range(PUSH_ATTEMPTS):
                if target is None:
                    used = {c.hotkey for c, _ in placed.values()}
                    spare = pick(
                        ranked,
                        1,
                        taken_hosts=hosts,
                        exclude=holding | failed | used,
                        network_prefix=self.network_prefix,
                    )
                    if not spare:
                        return
                    target = spare[0]
                    hosts.add(target.host)
                try:
                    receipt = await self.miners.put_shard(
                        _address(target),
                        shard_ids[share],
                        rebuilt[share],
                        plan.shard_size,
                        plan.leaf_size,
                    )
                except MinerError as exc:
                    log.info("repair push failed", extra={"miner": target.hotkey, "why": exc.kind})
                    failed.add(target.hotkey)
                    hosts.discard(target.host)
                    target = None
                    continue
                placed[share] = (target, receipt)
                return

        shares = sorted(rebuilt)
        assigned: list[Candidate | None] = [*targets, *[None] * (len(shares) - len(targets))]
        await asyncio.gather(*(push(n, t) for n, t in zip(shares, assigned, strict=True)))
        return placed

    def _record(
        self, plan: _Plan, placed: Mapping[int, tuple[Candidate, StorageReceipt]]
    ) -> list[tuple[MinerAddress, str]]:
        """One transaction: new placements, old ones lost, queue rows gone. Returns the
        (miner, shard id) copies to ask their miners to drop."""
        now = datetime.now(UTC)
        drop: list[tuple[MinerAddress, str]] = []
        with self.sessions.begin() as session:
            # Before any placement changes (verified.hold): the holders' and the new homes'.
            verified.hold(
                session,
                {h.miner_id for s in plan.shares for h in s.holders}
                | {plan.miner_ids[c.hotkey] for c, _ in placed.values()},
            )
            for share in plan.shares:
                if share.share not in placed:
                    continue
                shard = session.get(Shard, share.row_id)
                if shard is None:
                    raise LookupError(f"shard row {share.row_id} is gone")
                candidate, receipt = placed[share.share]
                revived = False
                for holder in share.holders:
                    row = session.get(Placement, holder.placement_id)
                    if row is None:
                        continue
                    if holder.address.hotkey == candidate.hotkey:
                        # The miner that lost this copy took the share again: its row (one
                        # per shard and miner) comes back, unchallenged, and nothing is dropped.
                        row.state, row.stored_at = "stored", now
                        row.receipt_json = _receipt_json(receipt)
                        row.last_challenged_at, row.last_verdict, row.containment = None, None, 0
                        revived = True
                        continue
                    if row.state == "stored":
                        # Not healthy when planned (its miner went away): kept, as lost.
                        row.state = "lost"
                        row.last_verdict = (holder.why_unhealthy or "replaced")[:16]
                    if not self._held_elsewhere(session, holder, share):
                        drop.append((holder.address, share.shard_id))
                if not revived:
                    session.add(
                        Placement(
                            shard_id=share.row_id,
                            miner_id=plan.miner_ids[candidate.hotkey],
                            state="stored",
                            size=shard.size,  # counts once it passes (verified.py)
                            receipt_json=_receipt_json(receipt),
                            stored_at=now,
                        )
                    )
                session.execute(delete(RepairItem).where(RepairItem.shard_id == share.row_id))
            unplaced = [s.row_id for s in plan.shares if not s.healthy and s.share not in placed]
            for item in session.scalars(
                select(RepairItem).where(RepairItem.shard_id.in_(unplaced))
            ):
                item.attempts += 1
        return drop

    @staticmethod
    def _held_elsewhere(session: Session, holder: _Holder, share: _Share) -> bool:
        """Whether the miner keeps this shard id for another object (identical plaintext
        without encryption gives identical shards): then its copy must not be deleted."""
        other = session.scalar(
            select(Placement.id)
            .join(Shard, Shard.id == Placement.shard_id)
            .where(
                Placement.miner_id == holder.miner_id,
                Placement.state == "stored",
                Shard.shard_id == share.shard_id,
                Placement.id != holder.placement_id,
            )
            .limit(1)
        )
        return other is not None

    async def _delete_best_effort(self, copies: Sequence[tuple[MinerAddress, str]]) -> None:
        async def drop(address: MinerAddress, shard_id: str) -> None:
            async with asyncio.timeout(CALL_TIMEOUT):
                await self.miners.delete_shard(address, shard_id)

        results = await asyncio.gather(*(drop(a, s) for a, s in copies), return_exceptions=True)
        failures = sum(isinstance(r, BaseException) for r in results)
        if failures:
            log.info(
                "some miners did not confirm dropping a replaced shard", extra={"count": failures}
            )


def _address(candidate: Candidate) -> MinerAddress:
    return MinerAddress(candidate.hotkey, candidate.host, candidate.port)


def _matches(data: bytes | bytearray, leaf_size: int, shard_id: str) -> bool:
    return MerkleTree.build(data, leaf_size).root.hex() == shard_id


def log_entries(report: RepairReport, validator: str) -> list[LogEntry]:
    """One ``repair`` entry per share placed, for the signed challenge log (subnet audit)."""
    entries = []
    for event in report.events:
        for move in event.moves:
            if move.placed_on is None:
                continue
            lost = (
                ", ".join(f"{hotkey} ({why})" for hotkey, why in move.lost_from) or "never placed"
            )
            entries.append(
                LogEntry(
                    seq=0,
                    validator=validator,
                    miner=move.placed_on,
                    shard_id=move.shard_id,
                    kind="repair",
                    nonce="",
                    indices=(),
                    root=move.shard_id,
                    issued_at=event.started_at,
                    answered_at=event.started_at + event.seconds,
                    latency_ms=None,
                    verdict="repaired",
                    reason=f"share {move.share} of segment {event.segment} of object "
                    f"{event.object_id} rebuilt from {len(event.sources)} shards; lost from {lost}",
                    proof_digest="",
                )
            )
    return entries
