"""The challenger: round after round, prove that miners still hold what they acknowledged.

A round plans, per active miner, the ``batch`` placements challenged longest ago, sends them
as one signed batch, judges every answer against the root recorded at upload (never one the
miner sends), and records everything in one transaction: the signed log entries, each
placement's verdict, the miners' reputations and verified bytes, and the repair queue.

- **Merkle challenges**: ``leaves`` indices per shard from a fresh nonce; the whole batch
  must arrive within ``deadline(rtt, reply bytes)``. Every answer's latency is recorded.
- **Full retrievals**: every ``retrieval_every``-th round one shard per miner is fetched
  whole and hashed to its id; this also measures serving bandwidth. A miner's retrievals
  in a round run at once, under one deadline for their total size.
- **Containment** (after Storj): a timeout is not yet a failure. The placement is re-checked
  by a full retrieval in each following round; only after ``containment_rechecks`` more
  timeouts does it count against the miner and go to repair. A wrong or missing answer is
  a failure at once.

Reputation counts a pass as a success for both Beta models; a wrong or missing answer is a
failure of the "wrong" model (and an answer, so a success for "timeouts"); a timeout that
outlived containment is a failure of the "timeouts" model.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from erasure import hash_leaf, leaf_count_for
from erasure.merkle import HASH_SIZE, root_of
from validator import verified
from validator.audit_log import LogEntry, proof_digest
from validator.challenges import deadline, derive_indices, judge_hashes, new_nonce
from validator.log_store import ChallengeLogStore
from validator.miner_client import MinerAddress, MinerClient, MinerError, gather_limited
from validator.models import Miner, Placement, RepairItem, Segment, Shard, StoredObject
from validator.scoring import (
    DISQUALIFY_BELOW,
    MinerStanding,
    Reputation,
    disqualifies,
    time_weighted,
    update,
)
from validator.settings import ValidatorSettings

log = logging.getLogger(__name__)

RowT = TypeVar("RowT", Placement, Miner)

MINERS_AT_ONCE = 32
CHUNK = 500  # ids per IN (...): under the 999 bound parameters of older SQLite builds
RTT_SAMPLES = 16
FAILED = {"wrong", "missing"}


@dataclass(frozen=True, slots=True)
class ChallengePolicy:
    batch: int = 64
    leaves: int = 8
    floor: float = 2.0
    min_rate: float = float(2**20)
    retrieval_every: int = 10
    containment_rechecks: int = 3
    forgetting: float = 0.999
    disqualify_below: float = DISQUALIFY_BELOW
    capacity_window: float = 3600.0
    # Verified bytes are a running total (validator/verified.py), recounted from the rows in
    # the first round and every this many after; 0: never.
    verified_recount_rounds: int = 20

    @classmethod
    def from_settings(cls, s: ValidatorSettings) -> ChallengePolicy:
        return cls(
            batch=s.challenge_batch,
            leaves=s.challenge_leaves,
            floor=s.challenge_floor,
            min_rate=float(s.challenge_min_rate),
            retrieval_every=s.retrieval_every,
            containment_rechecks=s.containment_rechecks,
            forgetting=s.reputation_lambda,
            disqualify_below=s.disqualify_below,
            capacity_window=s.capacity_window,
        )


@dataclass(frozen=True, slots=True)
class Target:
    placement_id: int
    shard_id: str
    size: int
    leaf_size: int
    containment: int

    @property
    def leaf_count(self) -> int:
        return leaf_count_for(self.size, self.leaf_size)


@dataclass(frozen=True, slots=True)
class Plan:
    miner_id: int
    address: MinerAddress
    merkle: list[Target]
    retrieval: list[Target]


@dataclass(frozen=True, slots=True)
class Outcome:
    miner_id: int
    target: Target
    entry: LogEntry  # not yet chained or signed


@dataclass
class RoundReport:
    miners: int = 0
    verdicts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    leaves_verified: int = 0
    lost: int = 0
    seconds: float = 0.0


class ChallengerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.challenges = Counter(
            "validator_challenges",
            "Challenges judged, by kind and verdict.",
            ["kind", "verdict"],
            registry=registry,
        )
        self.latency = Histogram(
            "validator_challenge_latency_seconds",
            "Time from issuing a challenge batch or retrieval to its answer.",
            ["kind"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.lost = Counter(
            "validator_placements_lost",
            "Placements given up on and queued for repair.",
            registry=registry,
        )


class Challenger:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        miners: MinerClient,
        log_store: ChallengeLogStore,
        policy: ChallengePolicy,
        metrics: ChallengerMetrics | None = None,
    ) -> None:
        self.sessions = sessions
        self.miners = miners
        self.log_store = log_store
        self.policy = policy
        self.metrics = metrics
        self.rounds = 0
        self._rtt: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=RTT_SAMPLES))
        self._verified: dict[str, deque[tuple[float, int]]] = defaultdict(deque)

    @property
    def hotkey(self) -> str:
        return self.log_store.keypair.ss58_address

    # --- a round ----------------------------------------------------------------------

    async def run_round(self) -> RoundReport:
        started = time.perf_counter()
        self.rounds += 1
        retrieve = self.rounds % self.policy.retrieval_every == 0
        plans = await asyncio.to_thread(self._plan, retrieve)
        results = await gather_limited(MINERS_AT_ONCE, [self._challenge(p) for p in plans])
        outcomes: list[Outcome] = []
        for plan, result in zip(plans, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "challenging a miner failed",
                    exc_info=result,
                    extra={"miner": plan.address.hotkey},
                )
            else:
                outcomes.extend(result)
        report = await asyncio.to_thread(self._record, outcomes)
        report.miners = len(plans)
        report.seconds = time.perf_counter() - started
        log.info(
            "challenge round",
            extra={
                "round": self.rounds,
                "miners": report.miners,
                **report.verdicts,
                "lost": report.lost,
                "seconds": round(report.seconds, 3),
            },
        )
        return report

    def _plan(self, retrieve: bool) -> list[Plan]:
        plans = []
        with self.sessions() as session:
            # Unreachable miners too: their silence is what containment and repair act on.
            miners = session.execute(select(Miner.id, Miner.hotkey, Miner.host, Miner.port)).all()
            for miner_id, hotkey, host, port in miners:
                contained = self._targets(session, miner_id, contained=True)
                fresh = self._targets(session, miner_id, contained=False)
                seen = {t.placement_id for t in contained}
                merkle = [t for t in fresh if t.placement_id not in seen]
                retrieval = list(contained)
                if retrieve and merkle:
                    retrieval.append(merkle.pop(random.randrange(len(merkle))))  # noqa: S311
                if merkle or retrieval:
                    plans.append(
                        Plan(miner_id, MinerAddress(hotkey, host, port), merkle, retrieval)
                    )
        return plans

    def _targets(self, session: Session, miner_id: int, *, contained: bool) -> list[Target]:
        query = (
            select(
                Placement.id,
                Shard.shard_id,
                Shard.size,
                StoredObject.leaf_size,
                Placement.containment,
            )
            .join(Shard, Shard.id == Placement.shard_id)
            .join(Segment, Segment.id == Shard.segment_id)
            .join(StoredObject, StoredObject.id == Segment.object_id)
            .where(Placement.miner_id == miner_id, Placement.state == "stored")
        )
        batch = self.policy.batch
        if contained:  # ix_placements_contained
            query = query.where(Placement.containment > 0).limit(batch)
            return [Target(*row) for row in session.execute(query)]
        # Never challenged first, then challenged longest ago: two range scans of
        # ix_placements_due that stop after ``batch`` rows. (One ORDER BY ... NULLS FIRST
        # would do on SQLite, but PostgreSQL keeps NULLs last in an ascending index, so it
        # would read and sort every placement of the miner.)
        never = query.where(Placement.last_challenged_at.is_(None)).order_by(Placement.id)
        targets = [Target(*row) for row in session.execute(never.limit(batch))]
        if len(targets) < batch:
            due = query.where(Placement.last_challenged_at.is_not(None)).order_by(
                Placement.last_challenged_at, Placement.id
            )
            targets += [Target(*row) for row in session.execute(due.limit(batch - len(targets)))]
        return targets

    async def _challenge(self, plan: Plan) -> list[Outcome]:
        outcomes = []
        if plan.merkle:
            outcomes.extend(await self._merkle(plan, plan.merkle))
        # Retrievals run together under one deadline for their total size: a miner that has
        # to rebuild each shard from k others needs k times the bandwidth, and shows it.
        if plan.retrieval:
            allowed = self._allowed(plan.address.hotkey, sum(t.size for t in plan.retrieval))
            outcomes.extend(
                await asyncio.gather(*(self._retrieve(plan, t, allowed) for t in plan.retrieval))
            )
        return outcomes

    def _entry(self, plan: Plan, target: Target, **fields: Any) -> Outcome:
        base: dict[str, Any] = {
            "seq": 0,
            "validator": self.hotkey,
            "miner": plan.address.hotkey,
            "shard_id": target.shard_id,
            "root": target.shard_id,
            "nonce": "",
            "indices": (),
            "answered_at": None,
            "latency_ms": None,
            "proof_digest": "",
            "leaf_count": target.leaf_count,
            "size": target.size,
        }
        base.update(fields)
        return Outcome(plan.miner_id, target, LogEntry(**base))

    def _allowed(self, hotkey: str, reply_bytes: int) -> float:
        seen = self._rtt.get(hotkey)
        rtt = min(*seen, 1.0) if seen else 0.0  # the quickest recent answer ~ the network
        return deadline(
            rtt=rtt, reply_bytes=reply_bytes, floor=self.policy.floor, min_rate=self.policy.min_rate
        )

    async def _merkle(self, plan: Plan, targets: Sequence[Target]) -> list[Outcome]:
        nonces = [new_nonce() for _ in targets]
        indices = [
            derive_indices(nonce, t.shard_id, t.leaf_count, self.policy.leaves)
            for nonce, t in zip(nonces, targets, strict=True)
        ]
        reply_bytes = sum(
            len(ix) * (t.leaf_size + HASH_SIZE * max(1, math.ceil(math.log2(t.leaf_count + 1))))
            for ix, t in zip(indices, targets, strict=True)
        )
        allowed = self._allowed(plan.address.hotkey, reply_bytes)
        request = [
            {"shard_id": t.shard_id, "nonce": nonce.hex(), "indices": list(ix)}
            for t, nonce, ix in zip(targets, nonces, indices, strict=True)
        ]
        issued = time.time()
        started = time.perf_counter()
        failure: str | None = None
        answers: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        try:
            async with asyncio.timeout(allowed):
                answers, blobs = await self.miners.challenge(plan.address, request)
        except TimeoutError:
            failure = f"no answer within {allowed:.3f}s"
        except MinerError as exc:
            failure = f"{exc.kind}: {exc.detail}"
        latency = time.perf_counter() - started
        if self.metrics:
            self.metrics.latency.labels("merkle").observe(latency)
        if failure is not None:
            verdict = "wrong" if failure.startswith("bad_reply") else "timeout"
            return [
                self._entry(
                    plan,
                    t,
                    kind="merkle",
                    nonce=n.hex(),
                    indices=ix,
                    issued_at=issued,
                    verdict=verdict,
                    reason=failure,
                )
                for t, n, ix in zip(targets, nonces, indices, strict=True)
            ]
        self._rtt[plan.address.hotkey].append(latency)
        return await asyncio.to_thread(
            self._judge_batch,
            plan,
            targets,
            nonces,
            indices,
            answers,
            blobs,
            issued,
            latency,
            allowed,
        )

    def _judge_batch(
        self,
        plan: Plan,
        targets: Sequence[Target],
        nonces: Sequence[bytes],
        indices: Sequence[tuple[int, ...]],
        answers: Sequence[dict[str, Any]],
        blobs: Sequence[bytes],
        issued: float,
        latency: float,
        allowed: float,
    ) -> list[Outcome]:
        outcomes = []
        position = 0
        for target, nonce, ix, answer in zip(targets, nonces, indices, answers, strict=True):
            common: dict[str, Any] = {
                "kind": "merkle",
                "nonce": nonce.hex(),
                "indices": ix,
                "issued_at": issued,
                "answered_at": issued + latency,
                "latency_ms": latency * 1000,
            }
            status = answer.get("status")
            count = answer.get("leaves")
            echoed = (answer.get("shard_id"), answer.get("nonce")) == (target.shard_id, nonce.hex())
            if status == 404:
                outcomes.append(
                    self._entry(
                        plan,
                        target,
                        **common,
                        verdict="missing",
                        reason="the miner says it does not hold the shard",
                    )
                )
                continue
            if status != 200 or not echoed or not isinstance(count, int) or count != len(ix):
                if status == 200 and isinstance(count, int):
                    position += count + 1
                outcomes.append(
                    self._entry(
                        plan,
                        target,
                        **common,
                        verdict="wrong",
                        reason=f"answer refused or malformed: {answer}"[:500],
                    )
                )
                continue
            leaves = blobs[position : position + count]
            proof = blobs[position + count] if position + count < len(blobs) else b""
            position += count + 1
            hashes = [hash_leaf(leaf) for leaf in leaves]
            if len(leaves) != count:
                hashes = []
            result = judge_hashes(
                root_hex=target.shard_id,
                leaf_count=target.leaf_count,
                indices=ix,
                leaf_hashes=hashes,
                proof=proof,
                latency=latency,
                allowed=allowed,
            )
            outcomes.append(
                self._entry(
                    plan,
                    target,
                    **common,
                    verdict=result.verdict,
                    reason=result.reason,
                    proof_digest=proof_digest(hashes, proof),
                    leaf_hashes=tuple(h.hex() for h in hashes),
                    proof=proof.hex(),
                )
            )
        return outcomes

    async def _retrieve(self, plan: Plan, target: Target, allowed: float) -> Outcome:
        issued = time.time()
        started = time.perf_counter()
        common: dict[str, Any] = {"kind": "retrieval", "issued_at": issued}
        try:
            async with asyncio.timeout(allowed):
                data = await self.miners.get_shard(plan.address, target.shard_id)
        except TimeoutError:
            return self._entry(
                plan,
                target,
                **common,
                verdict="timeout",
                reason=f"the shard did not arrive within {allowed:.3f}s",
            )
        except MinerError as exc:
            verdict = "missing" if exc.status == 404 else "timeout"
            reason = f"{exc.kind}: {exc.detail}"[:500]
            return self._entry(plan, target, **common, verdict=verdict, reason=reason)
        latency = time.perf_counter() - started
        if self.metrics:
            self.metrics.latency.labels("retrieval").observe(latency)
        answered = {"answered_at": issued + latency, "latency_ms": latency * 1000}
        root = await asyncio.to_thread(root_of, data, target.leaf_size)
        if len(data) != target.size or root.hex() != target.shard_id:
            return self._entry(
                plan,
                target,
                **common,
                **answered,
                verdict="wrong",
                reason=f"{len(data)} bytes that do not hash to the shard's id",
            )
        rate = len(data) / latency / 1e6 if latency > 0 else float("inf")
        return self._entry(
            plan,
            target,
            **common,
            **answered,
            verdict="pass",
            reason=f"whole shard hashed to its id at {rate:.1f} MB/s",
        )

    # --- recording ----------------------------------------------------------------------

    def _record(self, outcomes: Sequence[Outcome]) -> RoundReport:
        report = RoundReport()
        touched: dict[int, str] = {}
        totals: dict[int, int] = {}
        every = self.policy.verified_recount_rounds
        recount = every > 0 and (self.rounds - 1) % every == 0

        def work(session: Session) -> list[LogEntry]:
            now = datetime.now(UTC)
            tally: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            change: dict[int, int] = defaultdict(int)  # verified bytes gained or lost
            placements = _rows(session, Placement, [o.target.placement_id for o in outcomes])
            for outcome in outcomes:
                touched[outcome.miner_id] = outcome.entry.miner
                placement = placements.get(outcome.target.placement_id)
                before = verified.counts(placement)
                kept = self._settle(session, outcome, placement, now)
                gained = verified.counts(placement) - before
                change[outcome.miner_id] += gained * outcome.target.size
                tally[outcome.miner_id][kept] += 1
                report.verdicts[kept] += 1
                if outcome.entry.verdict == "pass":
                    report.leaves_verified += len(outcome.entry.indices)
            report.lost = sum(v for k, v in report.verdicts.items() if k in {*FAILED, "timeout"})
            miners = _rows(session, Miner, list(touched))
            for miner_id, counts in tally.items():
                if miner_id in miners:
                    self._update_reputation(miners[miner_id], counts, now)
            if recount:
                # Every miner from the rows (an aggregate over all placements): takes in
                # placements deleted with their objects, which no running total sees.
                totals.update(verified.recount(session))
                verified.store(session, totals)
                touched.update(session.execute(select(Miner.id, Miner.hotkey)).all())
            else:
                verified.add(session, change)
                totals.update(verified.stored(session, touched))
            return [o.entry for o in outcomes]

        self.log_store.record(work)
        now = time.time()
        for miner_id, hotkey in touched.items():
            self._sample(hotkey, now, totals.get(miner_id, 0))
        if self.metrics:
            for outcome in outcomes:
                self.metrics.challenges.labels(outcome.entry.kind, outcome.entry.verdict).inc()
            self.metrics.lost.inc(report.lost)
        return report

    def _settle(
        self, session: Session, outcome: Outcome, placement: Placement | None, now: datetime
    ) -> str:
        """Apply one verdict to its placement; returns what it counts as (``contained``
        for a timeout still within containment)."""
        verdict = outcome.entry.verdict
        if placement is None or placement.state != "stored":
            return verdict  # deleted or given up on meanwhile
        placement.last_challenged_at = now
        if verdict == "pass":
            placement.containment = 0
            placement.last_verdict = "pass"
            return verdict
        if verdict == "timeout" and placement.containment < self.policy.containment_rechecks:
            placement.containment += 1
            placement.last_verdict = "contained"
            return "contained"
        placement.state = "lost"
        placement.last_verdict = verdict
        queued = session.scalar(
            select(RepairItem.id).where(RepairItem.shard_id == placement.shard_id)
        )
        if queued is None:
            session.add(
                RepairItem(
                    shard_id=placement.shard_id,
                    reason=f"{verdict} on {outcome.entry.kind} challenge of {outcome.entry.miner}",
                    created_at=now,
                )
            )
        return verdict

    def _update_reputation(self, miner: Miner, counts: dict[str, int], now: datetime) -> None:
        passed, failed = counts["pass"], counts["wrong"] + counts["missing"]
        wrong = update(
            Reputation(miner.wrong_alpha, miner.wrong_beta),
            passed,
            failed,
            forgetting=self.policy.forgetting,
        )
        timeouts = update(
            Reputation(miner.timeout_alpha, miner.timeout_beta),
            passed + failed,
            counts["timeout"],
            forgetting=self.policy.forgetting,
        )
        miner.wrong_alpha, miner.wrong_beta = wrong.alpha, wrong.beta
        miner.timeout_alpha, miner.timeout_beta = timeouts.alpha, timeouts.beta
        if miner.disqualified_at is None and disqualifies(
            wrong, disqualify_below=self.policy.disqualify_below
        ):
            miner.disqualified_at = now
            log.warning(
                "miner disqualified",
                extra={"miner": miner.hotkey, "wrong_score": round(wrong.score, 4)},
            )

    def _sample(self, hotkey: str, now: float, verified: int) -> None:
        samples = self._verified[hotkey]
        samples.append((now, verified))
        # Keep one sample from before the window so the window's start is covered.
        while len(samples) > 1 and samples[1][0] <= now - self.policy.capacity_window:
            samples.popleft()

    # --- standings for weights ----------------------------------------------------------

    def standings(self, now: float | None = None) -> dict[str, MinerStanding]:
        """Every known miner: time-weighted verified bytes and both reputations."""
        now = time.time() if now is None else now
        with self.sessions() as session:
            rows = session.scalars(select(Miner)).all()
        result = {}
        for miner in rows:
            samples = self._verified.get(miner.hotkey)
            held = (
                time_weighted(list(samples), now, self.policy.capacity_window)
                if samples
                else float(miner.verified_bytes)
            )
            result[miner.hotkey] = MinerStanding(
                verified_bytes=int(held),
                wrong=Reputation(miner.wrong_alpha, miner.wrong_beta),
                timeouts=Reputation(miner.timeout_alpha, miner.timeout_beta),
                disqualified=miner.disqualified_at is not None,
            )
        return result


def _rows(session: Session, model: type[RowT], ids: Sequence[int]) -> dict[int, RowT]:
    """Rows by primary key, ``CHUNK`` at a time: not a ``session.get`` each, since every get
    would first autoflush the previous row's change (two statements per challenge)."""
    found: dict[int, RowT] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found.update(
            (row.id, row) for row in session.scalars(select(model).where(model.id.in_(chunk)))
        )
    return found
