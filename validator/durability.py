"""Durability in nines: the chance a segment (and an object) is lost in a year.

Pure: numbers in, a frozen :class:`Durability` out; no I/O, no clock.

**What is modelled.** A segment is coded k-of-m, one share per miner. Miners fail
independently at ``failure_rate`` per second. A failure either takes the miner's shares for
good (``outage_seconds`` None: it left, or its disk died) or is an outage of exponential
length with that mean, which costs the shares only when it outlasts detection (a miner back
within containment passes again and nothing is repaired). Our repair loop (validator/repair.py)
then acts in three steps, each a window during which more shares may go:

- **detection**: the next challenge round (uniform in ``[0, challenge_seconds]``), then
  ``containment_rechecks`` more rounds before the challenger gives up (validator/challenger.py),
  or ``unseen_after`` if that is sooner (a miner unseen that long counts as gone);
- **waiting** for the next repair run (uniform in ``[0, repair_seconds]``);
- **rebuilding**: the failed miner's shares are rebuilt one after another at the measured
  ``rebuild_bytes_per_second`` (``bench/repair_time.py``), so a segment waits a uniform share
  of ``miner_bytes / rebuild_bytes_per_second``.

A segment is repaired once it has lost ``m - k - threshold + 1`` shares (``threshold``, the
repair threshold on health = healthy - k; default m - k: at the first loss). It is lost when
m - k + 1 shares are gone at once.

**Three forms**, computed side by side:

- ``renewal`` (ours, the headline figure): a segment cycles between full health and a repair.
  From full health it loses shares at ``(m - j) Λ`` (Λ the per-share rate of losses that
  count) until it reaches the trigger; then, over the repair window w, the m - trigger shares
  left each go with ``1 - exp(-Λ w)``, and the segment is lost when enough of them do
  (binomial tail). The window's three uniform parts are integrated by the midpoint rule. Loss
  rate = P(loss per cycle) / E[cycle length]; annual probability = 1 - exp(-rate · year).
- ``backblaze``: Backblaze's published calculator (github.com/Backblaze/erasure-coding-
  durability, ``durability.py``): the year cut into ``int(365 / days)`` fixed periods of one
  mean repair window, each shard failing in a period with ``afr / periods``, a period losing
  data when more than m - k of the m shards fail in it (binomial), and the year surviving only
  if every period does. Fixed periods miss failures that straddle two, so it is lower than the
  renewal form by about the number of orderings, m - k + 1 (one nine or less).
- ``poisson``: the Poisson form Storj's v3 whitepaper (storj/whitepaper, §3.4 "Redundancy")
  uses for a large n: the number of pieces lost in one repair window is Poisson with mean
  ``m · q`` (q one piece's loss probability in the window); a window loses data when more
  than m - k are lost. For small m it overstates the binomial by ``n^i (n-i)! / n!`` (4.9x
  for 4-of-8); for 29-of-80 the two agree within a factor of a few.

**Where it does not apply**: correlated failures (a /24 going dark, one operator running
many hotkeys), a repair queue swamped by a burst, and detection slower than one batch
(a miner holding more than ``challenge_batch`` placements has them checked a batch at a time;
suspension usually cuts that short). ``bench/durability.py`` simulates those.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

HOUR, DAY = 3600.0, 86400.0
YEAR = 365 * DAY
GIB = 2**30
QUADRATURE_POINTS = 12  # per uniform part of the window; the figures move < 1% beyond this
PERIODS = {"s": 1.0, "sec": 1.0, "hour": HOUR, "h": HOUR, "day": DAY, "d": DAY, "year": YEAR}
PERIODS |= {"y": YEAR, "week": 7 * DAY, "month": YEAR / 12}

# The rebuild rate bench/repair_time.py measured here (bench/results/repair_time.json).
MEASURED_REBUILD_BYTES_PER_SECOND = 8.0e6


def parse_rate(text: str) -> float:
    """Failures per second per miner from "5%/day", "0.02/year", "1%/hour" or "3/year".

    A fraction p per period means a miner fails within the period with probability p, so the
    rate is -ln(1 - p) / period (a count per period, "3/year", is taken as a rate as is).
    """
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(%?)\s*/\s*([a-z]+)\s*", text.lower())
    if match is None or match.group(3) not in PERIODS:
        raise ValueError(f"a rate looks like 5%/day, 0.1%/hour or 2%/year, got {text!r}")
    value, percent, unit = float(match.group(1)), match.group(2), match.group(3)
    period = PERIODS[unit]
    if percent:
        fraction = value / 100
        if not 0 <= fraction < 1:
            raise ValueError(f"a percentage per period is in [0, 100), got {text!r}")
        return -math.log1p(-fraction) / period
    if value < 0:
        raise ValueError(f"a rate is not negative, got {text!r}")
    return value / period


@dataclass(frozen=True, slots=True)
class DurabilityInputs:
    k: int
    m: int
    failure_rate: float  # failures per second per miner (parse_rate)
    repair_threshold: int | None = None  # None: m - k (repair at the first loss)
    challenge_seconds: float = 30.0
    containment_rechecks: int = 3
    repair_seconds: float = 30.0
    unseen_after: float = 3 * HOUR
    rebuild_bytes_per_second: float = MEASURED_REBUILD_BYTES_PER_SECOND
    miner_bytes: float = 100 * GIB  # shard bytes one miner holds: what its failure costs
    outage_seconds: float | None = None  # None: a failure takes the shares for good
    segments_per_object: int = 64  # a 1 GiB object of 16 MiB segments

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.m:
            raise ValueError(f"need 1 <= k <= m, got k={self.k} m={self.m}")
        if not 0 <= self.threshold <= self.m - self.k:
            raise ValueError(f"repair_threshold is in 0..m-k, got {self.repair_threshold}")
        if self.failure_rate < 0 or self.rebuild_bytes_per_second <= 0:
            raise ValueError("failure_rate must be >= 0 and rebuild_bytes_per_second > 0")
        if self.outage_seconds is not None and self.outage_seconds <= 0:
            raise ValueError("outage_seconds must be positive (or None: failures are for good)")

    @property
    def threshold(self) -> int:
        return self.m - self.k if self.repair_threshold is None else self.repair_threshold

    @property
    def trigger(self) -> int:
        """Shares lost before a repair starts (health drops below the threshold)."""
        return self.m - self.k - self.threshold + 1

    @property
    def rebuild_seconds(self) -> float:
        """Time to rebuild everything one failed miner held."""
        return self.miner_bytes / self.rebuild_bytes_per_second


@dataclass(frozen=True, slots=True)
class Durability:
    inputs: DurabilityInputs
    share_loss_rate: float  # Λ: per share per second, losses that need a repair
    detection_seconds: float  # mean, from a failure to the challenger giving up
    window_seconds: float  # mean, from a share lost to it rebuilt (the repair window)
    segment_losses_per_year: float  # the rate (renewal form), before 1 - exp(-rate)
    segment_loss_per_year: float  # renewal form
    object_loss_per_year: float  # renewal form, segments_per_object independent segments
    backblaze_segment_loss_per_year: float
    poisson_segment_loss_per_year: float
    # Of a segment's time, health below the threshold in the validator's records (from the
    # trigger's detection to the rebuild): what bench/churn.py reads from the database.
    fraction_below_threshold: float
    repair_bytes_per_stored_byte_per_year: float  # fetched + pushed, over shard bytes held

    @property
    def segment_nines(self) -> float:
        return nines(self.segment_loss_per_year)

    @property
    def object_nines(self) -> float:
        return nines(self.object_loss_per_year)

    def to_dict(self) -> dict[str, float | int | None]:
        i = self.inputs
        return {
            "k": i.k,
            "m": i.m,
            "repair_threshold": i.threshold,
            "failures_per_miner_per_day": i.failure_rate * DAY,
            "outage_seconds": i.outage_seconds,
            "challenge_seconds": i.challenge_seconds,
            "containment_rechecks": i.containment_rechecks,
            "repair_seconds": i.repair_seconds,
            "rebuild_mb_s": i.rebuild_bytes_per_second / 1e6,
            "miner_gib": i.miner_bytes / GIB,
            "segments_per_object": i.segments_per_object,
            "share_losses_per_day": self.share_loss_rate * DAY,
            "detection_seconds": self.detection_seconds,
            "window_seconds": self.window_seconds,
            "segment_losses_per_year": self.segment_losses_per_year,
            "segment_loss_per_year": self.segment_loss_per_year,
            "segment_nines": self.segment_nines,
            "object_loss_per_year": self.object_loss_per_year,
            "object_nines": self.object_nines,
            "backblaze_segment_loss_per_year": self.backblaze_segment_loss_per_year,
            "poisson_segment_loss_per_year": self.poisson_segment_loss_per_year,
            "fraction_below_threshold": self.fraction_below_threshold,
            "repair_bytes_per_stored_byte_per_year": self.repair_bytes_per_stored_byte_per_year,
        }


def nines(loss: float) -> float:
    """-log10 of a loss probability: 1e-9 is 9 nines (99.9999999%); inf for no loss."""
    return math.inf if loss <= 0 else -math.log10(loss)


def binomial_tail(n: int, at_least: int, p: float) -> float:
    """P(X >= at_least) for X ~ Binomial(n, p), summed from the small end's terms."""
    if at_least <= 0:
        return 1.0
    if at_least > n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    return math.fsum(
        math.exp(math.log(math.comb(n, i)) + i * log_p + (n - i) * log_q)
        for i in range(at_least, n + 1)
    )


def poisson_tail(mean: float, at_least: int) -> float:
    """P(X >= at_least) for X ~ Poisson(mean)."""
    if at_least <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    # The tail's terms directly: 1 - CDF would cancel to 0 for the tiny figures we want.
    terms: list[float] = []
    term = math.exp(-mean + at_least * math.log(mean) - math.lgamma(at_least + 1))
    i = at_least
    while term > 0 and (not terms or term > terms[-1] * 1e-18):
        terms.append(term)
        i += 1
        term *= mean / i
    return math.fsum(terms)


def _midpoints(count: int = QUADRATURE_POINTS) -> list[float]:
    return [(i + 0.5) / count for i in range(count)]


def _detections(i: DurabilityInputs) -> list[float]:
    """Detection delays at the quadrature points: next round, then the rechecks."""
    rechecks = i.containment_rechecks * i.challenge_seconds
    return [min(u * i.challenge_seconds + rechecks, i.unseen_after) for u in _midpoints()]


def _survives_detection(i: DurabilityInputs, detection: float) -> float:
    """P(an outage outlasts the detection delay): the share is then lost for good."""
    if i.outage_seconds is None:
        return 1.0
    return math.exp(-detection / i.outage_seconds)


def _windows(i: DurabilityInputs) -> list[tuple[float, float]]:
    """(weight, exposed interval) over the window's uniform parts, from a failure to the
    rebuild. For an outage that outlasted detection the share is lost only from detection,
    but counting it from the failure is closer to what happens: a repair must read k shares
    from miners up now, and one blocked by others away waits while they too outlast
    detection (bench/durability.py measures this)."""
    points = _midpoints()
    detections = _detections(i)
    weight = 1.0 / len(points) ** 3
    windows = []
    for detection in detections:
        counted = _survives_detection(i, detection)
        if counted == 0:
            continue
        for u_wait in points:
            for u_queue in points:
                lost = detection + u_wait * i.repair_seconds + u_queue * i.rebuild_seconds
                windows.append((weight * counted, lost))
    return windows


def durability(i: DurabilityInputs) -> Durability:
    """The expected annual loss of a segment and of an object, three ways (module doc)."""
    detections = _detections(i)
    detection = math.fsum(detections) / len(detections)
    counted = math.fsum(_survives_detection(i, d) for d in detections) / len(detections)
    share_loss_rate = i.failure_rate * counted  # Λ
    windows = _windows(i)
    total_weight = math.fsum(w for w, _ in windows)
    mean_window = math.fsum(w * lost for w, lost in windows) / total_weight if total_weight else 0.0
    tolerated = i.m - i.k
    trigger = i.trigger
    # Renewal: accumulate `trigger` losses (none repaired meanwhile), then the window.
    accumulate = math.inf
    if share_loss_rate > 0:
        accumulate = math.fsum(1 / ((i.m - j) * share_loss_rate) for j in range(trigger))
        more = tolerated + 1 - trigger  # further losses within the window that lose it
        per_cycle = (
            math.fsum(
                w * binomial_tail(i.m - trigger, more, -math.expm1(-share_loss_rate * lost))
                for w, lost in windows
            )
            / total_weight
        )
        rate = per_cycle / (accumulate + mean_window)
        # As the validator sees it: below the threshold from detection until rebuilt.
        visible = (i.repair_seconds + i.rebuild_seconds) / 2
        below = visible / (accumulate + mean_window)
    else:
        rate = below = 0.0
    segment = -math.expm1(-rate * YEAR)
    obj = -math.expm1(i.segments_per_object * math.log1p(-segment)) if segment < 1 else 1.0
    # Each cycle ends in a repair that fetches k shares and pushes the `trigger` it lost.
    cycles_per_year = YEAR / (accumulate + mean_window) if share_loss_rate > 0 else 0.0
    bandwidth = cycles_per_year * (i.k + trigger) / i.m
    return Durability(
        inputs=i,
        share_loss_rate=share_loss_rate,
        detection_seconds=detection,
        window_seconds=mean_window,
        segment_losses_per_year=rate * YEAR,
        segment_loss_per_year=segment,
        object_loss_per_year=obj,
        backblaze_segment_loss_per_year=backblaze_annual_loss(
            i.k, i.m - i.k, share_loss_rate * YEAR, max(mean_window, 1.0) / DAY
        ),
        poisson_segment_loss_per_year=poisson_annual_loss(
            i.k, i.m, share_loss_rate, max(mean_window, 1.0)
        ),
        fraction_below_threshold=below,
        repair_bytes_per_stored_byte_per_year=bandwidth,
    )


def backblaze_annual_loss(
    data_shards: int, parity_shards: int, annual_failure_rate: float, replacement_days: float
) -> float:
    """Backblaze's calculator: fixed periods of ``replacement_days``, each shard failing in
    one with ``annual_failure_rate / periods``, data lost in a period when more than
    ``parity_shards`` fail in it; the year survives only if every period does."""
    periods = max(1, int(365.0 / replacement_days))
    per_period = min(1.0, annual_failure_rate / periods)
    total = data_shards + parity_shards
    period_loss = binomial_tail(total, parity_shards + 1, per_period)
    return _every_period(period_loss, periods)


def poisson_annual_loss(k: int, m: int, share_loss_rate: float, window_seconds: float) -> float:
    """Storj's Poisson form: pieces lost in one repair window ~ Poisson(m · q), data lost
    when more than m - k are; the year is year / window such windows."""
    q = -math.expm1(-share_loss_rate * window_seconds)
    window_loss = poisson_tail(m * q, m - k + 1)
    return _every_period(window_loss, YEAR / window_seconds)


def _every_period(loss: float, periods: float) -> float:
    """1 - (1 - loss) ** periods without losing a tiny ``loss`` to rounding."""
    if loss >= 1:
        return 1.0
    return -math.expm1(periods * math.log1p(-loss))
