"""A short churn run with real processes (bench.churn): 16 miners killed and restarted on a
seeded schedule while the validator challenges and repairs; nothing may be lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.churn import ChurnConfig, run

pytestmark = [pytest.mark.timeout(180)]


def test_churn_loses_nothing_and_restores_health(tmp_path: Path) -> None:
    config = ChurnConfig(
        minutes=0.25, seed=3, objects=6, kills_per_minute=14.0, outage_seconds=10.0
    )
    report = run(config, tmp_path)
    measured = report["measured"]
    assert measured["kills"] >= 2
    assert measured["restarts"] == measured["kills"]
    assert measured["objects_verified"] == 6
    assert measured["objects_lost"] == 0
    # Health dipped and came back: some share was lost and rebuilt, and at the end every
    # segment is at full health (run() waits for that, or raises).
    assert measured["health_restored"], measured["shortfall"]
    assert measured["lowest_health"] >= 1  # never more than m - k - 1 miners away
    assert measured["samples"] > 0
    assert 0 <= measured["fraction_below_threshold"] < 1
    assert report["predicted"]["repair_bytes_per_stored_byte_per_hour"] > 0
