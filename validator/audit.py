"""Per-miner summaries of the challenge log: pass rate, latency percentiles, standing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from validator import challenge_stats
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

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (all scalars: no deep copy, unlike ``dataclasses.asdict``,
        which took ~1 ms a row, a third of a second for 256 miners)."""
        return {name: getattr(self, name) for name in _SUMMARY_FIELDS}


_SUMMARY_FIELDS = tuple(f.name for f in fields(MinerSummary))


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
    """One row per miner seen in the log (since ``since``, rounded down to 10 minutes) or in
    ``standings``. Read from the per-miner figures kept with the log (``challenge_stats``):
    the counts are exact, the latency percentiles to their histogram bin."""
    with sessions() as session:
        tallies = challenge_stats.window(session, since)
    shares = weights(standings, disqualify_below=disqualify_below)
    summaries = []
    for miner in sorted(set(tallies) | set(standings)):
        tally = tallies.get(miner, challenge_stats.Tally())
        counts = tally.counts
        total = counts["challenges"]
        standing = standings.get(miner)
        summaries.append(
            MinerSummary(
                miner=miner,
                challenges=total,
                passed=counts["pass"],
                wrong=counts["wrong"],
                missing=counts["missing"],
                timeouts=counts["timeout"],
                pass_rate=counts["pass"] / total if total else None,
                p50_ms=tally.percentile(50),
                p95_ms=tally.percentile(95),
                p99_ms=tally.percentile(99),
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
