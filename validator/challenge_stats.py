"""Per-miner challenge figures kept as the log grows: a derived index of the challenge log.

Each recorded entry (every kind but ``repair``: repairs are events, not answers) adds to a
row per miner per time bucket: its count by verdict and a latency histogram. The rows are
written in the transaction that appends the entries (``ChallengeLogStore.record``), so they
can never disagree with the log; the log stays the evidence (``audit verify`` reads only
the log), these rows only make a summary cheap.

- **Buckets.** By ``issued_at``, at three widths (10 min, 1 h, 1 day) plus one all-time row
  per miner (``span`` 0). A window ``[since, now]`` starts at ``since`` rounded down to
  10 minutes and is read as 10-minute rows up to the next hour, hour rows up to the next
  day, then day rows: per miner at most 5 + 23 rows and one a day of the window, whatever
  the log holds (a 7-day window of 256 miners is under 10k rows, its log ~330M).
- **Latency.** Fixed log-spaced bins: bin 0 is under 1 ms, bin ``i`` in 1..51 is
  ``[2^((i-1)/3), 2^(i/3))`` ms, bin 52 is 2^17 ms (131 s) and over. A percentile is the
  nearest-rank one over the bins, given as its bin's geometric middle (the lower edge for
  the last bin, 0.5 ms for the first): within 12% of the exact value (each bin is 26%
  wide), and exactly the exact value's bin (a test checks both against the log).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from validator.models import LATENCY_BINS, ChallengeRecord, challenge_stats

SPANS: Final = (600, 3600, 86400)  # bucket widths, seconds, finest first
ALL_TIME: Final = 0  # the span of the one all-time row per miner (start 0)
BINS: Final = LATENCY_BINS
STEPS_PER_DOUBLING: Final = 3
VERDICTS: Final = ("pass", "wrong", "missing", "timeout")  # counted apart; others in total only
KEY: Final = ("miner", "span", "start")
COUNTS: Final = ("challenges", *VERDICTS)


def latency_bin(ms: float) -> int:
    """The histogram bin of a latency in milliseconds."""
    if not ms >= 1.0:  # NaN too: no latency can be below zero or undefined, but never crash
        return 0
    if ms >= 2 ** ((BINS - 2) / STEPS_PER_DOUBLING):
        return BINS - 1
    # floor(log2(ms) * 3) + 1, corrected for float error at the exact edges 2^(i/3)
    i = math.floor(math.log2(ms) * STEPS_PER_DOUBLING) + 1
    if i > 1 and ms < 2 ** ((i - 1) / STEPS_PER_DOUBLING):
        i -= 1
    elif ms >= 2 ** (i / STEPS_PER_DOUBLING):
        i += 1
    return min(i, BINS - 1)


def bin_value(i: int) -> float:
    """What a percentile falling in bin ``i`` is reported as, in milliseconds."""
    if i == 0:
        return 0.5
    if i == BINS - 1:
        return float(2 ** ((BINS - 2) / STEPS_PER_DOUBLING))
    return float(2 ** ((i - 0.5) / STEPS_PER_DOUBLING))


@dataclass(slots=True)
class Tally:
    """Counts by verdict and the latency histogram of some entries."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    bins: list[int] = field(default_factory=lambda: [0] * BINS)

    def add(self, verdict: str, latency_ms: float | None) -> None:
        self.count(verdict, None if latency_ms is None else latency_bin(latency_ms))

    def count(self, verdict: str, latency_bin: int | None) -> None:
        self.counts["challenges"] += 1
        if verdict in self.counts:
            self.counts[verdict] += 1
        if latency_bin is not None:
            self.bins[latency_bin] += 1

    def merge(self, counts: Iterable[int], bins: Iterable[int]) -> None:
        for name, n in zip(COUNTS, counts, strict=True):
            self.counts[name] += n
        self.bins = [a + b for a, b in zip(self.bins, bins, strict=True)]

    def percentile(self, q: float) -> float | None:
        """Nearest-rank, as :func:`validator.audit.percentile` over the exact values."""
        n = sum(self.bins)
        if not n:
            return None
        rank = max(1, min(n, round(q / 100 * n + 0.5)))
        seen = 0
        for i, count in enumerate(self.bins):
            seen += count
            if seen >= rank:
                return bin_value(i)
        raise AssertionError("unreachable: the ranks are within the counts")


@dataclass(frozen=True, slots=True)
class Observation:
    """What a log entry contributes (the columns of it that are read)."""

    miner: str
    kind: str
    verdict: str
    issued_at: float
    latency_ms: float | None


def tally(observations: Iterable[Observation]) -> dict[tuple[str, int, int], Tally]:
    """(miner, span, start) -> the tally of those entries, for every row they touch."""
    rows: dict[tuple[str, int, int], Tally] = {}
    for o in observations:
        if o.kind == "repair":
            continue
        at = None if o.latency_ms is None else latency_bin(o.latency_ms)  # once, not per row
        keys = [(o.miner, ALL_TIME, 0)]
        keys += [(o.miner, span, int(o.issued_at // span) * span) for span in SPANS]
        for key in keys:
            row = rows.get(key)
            if row is None:
                row = rows[key] = Tally()
            row.count(o.verdict, at)
    return rows


def _bin_column(i: int) -> str:
    return f"bin{i:02d}"


BIN_COLUMNS: Final = tuple(_bin_column(i) for i in range(BINS))


def add(session: Session | Connection, rows: Mapping[tuple[str, int, int], Tally]) -> None:
    """Add ``rows`` to the table: one upsert that sums in SQL, so two writers never lose
    each other's counts."""
    if not rows:
        return
    values: list[dict[str, Any]] = []
    for (miner, span, start), t in rows.items():
        value: dict[str, Any] = {"miner": miner, "span": span, "start": start, **t.counts}
        value.update(zip(BIN_COLUMNS, t.bins, strict=True))
        values.append(value)
    bind = session.get_bind() if isinstance(session, Session) else session
    # The two databases we run on spell an upsert the same way, through their own dialects.
    insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    statement = insert(challenge_stats)
    table = challenge_stats.c
    summed = {name: table[name] + statement.excluded[name] for name in (*COUNTS, *BIN_COLUMNS)}
    session.execute(statement.on_conflict_do_update(index_elements=list(KEY), set_=summed), values)


def cover(since: float | None) -> list[tuple[int, int, int | None]]:
    """The (span, first start, end start or None) ranges of rows that make up the window
    from ``since`` (rounded down to the finest bucket) to now."""
    if since is None:
        return [(ALL_TIME, 0, None)]
    at = math.floor(since / SPANS[0]) * SPANS[0]
    ranges: list[tuple[int, int, int | None]] = []
    for span, bigger in itertools.pairwise(SPANS):
        upto = math.ceil(at / bigger) * bigger
        if at < upto:
            ranges.append((span, at, upto))
        at = upto
    ranges.append((SPANS[-1], at, None))
    return ranges


def window(session: Session, since: float | None) -> dict[str, Tally]:
    """Each miner's tally over the window from ``since`` (None: all time) to now."""
    c = challenge_stats.c
    ranges = []
    for span, first, end in cover(since):
        ranges.append(
            and_(c.span == span, c.start >= first, *(() if end is None else (c.start < end,)))
        )
    sums = [func.sum(c[name]) for name in (*COUNTS, *BIN_COLUMNS)]
    query = select(c.miner, *sums).where(or_(*ranges)).group_by(c.miner)
    out: dict[str, Tally] = {}
    for miner, *figures in session.execute(query):
        t = out[miner] = Tally()
        t.merge((int(n) for n in figures[: len(COUNTS)]), (int(n) for n in figures[len(COUNTS) :]))
    return out


BACKFILL_ROWS: Final = 200_000  # log rows tallied in memory before their sums are written


def backfill(connection: Connection) -> int:
    """Rebuild the table from the log (the migration that made it runs this); entries read
    in order, their tallies written every ``BACKFILL_ROWS``, so memory stays bounded
    however long the log is. Returns the entries read."""
    r = ChallengeRecord.__table__.c
    connection.execute(challenge_stats.delete())
    query = (
        select(r.miner, r.kind, r.verdict, r.issued_at, r.latency_ms)
        .where(r.kind != "repair")
        .order_by(r.seq)
    )
    read = 0
    batch: list[Observation] = []
    for row in connection.execute(query.execution_options(yield_per=10_000)):
        batch.append(Observation(*row))
        if len(batch) >= BACKFILL_ROWS:
            add(connection, tally(batch))
            read += len(batch)
            batch = []
    add(connection, tally(batch))
    return read + len(batch)
