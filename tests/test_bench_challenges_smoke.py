"""``bench/challenges.py --smoke``: four real miners, the production challenger, a JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_run_reports_positive_figures(tmp_path: Path) -> None:
    out = tmp_path / "challenges.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.challenges", "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=110, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["bench"] == "challenges"
    assert report["miners"] == 4
    run = report["runs"][0]["challenges"]
    assert run["rounds"] > 0
    assert set(run["verdicts"]) == {"pass"}  # honest miners: nothing else
    assert run["leaves_verified"] > 0
    median = report["median"]
    for figure in (
        "leaves_per_s",
        "leaves_per_validator_cpu_s",
        "batch_latency_p50_ms",
        "batch_latency_p99_ms",
        "baseline_tiny_requests_per_s",
        "baseline_batch_sized_leaf_equivalents_per_s",
    ):
        assert median[figure] > 0, figure
    assert report["miner_prover_leaves_per_cpu_s"] > 0
    assert all(v > 0 for v in report["validator_unit_costs"].values())
