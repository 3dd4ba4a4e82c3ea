"""The challenger: round after round, prove that miners still hold and serve what they
acknowledged.

A round plans, per miner, the ``batch`` placements challenged longest ago (those in
containment first), sends them as one signed batch, judges every answer against the root
recorded at upload (never one the miner sends), and records everything in one transaction:
the signed log entries, each placement's verdict, the miners' reputations, suspensions and
verified bytes, and the repair queue.

Every answer is hostile until judged, and **every shard asked about gets a verdict every
round**: an answer that is missing, malformed or cannot be judged is ``wrong``; a batch that
cannot be judged at all fails as a whole. Nothing is left standing from an earlier round.

- **Merkle challenges**: ``leaves`` indices per shard from a fresh nonce; the whole batch
  must arrive within ``deadline(rtt, reply bytes)``. Every answer's latency is recorded.
- **Retrievals** check serving: one shard fetched whole and hashed to its id, with
  probability ``1 / retrieval_every`` per miner per round, at a random moment within the
  next ``retrieval_spread`` seconds and of a random stored placement: the same signed GET a
  user's download sends, so a miner cannot serve only when it expects to be checked. A
  refusal is a failed read, as is a timeout; 404 is ``missing``.
- **Evidence from reads**: downloads and repairs report what they fetched
  (:meth:`Challenger.observe_read`): a served share counts for the miner's serving score, a
  404 or a corrupt share is a ``missing`` or ``wrong`` verdict on that placement.
- **Containment** (after Storj) decides between lost and slow; it never launders a late
  answer. A timeout is not yet a failure: the placement stops counting as verified and is
  checked again, **the same way it failed** (a Merkle timeout by a Merkle challenge first in
  the next batch; a failed read by a retrieval, at most ``recheck_reads`` per miner per round,
  one after another, each under its own deadline). Only a pass of that kind, within its
  deadline, makes it count again; after ``containment_rechecks`` more timeouts it is lost,
  goes to repair and counts against the miner. A wrong or missing answer fails at once.

Reputations (:mod:`validator.scoring`): integrity (passes vs wrong or missing, weighted by
bytes), timeouts (answers vs timeouts that outlived containment, by bytes) and serving (each
read). Integrity below its threshold disqualifies for good; timeouts or serving below theirs
suspend until they recover (or until ``suspend_seconds`` pass, when the miner starts over on
probation with nothing to its name).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from erasure import leaf_count_for
from erasure.merkle import root_of
from validator import verified
from validator.audit_log import LogEntry, proof_digest
from validator.challenges import (
    answer_bytes,
    deadline,
    derive_indices,
    judge_hashes,
    new_nonce,
)
from validator.log_store import ChallengeLogStore
from validator.miner_client import (
    Answered,
    MinerAddress,
    MinerClient,
    MinerError,
    gather_limited,
)
from validator.models import Miner, Placement, RepairItem, Segment, Shard, StoredObject
from validator.scoring import (
    DISQUALIFY_BELOW,
    SERVING_LAMBDA,
    SUSPEND_BELOW,
    MinerStanding,
    Reputation,
    capacity,
    disqualifies,
    suspends,
    update,
    update_bytes,
)
from validator.settings import ValidatorSettings

log = logging.getLogger(__name__)

RowT = TypeVar("RowT", Placement, Miner)

MINERS_AT_ONCE = 32
CHUNK = 500  # ids per IN (...): under the 999 bound parameters of older SQLite builds
RTT_SAMPLES = 16
FAILED = {"wrong", "missing"}
READS = {"retrieval", "read"}  # kinds that fetched a whole shard
CONTAINED_MERKLE, CONTAINED_READ = "contained", "contained-read"
PENDING_LIMIT = 10_000  # read evidence waiting for the next round, beyond which it is dropped


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
    suspend_below: float = SUSPEND_BELOW
    suspend_seconds: float = 3600.0
    capacity_window: float = 3600.0
    # Retrievals happen at a random moment within this many seconds after a round (0: in the
    # round itself); rechecks of failed reads per miner per round.
    retrieval_spread: float = 0.0
    recheck_reads: int = 2
    # Verified bytes are a running total the database keeps (validator/verified.py), checked
    # against a recount from the rows in the first round and every this many after; 0: never.
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
            suspend_below=s.suspend_below,
            suspend_seconds=s.suspend_seconds,
            capacity_window=s.capacity_window,
            retrieval_spread=s.challenge_seconds,
        )


@dataclass(frozen=True, slots=True)
class Target:
    placement_id: int
    shard_id: str
    size: int
    leaf_size: int
    containment: int
    verdict: str | None = None  # the placement's latest, when planned

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
    silent: bool = False  # no answer at all (silence, a dropped connection), not a refusal


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
        # Nonzero means a miner's credit was off from its placements between two recounts
        # (the triggers bypassed): alert on it, the log line names the miners.
        self.drift_miners = Counter(
            "validator_verified_bytes_drift_miners",
            "Miners whose verified bytes a recount found off from their placements.",
            registry=registry,
        )
        self.drift_bytes = Counter(
            "validator_verified_bytes_drift_bytes",
            "Bytes by which recounts found miners' verified bytes off, either way.",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class ReadReport:
    """What a download or repair saw when it fetched one share from a miner."""

    miner: str  # hotkey
    shard_id: str
    verdict: str  # missing | wrong
    reason: str


class Challenger:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        miners: MinerClient,
        log_store: ChallengeLogStore,
        policy: ChallengePolicy,
        metrics: ChallengerMetrics | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.sessions = sessions
        self.miners = miners
        self.log_store = log_store
        self.policy = policy
        self.metrics = metrics
        self.rounds = 0
        self.rng = rng or random.SystemRandom()
        self._rtt: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=RTT_SAMPLES))
        self._verified: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        # Evidence gathered between rounds, recorded with the next one: outcomes of the
        # scheduled retrievals, failed reads reported by downloads and repairs, and per
        # miner hotkey the shares they were served.
        self._pending: list[Outcome] = []
        self._reads: dict[tuple[str, str], ReadReport] = {}
        self._served: dict[str, int] = defaultdict(int)
        self._scheduled: dict[str, asyncio.Task[None]] = {}

    @property
    def hotkey(self) -> str:
        return self.log_store.keypair.ss58_address

    # --- evidence from reads ------------------------------------------------------------

    def observe_read(self, miner: str, shard_id: str, *, served: bool, why: str = "") -> None:
        """A download or repair fetched ``shard_id`` from ``miner``: ``served`` if the share
        arrived and hashed to its id. Not served: ``why`` is ``missing`` (the miner said
        404) or ``wrong`` (corrupt bytes); refusals and timeouts are not reported here (a
        busy user could cause those), the scheduled retrievals judge serving."""
        if served:
            self._served[miner] += 1
            return
        if len(self._reads) < PENDING_LIMIT and why in FAILED:
            reason = "the miner says it does not hold the shard" if why == "missing" else ""
            self._reads[(miner, shard_id)] = ReadReport(
                miner, shard_id, why, reason or "served bytes that do not hash to the shard's id"
            )

    async def close(self) -> None:
        """Cancel the retrievals scheduled for later."""
        tasks = list(self._scheduled.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._scheduled.clear()

    # --- a round ----------------------------------------------------------------------

    async def run_round(self) -> RoundReport:
        started = time.perf_counter()
        self.rounds += 1
        plans = await asyncio.to_thread(self._plan)
        results = await gather_limited(MINERS_AT_ONCE, [self._challenge(p) for p in plans])
        outcomes: list[Outcome] = []
        for plan, result in zip(plans, results, strict=True):
            if isinstance(result, BaseException):
                # Whatever it was, the miner's answer could not be judged: the whole batch
                # fails, so no earlier pass stands in for this round's answer.
                log.warning(
                    "a miner's answers could not be judged; its batch fails",
                    extra={"miner": plan.address.hotkey, "why": repr(result)[:300]},
                )
                outcomes.extend(self._unjudged(plan, repr(result)))
            else:
                outcomes.extend(result)
        outcomes.extend(self._pending)
        self._pending = []
        reads, self._reads = self._reads, {}
        served, self._served = self._served, defaultdict(int)
        outcomes.extend(await asyncio.to_thread(self._read_outcomes, list(reads.values())))
        report = await asyncio.to_thread(self._record, outcomes, served)
        report.miners = len(plans)
        await self._schedule_retrievals()
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

    def _unjudged(self, plan: Plan, why: str) -> list[Outcome]:
        reason = f"the answer could not be judged: {why}"[:500]
        return [
            self._entry(plan, t, kind=kind, verdict="wrong", reason=reason, issued_at=time.time())
            for kind, targets in (("merkle", plan.merkle), ("retrieval", plan.retrieval))
            for t in targets
        ]

    def _plan(self, retrieve: bool = False) -> list[Plan]:
        """Per miner: its Merkle batch (placements contained by a Merkle timeout first, then
        the longest unchallenged) and the rechecks of its failed reads. ``retrieve`` adds a
        random stored placement's retrieval to every miner's plan."""
        plans = []
        with self.sessions() as session:
            # Unreachable miners too: their silence is what containment and repair act on.
            miners = session.execute(select(Miner.id, Miner.hotkey, Miner.host, Miner.port)).all()
            for miner_id, hotkey, host, port in miners:
                contained = self._targets(session, miner_id, contained=True)
                fresh = self._targets(session, miner_id, contained=False)
                rechecks = [t for t in contained if t.verdict == CONTAINED_READ]
                retrieval = rechecks[: self.policy.recheck_reads]
                skip = {t.placement_id for t in rechecks}
                merkle = [t for t in contained if t.placement_id not in skip]
                seen = {t.placement_id for t in merkle} | skip
                merkle += [t for t in fresh if t.placement_id not in seen]
                merkle = merkle[: self.policy.batch]
                if retrieve:
                    extra = self._random_target(session, miner_id)
                    if extra is not None and extra.placement_id not in skip:
                        retrieval.append(extra)
                if merkle or retrieval:
                    plans.append(
                        Plan(miner_id, MinerAddress(hotkey, host, port), merkle, retrieval)
                    )
        return plans

    def _query(self) -> Select[int, str, int, int, int, str | None]:
        return (
            select(
                Placement.id,
                Shard.shard_id,
                Shard.size,
                StoredObject.leaf_size,
                Placement.containment,
                Placement.last_verdict,
            )
            .join(Shard, Shard.id == Placement.shard_id)
            .join(Segment, Segment.id == Shard.segment_id)
            .join(StoredObject, StoredObject.id == Segment.object_id)
        )

    def _targets(self, session: Session, miner_id: int, *, contained: bool) -> list[Target]:
        query = self._query().where(Placement.miner_id == miner_id, Placement.state == "stored")
        batch = self.policy.batch
        if contained:  # ix_placements_contained; each kind with its own limit
            contained_query = query.where(Placement.containment > 0)
            found = []
            for kind, limit in (
                (CONTAINED_MERKLE, batch),
                (CONTAINED_READ, self.policy.recheck_reads),
            ):
                rows = session.execute(
                    contained_query.where(Placement.last_verdict == kind).limit(limit)
                )
                found += [Target(*row) for row in rows]
            return found
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

    def _random_target(self, session: Session, miner_id: int) -> Target | None:
        """A stored placement of the miner, at random (any of them, not this round's batch):
        the first at or after a random id between its lowest and highest."""
        bounds = session.execute(
            select(func.min(Placement.id), func.max(Placement.id)).where(
                Placement.miner_id == miner_id
            )
        ).one()
        low: int | None = bounds[0]
        high: int | None = bounds[1]
        if low is None or high is None:
            return None
        start = self.rng.randint(low, high)
        query = self._query().where(Placement.miner_id == miner_id, Placement.state == "stored")
        for where in (Placement.id >= start, Placement.id < start):
            row = session.execute(query.where(where).order_by(Placement.id).limit(1)).first()
            if row is not None:
                return Target(*row)
        return None

    async def _schedule_retrievals(self) -> None:
        """Each miner, with probability 1 / ``retrieval_every``: one retrieval of a random
        placement at a random moment within ``retrieval_spread`` (at once when 0)."""
        every, spread = self.policy.retrieval_every, self.policy.retrieval_spread
        with self.sessions() as session:
            miners = session.execute(select(Miner.id, Miner.hotkey, Miner.host, Miner.port)).all()
        chosen = [row for row in miners if self.rng.random() * every < 1]
        if not chosen:
            return

        def targets() -> list[tuple[Plan, Target]]:
            found = []
            with self.sessions() as session:
                for miner_id, hotkey, host, port in chosen:
                    if hotkey in self._scheduled:
                        continue  # one at a time per miner
                    target = self._random_target(session, miner_id)
                    if target is not None:
                        address = MinerAddress(hotkey, host, port)
                        found.append((Plan(miner_id, address, [], [target]), target))
            return found

        for plan, target in await asyncio.to_thread(targets):
            delay = self.rng.uniform(0, spread) if spread > 0 else 0.0
            if delay <= 0:
                self._pending.append(await self._retrieve_alone(plan, target))
                continue
            task = asyncio.create_task(self._retrieve_later(plan, target, delay))
            self._scheduled[plan.address.hotkey] = task

    async def _retrieve_later(self, plan: Plan, target: Target, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            outcome = await self._retrieve_alone(plan, target)
            if len(self._pending) < PENDING_LIMIT:
                self._pending.append(outcome)
        except Exception as exc:  # noqa: BLE001  (an unjudgeable answer fails; never lost)
            self._pending.append(self._unjudged(plan, repr(exc))[0])
        finally:
            self._scheduled.pop(plan.address.hotkey, None)

    async def _retrieve_alone(self, plan: Plan, target: Target) -> Outcome:
        return await self._retrieve(plan, target, self._allowed(plan.address.hotkey, target.size))

    def _read_outcomes(self, reads: Sequence[ReadReport]) -> list[Outcome]:
        """Failed reads from downloads and repairs, as verdicts on their placements."""
        outcomes = []
        with self.sessions() as session:
            for read in reads:
                row = session.execute(
                    self._query()
                    .add_columns(Miner.id, Miner.host, Miner.port)
                    .join(Miner, Miner.id == Placement.miner_id)
                    .where(
                        Miner.hotkey == read.miner,
                        Shard.shard_id == read.shard_id,
                        Placement.state == "stored",
                    )
                    .limit(1)
                ).first()
                if row is None:
                    continue
                *fields, miner_id, host, port = row
                target = Target(*fields)
                plan = Plan(miner_id, MinerAddress(read.miner, host, port), [], [])
                outcomes.append(
                    self._entry(
                        plan,
                        target,
                        kind="read",
                        issued_at=time.time(),
                        verdict=read.verdict,
                        reason=f"a download or repair read: {read.reason}",
                    )
                )
        return outcomes

    async def _challenge(self, plan: Plan) -> list[Outcome]:
        outcomes = []
        if plan.merkle:
            outcomes.extend(await self._merkle(plan, plan.merkle))
        # Rechecks of failed reads one after another, each under its own deadline: running
        # them at once would let a slow miner spread one generous deadline over all.
        for target in plan.retrieval:
            outcomes.append(await self._retrieve_alone(plan, target))
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
            answer_bytes(len(ix), t.leaf_size, t.leaf_count)
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
        verdict = "timeout"
        answers: list[dict[str, Any]] = []
        answered: list[Answered] = []
        try:
            async with asyncio.timeout(allowed):
                answers, answered = await self.miners.challenge(plan.address, request, reply_bytes)
        except TimeoutError:
            failure = f"no answer within {allowed:.3f}s"
        except MinerError as exc:
            failure = f"{exc.kind}: {exc.detail}"
            verdict = _failed_call_verdict(exc)
        latency = time.perf_counter() - started
        if self.metrics:
            self.metrics.latency.labels("merkle").observe(latency)
        if failure is not None:
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
            answered,
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
        answers: Sequence[Any],
        answered: Sequence[Answered],
        issued: float,
        latency: float,
        allowed: float,
    ) -> list[Outcome]:
        """One verdict per target, whatever the answers hold. ``answered`` is, in order, what
        each answer with status 200 and a count brought (``MinerClient.challenge``): once an
        answer's count cannot be trusted, where every later answer's leaves start is unknown,
        so those fail too."""
        outcomes = []
        brought = iter(answered)
        trusted = len(answers) == len(targets)
        for n, (target, nonce, ix) in enumerate(zip(targets, nonces, indices, strict=True)):
            common: dict[str, Any] = {
                "kind": "merkle",
                "nonce": nonce.hex(),
                "indices": ix,
                "issued_at": issued,
                "answered_at": issued + latency,
                "latency_ms": latency * 1000,
            }
            answer = answers[n] if n < len(answers) else None
            if not trusted or not isinstance(answer, dict):
                outcomes.append(
                    self._entry(
                        plan,
                        target,
                        **common,
                        verdict="wrong",
                        reason=f"no answer that can be judged: {answer!r}"[:500],
                    )
                )
                continue
            status = answer.get("status")
            count = answer.get("leaves")
            echoed = (answer.get("shard_id"), answer.get("nonce")) == (target.shard_id, nonce.hex())
            counted = isinstance(count, int) and not isinstance(count, bool) and count >= 0
            if status == 200 and not counted:
                trusted = False  # where this answer's blobs end is unknown
            if status == 404 and echoed:
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
            if not trusted or status != 200 or not echoed or count != len(ix):
                if trusted and status == 200:
                    next(brought, None)  # its leaves and proof, not judged
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
            brought_here = next(brought, Answered((), b""))
            proof = brought_here.proof
            hashes = list(brought_here.leaf_hashes)
            if len(hashes) != count:
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
                data = await self.miners.get_shard(plan.address, target.shard_id, size=target.size)
        except TimeoutError:
            outcome = self._entry(
                plan,
                target,
                **common,
                verdict="timeout",
                reason=f"the shard did not arrive within {allowed:.3f}s",
            )
            return replace(outcome, silent=True)
        except MinerError as exc:
            verdict = _failed_call_verdict(exc)
            reason = f"{exc.kind}: {exc.detail}"[:500]
            outcome = self._entry(plan, target, **common, verdict=verdict, reason=reason)
            return replace(outcome, silent=exc.status is None and verdict == "timeout")
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

    def _record(
        self, outcomes: Sequence[Outcome], served: Mapping[str, int] | None = None
    ) -> RoundReport:
        report = RoundReport()
        touched: dict[int, str] = {}
        totals: dict[int, int] = {}
        drift: dict[int, int] = {}  # what a recount found off, by miner
        every = self.policy.verified_recount_rounds
        recount = every > 0 and (self.rounds - 1) % every == 0
        served = served or {}

        def work(session: Session) -> list[LogEntry]:
            now = datetime.now(UTC)
            verified.hold(session)  # before any placement changes (see verified.hold)
            evidence: dict[int, Evidence] = defaultdict(Evidence)
            placements = _rows(session, Placement, [o.target.placement_id for o in outcomes])
            for outcome in outcomes:
                touched[outcome.miner_id] = outcome.entry.miner
                placement = placements.get(outcome.target.placement_id)
                # A shard deleted (or given up on) while it was being asked about is rightly
                # missing: the log keeps the answer, the miner's standing does not see it.
                # Judged before settling, which marks a failed placement lost.
                stands = placement is not None and placement.state == "stored"
                # (What it does to the miner's verified bytes, the database's triggers add.)
                kept = self._settle(session, outcome, placement, now)
                if stands:
                    evidence[outcome.miner_id].add(outcome.entry, kept, silent=outcome.silent)
                report.verdicts[kept] += 1
                if outcome.entry.verdict == "pass":
                    report.leaves_verified += len(outcome.entry.indices)
            report.lost = sum(v for k, v in report.verdicts.items() if k in {*FAILED, "timeout"})
            if served:
                by_hotkey = dict(
                    session.execute(
                        select(Miner.hotkey, Miner.id).where(Miner.hotkey.in_(list(served)))
                    ).all()
                )
                for hotkey, count in served.items():
                    if hotkey in by_hotkey:
                        touched[by_hotkey[hotkey]] = hotkey
                        evidence[by_hotkey[hotkey]].reads_served += count
            miners = _rows(session, Miner, list(touched))
            for miner_id, seen in evidence.items():
                if miner_id in miners:
                    self._update_reputation(miners[miner_id], seen, now)
            self._end_suspensions(session, now)
            if recount:
                # A check of the triggers' running totals against the rows (an aggregate
                # over all placements): any difference is a change made behind their backs.
                totals.update(verified.recount(session))
                drift.update(verified.store(session, totals))
                touched.update(session.execute(select(Miner.id, Miner.hotkey)).all())
                if drift:
                    log.error(
                        "verified bytes drifted from the placements; recounted",
                        extra={
                            "miners": len(drift),
                            "drift": {touched[m]: d for m, d in drift.items()},
                        },
                    )
            else:
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
            self.metrics.drift_miners.inc(len(drift))
            self.metrics.drift_bytes.inc(sum(abs(d) for d in drift.values()))
        return report

    def _settle(
        self, session: Session, outcome: Outcome, placement: Placement | None, now: datetime
    ) -> str:
        """Apply one verdict to its placement; returns what it counts as (``contained``
        for a timeout still within containment).

        A pass makes a placement count again only if it is of the kind of check the
        placement last failed: a read that arrives proves the shard is not lost, not that
        the miner answers its Merkle challenges in time.
        """
        verdict = outcome.entry.verdict
        read = outcome.entry.kind in READS
        if placement is None or placement.state != "stored":
            return verdict  # deleted or given up on meanwhile
        placement.last_challenged_at = now
        if verdict == "pass":
            if read and placement.last_verdict == CONTAINED_MERKLE:
                return verdict  # still owes an answer in time
            placement.containment = 0
            placement.last_verdict = "pass"
            return verdict
        if verdict == "timeout" and placement.containment < self.policy.containment_rechecks:
            placement.containment += 1
            owes_merkle = not read or placement.last_verdict == CONTAINED_MERKLE
            placement.last_verdict = CONTAINED_MERKLE if owes_merkle else CONTAINED_READ
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

    def _update_reputation(self, miner: Miner, seen: Evidence, now: datetime) -> None:
        policy = self.policy
        held = max(miner.verified_bytes, seen.total_bytes)
        wrong = update_bytes(
            Reputation(miner.wrong_alpha, miner.wrong_beta), seen.passed, seen.failed, held=held
        )
        timeouts = update_bytes(
            Reputation(miner.timeout_alpha, miner.timeout_beta),
            seen.answered,
            seen.timed_out,
            held=held,
        )
        serving = update(
            Reputation(miner.serving_alpha, miner.serving_beta),
            seen.reads_served,
            seen.serving_failures,
            forgetting=SERVING_LAMBDA,
        )
        miner.wrong_alpha, miner.wrong_beta = wrong.alpha, wrong.beta
        miner.timeout_alpha, miner.timeout_beta = timeouts.alpha, timeouts.beta
        miner.serving_alpha, miner.serving_beta = serving.alpha, serving.beta
        if miner.disqualified_at is None and disqualifies(
            wrong, disqualify_below=policy.disqualify_below
        ):
            miner.disqualified_at = now
            log.warning(
                "miner disqualified",
                extra={"miner": miner.hotkey, "integrity_score": round(wrong.score, 4)},
            )
        low = suspends(timeouts, serving, suspend_below=policy.suspend_below)
        if low:
            why = "serving" if serving.score < policy.suspend_below else "timeouts"
            if miner.suspended_at is None or miner.suspended_for != why:
                log.warning(
                    "miner suspended",
                    extra={
                        "miner": miner.hotkey,
                        "for": why,
                        "timeout_score": round(timeouts.score, 4),
                        "serving_score": round(serving.score, 4),
                    },
                )
            miner.suspended_at = miner.suspended_at or now
            miner.suspended_for = why
        elif miner.suspended_at is not None:
            miner.suspended_at = miner.suspended_for = None
            log.info("miner no longer suspended", extra={"miner": miner.hotkey})

    def _end_suspensions(self, session: Session, now: datetime) -> None:
        """Probation (clean timeout and serving scores, nothing verified; one more failure
        suspends it again) for miners suspended longer than ``suspend_seconds``, and for
        miners suspended for timeouts that answer again (``last_seen``, from /v1/info) with
        nothing left to be challenged on: no evidence could ever lift those otherwise, and
        a miner back from a restart must be able to take new shares and earn again."""
        cutoff = now - timedelta(seconds=self.policy.suspend_seconds)
        holds = select(Placement.id).where(
            Placement.miner_id == Miner.id, Placement.state == "stored"
        )
        back_empty = and_(
            Miner.suspended_for == "timeouts",
            Miner.last_seen > Miner.suspended_at,
            ~holds.exists(),
        )
        for miner in session.scalars(
            select(Miner).where(
                Miner.suspended_at.is_not(None), or_(Miner.suspended_at <= cutoff, back_empty)
            )
        ):
            miner.timeout_alpha, miner.timeout_beta = 1.0, 0.0
            miner.serving_alpha, miner.serving_beta = 1.0, 0.0
            miner.suspended_at = miner.suspended_for = None
            log.info("miner on probation after its suspension", extra={"miner": miner.hotkey})

    def _sample(self, hotkey: str, now: float, verified: int) -> None:
        samples = self._verified[hotkey]
        samples.append((now, verified))
        # Keep one sample from before the window so the window's start is covered.
        while len(samples) > 1 and samples[1][0] <= now - self.policy.capacity_window:
            samples.popleft()

    # --- standings for weights ----------------------------------------------------------

    def standings(self, now: float | None = None) -> dict[str, MinerStanding]:
        """Every known miner: verified bytes to pay for and its reputations."""
        now = time.time() if now is None else now
        with self.sessions() as session:
            rows = session.scalars(select(Miner)).all()
        result = {}
        for miner in rows:
            samples = self._verified.get(miner.hotkey)
            # The latest is the running total itself: a loss counts at once.
            held = (
                capacity([*samples, (now, miner.verified_bytes)], now, self.policy.capacity_window)
                if samples
                else float(miner.verified_bytes)
            )
            result[miner.hotkey] = MinerStanding(
                verified_bytes=int(held),
                wrong=Reputation(miner.wrong_alpha, miner.wrong_beta),
                timeouts=Reputation(miner.timeout_alpha, miner.timeout_beta),
                disqualified=miner.disqualified_at is not None,
                serving=Reputation(miner.serving_alpha, miner.serving_beta),
                suspended=miner.suspended_at is not None,
            )
        return result


@dataclass
class Evidence:
    """One miner's evidence in one round, for its reputations: bytes per outcome."""

    passed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # wrong or missing
    answered: list[int] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)  # beyond containment
    reads_served: int = 0
    reads_failed: int = 0
    reads_unanswered: int = 0

    def add(self, entry: LogEntry, kept: str, *, silent: bool = False) -> None:
        size = entry.size
        if kept == "pass":
            self.passed.append(size)
        elif kept in FAILED:
            self.failed.append(size)
        if kept == "timeout":
            self.timed_out.append(size)
        elif kept != "contained":
            self.answered.append(size)
        if entry.kind in READS:
            if entry.verdict == "pass":
                self.reads_served += 1
            elif silent:
                self.reads_unanswered += 1
            else:
                self.reads_failed += 1

    @property
    def serving_failures(self) -> int:
        """Reads that failed while the miner was up: refused, wrong or missing ones, and
        unanswered ones when it answered other challenges in the same round (a miner that
        is simply offline is the timeouts score's business, not this one's)."""
        return self.reads_failed + (self.reads_unanswered if self.answered else 0)

    @property
    def total_bytes(self) -> int:
        return sum(self.passed) + sum(self.failed) + sum(self.timed_out)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _failed_call_verdict(exc: MinerError) -> str:
    """A call that brought no answer: 404 is ``missing``; a reply we cannot read, or a
    refusal for a reason of the request's own (4xx), is ``wrong``; silence, a dropped
    connection or an overloaded miner (5xx, 429) is a ``timeout``, which containment
    rechecks (and, for a read, a failure of serving)."""
    if exc.status == 404:
        return "missing"
    if exc.kind == "bad_reply" and exc.status is None:
        return "wrong"
    if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
        return "wrong"
    return "timeout"


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
