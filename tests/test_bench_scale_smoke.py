"""``bench/scale.py --smoke``: 8 real miners, 10k placements on SQLite, a JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DB_FIGURES = (
    "plan",
    "plan_query_contained",
    "plan_query_due",
    "verified_bytes_aggregate",
    "record",
    "record_segment",
    "repair_choose",
    "repair_holders",
)


@pytest.mark.timeout(240)  # five Python processes; a loaded two-core machine needs time
def test_smoke_run_reports_positive_figures(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--smoke", "--out", str(out),
         "--workdir", str(tmp_path / "work"), "--miner-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=220, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["bench"] == "scale"
    assert set(report["database"]) == {"sqlite"}  # PostgreSQL is not part of the smoke run

    cell = report["database"]["sqlite"]["8"]["10000"]
    assert cell["placements"] == 10_000
    for name in DB_FIGURES:
        assert cell[name]["median_ms"] > 0, name
        assert cell[name]["cpu_ms"] >= 0, name
    assert cell["plan"]["targets"] > 0
    assert cell["record"]["outcomes"] > 0
    assert cell["record"]["per_outcome_us"] > 0
    assert cell["repair_choose"]["chosen"] > 0  # the lost placements are found
    assert cell["rank_pick_us"] > 0
    assert cell["rss_mib"]["peak"] > 0

    live = report["live"]["8"]
    assert live["validators"] == 2
    assert live["leaves_per_s_total"] > 0
    for validator in live["per_validator"]:
        assert validator["rounds"] > 0
        assert set(validator["verdicts"]) == {"pass"}  # honest miners: nothing else
        assert validator["leaves_per_s"] > 0
        assert validator["rss_mib"]["peak"] > 0

    epoch = report["epoch_close"]["sqlite"]
    assert epoch["epoch_close_ms"] > 0
