"""Per-miner summaries of the challenge log: pass rate, latency percentiles, standing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from validator.models import ChallengeRecord
from validator.scoring import DISQUALIFY_BELOW, MinerStanding, availability, weights


@dataclass(frozen=True, slots=True)
class MinerSummary:
    miner: str
    challenges: int
    passed: int
    wrong: int
    missing: int
    timeouts: int
    pass_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    verified_bytes: int
    wrong_score: float  # integrity: the share of its data that passed lately
    timeout_score: float
    availability: float
    weight: float
    serving_score: float = 1.0
    disqualified: bool = False
    suspended: bool = False


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (None for none)."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarise(
    sessions: sessionmaker[Session],
    standings: Mapping[str, MinerStanding],
    *,
    since: float | None = None,
    disqualify_below: float = DISQUALIFY_BELOW,
) -> list[MinerSummary]:
    """One row per miner seen in the log (since ``since``) or in ``standings``."""
    c = ChallengeRecord
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    latencies: dict[str, list[float]] = defaultdict(list)
    with sessions() as session:
        where = [c.kind != "repair"]  # repairs are events, not answers
        if since is not None:
            where.append(c.issued_at >= since)
        for miner, verdict, n in session.execute(
            select(c.miner, c.verdict, func.count()).where(*where).group_by(c.miner, c.verdict)
        ):
            counts[miner][verdict] = n
        rows = session.execute(
            select(c.miner, c.latency_ms).where(c.latency_ms.is_not(None), *where)
        ).yield_per(10_000)
        for miner, latency in rows:
            if latency is not None:
                latencies[miner].append(latency)
    shares = weights(standings, disqualify_below=disqualify_below)
    summaries = []
    for miner in sorted(set(counts) | set(standings)):
        tally = counts.get(miner, {})
        total = sum(tally.values())
        ordered = sorted(latencies.get(miner, ()))
        standing = standings.get(miner)
        summaries.append(
            MinerSummary(
                miner=miner,
                challenges=total,
                passed=tally.get("pass", 0),
                wrong=tally.get("wrong", 0),
                missing=tally.get("missing", 0),
                timeouts=tally.get("timeout", 0),
                pass_rate=tally.get("pass", 0) / total if total else None,
                p50_ms=percentile(ordered, 50),
                p95_ms=percentile(ordered, 95),
                p99_ms=percentile(ordered, 99),
                verified_bytes=standing.verified_bytes if standing else 0,
                wrong_score=standing.wrong.score if standing else 0.0,
                timeout_score=standing.timeouts.score if standing else 0.0,
                availability=(
                    availability(standing, disqualify_below=disqualify_below) if standing else 0.0
                ),
                weight=shares.get(miner, 0.0),
                serving_score=standing.serving.score if standing else 0.0,
                disqualified=bool(standing and standing.disqualified),
                suspended=bool(standing and standing.suspended),
            )
        )
    return summaries
