"""Miner scores, as pure functions over frozen values (no clock, no I/O).

A miner is an adversary who wants credit for bytes it does not hold or serve, so every
figure here is evidence the validator gathered itself. Three Beta reputations (successes add
to alpha, failures to beta, both forgetting old evidence), after Storj's audit, online and
unknown-audit scores:

- **integrity**: does it hold what it acknowledged? Successes are passed challenges and
  retrievals; failures are wrong answers, missing shards and refused reads. Weighted by
  **bytes**, forgetting in proportion to what the miner holds (:func:`update_bytes`), so the
  score is about the share of *its own data* that failed lately, whether it holds 1 shard or
  10,000. Below ``disqualify_below`` the miner is **disqualified**, for good (Storj).
- **timeouts** (online): successes are answers of any kind, failures are timeouts that
  outlived containment. Byte-weighted the same way.
- **serving**: did the reads it was asked for arrive? The validator's own retrievals (on a
  random schedule, indistinguishable from a user's read) and the shares users' downloads and
  repairs fetched. One observation per read, quick forgetting (``SERVING_LAMBDA``).

A timeout or serving score below ``suspend_below`` **suspends** the miner (Storj's online
score): weight 0, nothing new placed on it, its shares repaired elsewhere. Unlike
disqualification it lifts once the scores recover.

    availability = integrity * timeouts * serving, 0 if disqualified or suspended
    weight       ∝ verified_capacity * availability

**Why these thresholds** (docs/architecture.md has the arithmetic). With byte forgetting
over the miner's held bytes H, the integrity score after the miner's shards have been
challenged once more is about the fraction of them that passed: a miner that lost a fraction
d falls to ~1 - d. ``disqualify_below = 0.95`` so losing 5% or more of what it acknowledged
disqualifies within one rotation of its shards, while an honest miner whose disk rots one
shard of many stays near 1. One failure of a shard as large as everything a miner holds
drops the score to exp(-1) / (1 + ...) < 0.5: a miner holding one shard that loses it is out.
``suspend_below = 0.6`` (Storj's online threshold); with ``SERVING_LAMBDA = 0.8`` a miner
that served every read before is suspended after 3 failed reads in a row, and one that never
served is suspended at its first failed read.

Capacity is what was proven: the bytes whose latest challenge passed, and never more than
the miner holds verified right now (a failure takes its bytes off at once, not averaged
over an hour). New miners start from a prior of (1, 0) so an honest newcomer counts fully
from its first clean answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

LAMBDA = 0.999
DISQUALIFY_BELOW = 0.95
SUSPEND_BELOW = 0.6
SERVING_LAMBDA = 0.8


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


def update_bytes(
    reputation: Reputation, passed: Iterable[int], failed: Iterable[int], *, held: float
) -> Reputation:
    """Fold in observations weighted by their bytes, forgetting ``exp(-bytes / held)`` at each.

    ``held`` is what the miner holds (at least the observation's own size): the memory is
    about one ``held``'s worth of evidence, so the score answers "what share of its data
    failed lately" at any size. Passes are folded in first and failures last, the order that
    is worst for the miner.
    """
    alpha, beta = reputation.alpha, reputation.beta
    for size in passed:
        keep = math.exp(-size / max(held, size, 1))
        alpha, beta = keep * alpha + size, keep * beta
    for size in failed:
        keep = math.exp(-size / max(held, size, 1))
        alpha, beta = keep * alpha, keep * beta + size
    return Reputation(alpha, beta)


@dataclass(frozen=True, slots=True)
class MinerStanding:
    verified_bytes: int  # bytes whose latest challenge passed
    wrong: Reputation  # integrity
    timeouts: Reputation
    disqualified: bool = False
    serving: Reputation = field(default_factory=Reputation)
    suspended: bool = False


def disqualifies(wrong: Reputation, *, disqualify_below: float = DISQUALIFY_BELOW) -> bool:
    return wrong.score < disqualify_below


def suspends(
    timeouts: Reputation, serving: Reputation, *, suspend_below: float = SUSPEND_BELOW
) -> bool:
    return timeouts.score < suspend_below or serving.score < suspend_below


def availability(standing: MinerStanding, *, disqualify_below: float = DISQUALIFY_BELOW) -> float:
    if standing.disqualified or standing.suspended:
        return 0.0
    if disqualifies(standing.wrong, disqualify_below=disqualify_below):
        return 0.0
    return standing.wrong.score * standing.timeouts.score * standing.serving.score


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


def capacity(samples: Sequence[tuple[float, int]], now: float, window: float) -> float:
    """Verified bytes to pay for: the mean over ``window`` (a newcomer cannot jump the
    queue by a burst), but never more than the latest sample (a loss counts at once)."""
    if not samples:
        return 0.0
    latest = max(samples)[1]
    # Never below zero: a negative figure is refused by the chain with every other miner's
    # weights (the running total is exact, validator/verified.py; this guards a hand edit).
    return max(0.0, min(float(latest), time_weighted(samples, now, window)))


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
