"""The per-miner figures kept with the challenge log equal the log: the summary read from
them (what /v1/audit/summary and the dashboard show) is what a walk over the log's rows in
the same window gives, for random rounds; the migration's backfill builds the same rows."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from alembic import command
from bittensor_wallet import Keypair
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from protocol.db import alembic_config, make_engine, upgrade
from validator.audit import percentile, summarise
from validator.audit_log import LogEntry, chain_after
from validator.challenge_stats import (
    BINS,
    SPANS,
    Tally,
    backfill,
    bin_value,
    cover,
    latency_bin,
)
from validator.log_store import ChallengeLogStore, to_values
from validator.models import ChallengeRecord, challenge_stats

VALIDATOR = Keypair.create_from_uri("//StatsValidator")
MINERS = [f"5Miner{i}" for i in range(5)]
DAY = 86400.0
NOW = 1_800_000_000.0  # a fixed "now": windows are measured back from it


def random_entry(rng: random.Random) -> LogEntry:
    kind = rng.choice(["merkle", "merkle", "retrieval", "read", "repair"])
    verdict = rng.choice(["pass", "pass", "pass", "wrong", "missing", "timeout", "repaired"])
    latency = None if verdict == "timeout" else rng.choice([
        rng.uniform(0, 2), rng.lognormvariate(3, 1.5), 2 ** (rng.randrange(60) / 3), 2e5,
    ])  # fmt: skip
    return LogEntry(
        seq=0, validator="", miner=rng.choice(MINERS), shard_id="ab" * 32, kind=kind,
        nonce=f"{rng.getrandbits(128):032x}", indices=(), root="ab" * 32,
        issued_at=NOW - rng.uniform(0, 9 * DAY), answered_at=None, latency_ms=latency,
        verdict=verdict, reason="", proof_digest="",
    )  # fmt: skip


def direct(log: Sequence[LogEntry], since: float | None) -> dict[str, dict[str, Any]]:
    """The summary's figures by a walk over the log, from ``since`` rounded down to 10 min."""
    start = -math.inf if since is None else math.floor(since / 600) * 600
    verdicts: dict[str, Counter[str]] = defaultdict(Counter)
    latencies: dict[str, list[float]] = defaultdict(list)
    for e in log:
        if e.kind == "repair" or e.issued_at < start:
            continue
        verdicts[e.miner][e.verdict] += 1
        if e.latency_ms is not None:
            latencies[e.miner].append(e.latency_ms)
    out = {}
    for miner, counted in verdicts.items():
        ordered = sorted(latencies[miner])
        out[miner] = {
            "challenges": sum(counted.values()),
            "passed": counted["pass"],
            "wrong": counted["wrong"],
            "missing": counted["missing"],
            "timeouts": counted["timeout"],
            **{f"p{q}": percentile(ordered, q) for q in (50, 95, 99)},
        }
    return out


def assert_summary_is_the_log(sessions: sessionmaker[Session], log: Sequence[LogEntry]) -> None:
    for since in (None, NOW - 3600, NOW - 1234.5, NOW - DAY, NOW - 7 * DAY, NOW - 3.3 * DAY):
        expected = direct(log, since)
        rows = {r.miner: r for r in summarise(sessions, {}, since=since)}
        assert set(rows) == set(expected), since
        for miner, want in expected.items():
            got = rows[miner]
            assert (got.challenges, got.passed, got.wrong, got.missing, got.timeouts) == (
                want["challenges"], want["passed"], want["wrong"], want["missing"],
                want["timeouts"],
            ), (since, miner)  # fmt: skip
            assert got.pass_rate == want["passed"] / want["challenges"]
            for q, shown in ((50, got.p50_ms), (95, got.p95_ms), (99, got.p99_ms)):
                exact = want[f"p{q}"]
                if exact is None:
                    assert shown is None
                    continue
                # the exact percentile's own bin, and so within the bin's 12% of it
                assert shown == bin_value(latency_bin(exact)), (since, miner, q)
                if 1 <= exact < 2 ** ((BINS - 2) / 3):
                    assert abs(shown - exact) <= 0.13 * exact


def stats_rows(sessions: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with sessions() as session:
        return [tuple(r) for r in session.execute(select(challenge_stats).order_by(
            challenge_stats.c.span, challenge_stats.c.start, challenge_stats.c.miner))]  # fmt: skip


def test_summaries_from_the_kept_figures_equal_a_walk_over_the_log(
    sessions: sessionmaker[Session],
) -> None:
    rng = random.Random(18)
    store = ChallengeLogStore(sessions, VALIDATOR)
    log: list[LogEntry] = []
    for _ in range(12):  # rounds of a few hundred entries, as the challenger records them
        batch = [random_entry(rng) for _ in range(rng.randrange(0, 300))]
        log.extend(store.record(lambda _session, batch=batch: batch))
    assert len(log) > 1000
    assert_summary_is_the_log(sessions, log)

    kept = stats_rows(sessions)
    with sessions.begin() as session:  # the migration's rebuild gives the same rows
        assert backfill(session.connection()) == sum(e.kind != "repair" for e in log)
    assert stats_rows(sessions) == kept


def test_a_failed_round_adds_nothing_to_the_figures(sessions: sessionmaker[Session]) -> None:
    store = ChallengeLogStore(sessions, VALIDATOR)
    rng = random.Random(7)
    log = store.record(lambda _s: [random_entry(rng) for _ in range(50)])

    def fails(_session: Session) -> list[LogEntry]:
        raise RuntimeError("the round's transaction fails")

    with pytest.raises(RuntimeError):
        store.record(fails)
    assert_summary_is_the_log(sessions, log)


def test_the_migration_backfills_the_figures_from_an_existing_log(db_url: str) -> None:
    command.upgrade(alembic_config(db_url, "validator"), "0008_validator")
    engine = make_engine(db_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    rng = random.Random(9)
    try:
        log: list[LogEntry] = []
        head = None
        for _ in range(400):  # a log written before the figures existed, as 0008 held it
            signed = chain_after(head, random_entry(rng), VALIDATOR)
            head = (signed.seq, signed.entry_hash)
            log.append(signed)
        with sessions.begin() as session:
            session.execute(insert(ChallengeRecord), [to_values(e) for e in log])
        upgrade(db_url, "validator")
        assert_summary_is_the_log(sessions, log)
    finally:
        engine.dispose()


def test_latency_bins_are_log_spaced_and_each_value_is_its_bins() -> None:
    assert latency_bin(0.0) == latency_bin(0.999) == 0
    assert latency_bin(1.0) == 1
    assert latency_bin(1e9) == latency_bin(float("inf")) == BINS - 1
    for i in range(1, BINS - 1):  # each edge 2^(i/3) opens bin i + 1
        edge = 2 ** (i / 3)
        assert latency_bin(edge) == i + 1, i
        assert latency_bin(math.nextafter(edge, 0)) == i, i
        assert latency_bin(bin_value(i)) == i
    assert latency_bin(bin_value(BINS - 1)) == BINS - 1


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_a_histogram_percentile_is_the_exact_percentiles_bin(values: list[float]) -> None:
    tally = Tally()
    for v in values:
        tally.add("pass", v)
    ordered = sorted(values)
    for q in (1, 50, 95, 99, 100):
        exact = percentile(ordered, q)
        assert exact is not None
        assert tally.percentile(q) == bin_value(latency_bin(exact))


@given(st.floats(0, 2e9, allow_nan=False))
def test_a_window_is_covered_once_by_buckets_from_its_10_minute_start(since: float) -> None:
    """Every instant from the window's start on lies in exactly one row of the cover."""
    ranges = cover(since)
    start = math.floor(since / 600) * 600
    assert ranges[0][1] == start
    for (span, first, end), (_, after, _) in itertools.pairwise(ranges):
        assert end == after and first % span == 0 and end % span == 0
    assert ranges[-1][0] == SPANS[-1] and ranges[-1][2] is None
    assert sum((end - first) // span for span, first, end in ranges[:-1]) <= 5 + 23
