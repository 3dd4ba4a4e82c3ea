"""Miner scores, as pure functions over frozen values (no clock, no I/O).

Reputation is a Beta model with forgetting, after Storj: a success adds weight to alpha, a
failure to beta, and both decay by lambda each update, so old behaviour fades. It is kept
twice, for wrong answers and for timeouts: an honest miner that was offline for a while is
not treated like one that lies.

    score        = alpha / (alpha + beta)
    availability = wrong_score * timeout_score
    weight       ∝ verified_capacity * availability, 0 once disqualified

Disqualification (after Storj) is for wrong answers only and sticks: once the wrong-answer
score falls below the threshold the validator records it and the miner's weight stays 0.
A miner that was merely offline loses weight in proportion, and its shards go to repair.

Capacity is what was proven: the bytes whose latest challenge passed. New miners start from
a prior of (1, 0) so an honest newcomer counts fully from its first clean answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LAMBDA = 0.999
DISQUALIFY_BELOW = 0.9


@dataclass(frozen=True, slots=True)
class Reputation:
    alpha: float = 1.0
    beta: float = 0.0

    @property
    def score(self) -> float:
        total = self.alpha + self.beta
        return self.alpha / total if total > 0 else 0.0


def update(
    reputation: Reputation, successes: int, failures: int, *, forgetting: float = LAMBDA
) -> Reputation:
    """Fold one round's outcomes in, one at a time, forgetting a little each time."""
    alpha, beta = reputation.alpha, reputation.beta
    for _ in range(successes):
        alpha, beta = forgetting * alpha + 1.0, forgetting * beta
    for _ in range(failures):
        alpha, beta = forgetting * alpha, forgetting * beta + 1.0
    return Reputation(alpha, beta)


@dataclass(frozen=True, slots=True)
class MinerStanding:
    verified_bytes: int  # bytes whose latest challenge passed
    wrong: Reputation
    timeouts: Reputation
    disqualified: bool = False


def disqualifies(wrong: Reputation, *, disqualify_below: float = DISQUALIFY_BELOW) -> bool:
    return wrong.score < disqualify_below


def availability(standing: MinerStanding, *, disqualify_below: float = DISQUALIFY_BELOW) -> float:
    if standing.disqualified or disqualifies(standing.wrong, disqualify_below=disqualify_below):
        return 0.0
    return standing.wrong.score * standing.timeouts.score


def weights(
    standings: Mapping[str, MinerStanding], *, disqualify_below: float = DISQUALIFY_BELOW
) -> dict[str, float]:
    """Normalised weights (summing to 1, or all 0), never NaN."""
    raw = {
        hotkey: max(0, s.verified_bytes) * availability(s, disqualify_below=disqualify_below)
        for hotkey, s in standings.items()
    }
    total = math.fsum(raw.values())
    if total <= 0 or not math.isfinite(total):
        return dict.fromkeys(standings, 0.0)
    return {hotkey: value / total for hotkey, value in raw.items()}


def time_weighted(samples: Sequence[tuple[float, int]], now: float, window: float) -> float:
    """Mean verified bytes over the last ``window`` seconds, from (time, bytes) samples.

    Each sample holds until the next; the window is clipped to the first sample.
    """
    start = now - window
    points = sorted(samples)
    if not points:
        return 0.0
    area = 0.0
    covered = 0.0
    for (t, value), (t_next, _) in zip(points, [*points[1:], (now, 0)], strict=True):
        lo, hi = max(t, start), min(t_next, now)
        if hi > lo:
            area += value * (hi - lo)
            covered += hi - lo
    return area / covered if covered > 0 else 0.0
