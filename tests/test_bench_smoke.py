"""Every benchmark's ``--smoke`` mode: run as ``make bench`` runs it, in seconds, tiny sizes.

Each runs as a subprocess writing to a temporary ``--out`` (never bench/results/); the test
checks the JSON it prints is the JSON it wrote, has the keys the docs render from, and that
every figure is positive. ``bench.challenges`` has its own smoke test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from bench.render import generic, load_reports, render, render_report
from bench.run_all import benchmarks
from bench.tahoe import TAHOE_VENV, tahoe_binary

ROOT = Path(__file__).resolve().parents[1]


def run_smoke(module: str, out: Path, *extra: str, timeout: float = 180) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--smoke", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    printed = result.stdout[result.stdout.index('{\n  "machine"') :]
    assert json.loads(printed) == report
    assert report["bench"] == module
    assert report["machine"]
    assert report["command"].startswith(f"python -m bench.{module} --smoke")
    return report


def assert_positive(figures: Mapping[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        value = figures[key]
        assert isinstance(value, int | float), (key, value)
        assert not isinstance(value, bool), key
        assert value > 0, (key, value)


def check_erasure(report: dict[str, Any]) -> None:
    assert [(r["k"], r["m"]) for r in report["results"]] == [(4, 8), (10, 16)]
    for r in report["results"]:
        assert_positive(r, [
            "raw_zfec_per_segment_mb_s", "raw_zfec_striped_mb_s", "encode_1_thread_mb_s",
            "encode_2_threads_mb_s", "encode_2_threads_encrypted_mb_s",
            "decode_from_check_shares_verified_mb_s", "ratio_1_thread_vs_raw_per_segment",
            "ratio_2_threads_vs_raw_per_segment",
        ])  # fmt: skip


def check_epoch_core(report: dict[str, Any]) -> None:
    assert_positive(report["results"], [
        "yuma_consensus_ms", "credit_epoch_ms", "epoch_ms",
        "baseline_one_pass_over_weights_ms", "ratio_vs_one_pass",
    ])  # fmt: skip


def check_epoch(report: dict[str, Any]) -> None:
    results = report["results"]
    assert_positive(results, ["pure_core_yuma_plus_credit_ms"])
    assert_positive(results["sqlite"], ["epoch_close_ms", "baseline_ledger_insert_only_ms"])
    if isinstance(results["postgresql"], dict):  # else "unreachable at 127.0.0.1:5432"
        assert_positive(results["postgresql"], ["epoch_close_ms"])


def check_miner(report: dict[str, Any]) -> None:
    assert_positive(report["results"], [
        "put_mb_s", "baseline_put_mb_s", "put_ratio", "leaf_proofs_per_s",
        "baseline_echo_leaves_per_s", "challenge_ratio",
    ])  # fmt: skip


def check_gateway(report: dict[str, Any]) -> None:
    [r] = report["results"]
    assert (r["k"], r["m"], r["miners"]) == (2, 4, 4)
    assert_positive(r, [
        "dataset_upload_mb_s", "dataset_download_mb_s", "object_upload_mb_s",
        "object_download_mb_s", "validator_peak_rss_mib_object", "raw_zfec_encode_mb_s",
    ])  # fmt: skip


def check_dashboard(report: dict[str, Any]) -> None:
    assert set(report["pages"]) >= {"/", "/dashboard/miners", "/dashboard/log"}
    for page in report["pages"].values():
        assert_positive(page, ["wall_median_ms"])
        # The server's render time, to 0.1 ms: a page from its cache can take under 0.05 ms.
        assert page["median_ms"] >= 0 and page["max_ms"] >= page["median_ms"]


def check_durability(report: dict[str, Any]) -> None:
    results = {r["name"]: r for r in report["results"]}
    independent = [r for r in results.values() if not r["correlated"]]
    assert len(independent) >= 4
    for r in independent:  # where the model applies, the simulation agrees with it
        assert r["model_within_95"], r["name"]
    assert any(r["segments_lost"] > 0 and not r["model_within_95"] for r in results.values())
    for r in results.values():
        assert_positive(r, ["segment_years", "failures", "repair_bytes_per_stored_byte_per_year"])


def check_cpu_split(report: dict[str, Any]) -> None:
    assert report["baseline"] == "HEAD" and report["runs"] == 1
    for side in ("this", "base"):
        for step in ("upload", "download"):
            figures = report[side][step]
            assert_positive(figures, ["cli", "seconds"])  # a 4 MiB miner read is ~0 ticks
            assert figures["validator"] >= 0 and figures["miners"] >= 0
    assert set(report["ratios"]) == {"upload", "download"}


def check_s3(report: dict[str, Any]) -> None:
    large, small = report["large"], report["small_puts"]
    assert large["size_mib"] == 2
    assert_positive(large, [
        f"{system}_{step}_{unit}" for system in ("s3", "cli", "seaweedfs")
        for step in ("upload", "download") for unit in ("mb_s", "cpu_s")
    ])  # fmt: skip
    assert_positive(large, ["s3_upload_vs_cli", "s3_download_vs_seaweedfs",
                            "validator_peak_rss_mib_s3_upload"])  # fmt: skip
    assert isinstance(large["s3_upload_aim_met"], bool)
    assert (small["objects"], small["threads"]) == (32, 16)
    assert_positive(small, ["ours_puts_per_s", "seaweedfs_puts_per_s", "ours_vs_seaweedfs"])
    assert "| 16 KiB PUTs, 16 threads, our S3 API |" in render_report(report)


def check_memory(report: dict[str, Any]) -> None:
    assert (report["k"], report["m"], report["object_mib"]) == (2, 4, 8)
    assert (report["uploads"], report["downloads"]) == (4, 2)
    assert_positive(report, [
        "validator_rss_mib_at_rest", "validator_peak_rss_mib_one_upload",
        "validator_peak_rss_mib_mix", "one_upload_mb_s", "mix_mb_s",
    ])  # fmt: skip
    assert report["validator_peak_rss_mib_mix"] >= report["validator_rss_mib_at_rest"]
    assert "| validator peak RSS, 4 uploads + 2 downloads at once |" in render_report(report)


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "cpu_split": check_cpu_split,
    "dashboard": check_dashboard,
    "erasure": check_erasure,
    "epoch_core": check_epoch_core,
    "epoch": check_epoch,
    "miner": check_miner,
    "gateway": check_gateway,
    "durability": check_durability,
    "s3": check_s3,
    "memory": check_memory,
}


@pytest.mark.parametrize("module", list(CHECKS))
def test_smoke_run_reports_positive_figures(module: str, tmp_path: Path) -> None:
    CHECKS[module](run_smoke(module, tmp_path / f"{module}.json"))


# --- peers: ours and SeaweedFS always, Tahoe when .peers/ has it ---------------------------

OURS = ["ours_cli_upload", "ours_cli_download", "ours_client_upload", "ours_client_download"]
SEAWEEDFS = ["seaweedfs_s3_put", "seaweedfs_s3_get"]
TAHOE = ["tahoe_put", "tahoe_get"]
NO_TAHOE = (
    f"Tahoe-LAFS is not installed in {TAHOE_VENV} (installing it here would be slow); "
    "`python -m bench.peers` installs it on first use"
)


@pytest.fixture(scope="module")
def peers_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One smoke run of every system available: one grid start-up each, shared by the tests."""
    systems = "ours,seaweedfs" + (",tahoe" if tahoe_binary() else "")
    out = tmp_path_factory.mktemp("peers") / "peers.json"
    return run_smoke("peers", out, "--systems", systems, "--no-install", timeout=300)


@pytest.mark.timeout(360)
def test_peers_smoke_ours_and_seaweedfs(peers_report: dict[str, Any]) -> None:
    [r] = peers_report["results"]
    assert r["size_mib"] == 2
    assert peers_report["runs_per_figure"] == 1
    assert_positive(r, [f"{f}_mb_s" for f in OURS + SEAWEEDFS])
    assert_positive(r, [f"{f}_cpu_s" for f in OURS + SEAWEEDFS])
    assert_positive(r, ["upload_vs_seaweedfs", "download_vs_seaweedfs"])
    assert all(len(r["seconds"][f]) == 1 for f in OURS + SEAWEEDFS)
    assert peers_report["errors"] == []
    setup = peers_report["setup"]
    assert (setup["ours"]["k"], setup["ours"]["m"], setup["ours"]["miners"]) == (2, 4, 4)
    assert setup["seaweedfs"]["replication"] == "001"
    assert_positive(r, ["ours_cli_start_s"])


@pytest.mark.timeout(360)
def test_peers_smoke_tahoe(peers_report: dict[str, Any]) -> None:
    if "tahoe" not in peers_report["systems"]:
        pytest.skip(NO_TAHOE)
    [r] = peers_report["results"]
    assert_positive(r, [f"{f}_mb_s" for f in TAHOE])
    assert_positive(r, [f"{f}_cpu_s" for f in TAHOE])
    assert_positive(r, ["tahoe_cli_start_s"])
    assert_positive(r, ["upload_vs_tahoe", "download_vs_tahoe"])
    assert_positive(r, ["cpu_upload_tahoe_over_ours", "cpu_download_tahoe_over_ours"])
    assert isinstance(r["upload_aim_met"], bool)
    tahoe = peers_report["setup"]["tahoe"]
    assert (tahoe["shares_needed"], tahoe["shares_happy"], tahoe["shares_total"]) == (2, 4, 4)


def test_every_benchmark_has_a_smoke_mode() -> None:
    """``make bench`` runs every module bench.run_all finds; each must offer ``--smoke``."""
    found = benchmarks()
    assert {f"bench.{m}" for m in [*CHECKS, "peers"]} <= set(found)
    for module in found:
        source = (ROOT / "bench" / f"{module.removeprefix('bench.')}.py").read_text()
        assert '"--smoke"' in source, f"{module} has no --smoke mode"


def test_render_replaces_only_the_blocks(tmp_path: Path) -> None:
    """bench.render rewrites what is between its markers and leaves the prose around it."""
    results = tmp_path / "results"
    results.mkdir()
    report = {
        "machine": "x86_64, 2 cores, 24 GiB, Python 3.11.7", "bench": "epoch_core",
        "command": "python -m bench.epoch_core --runs 21", "runs_per_figure": 21,
        "results": {"yuma_consensus_ms": 25.6, "credit_epoch_ms": 1.0, "epoch_ms": 26.6,
                    "baseline_one_pass_over_weights_ms": 0.25},
    }  # fmt: skip
    (results / "epoch_core.json").write_text(json.dumps(report))
    doc = (
        "# Prose before\n\n<!-- bench:render epoch_core -->\nstale\n<!-- /bench:render -->\n"
        "\nProse between.\n\n<!-- bench:render all -->\n<!-- /bench:render -->\nProse after.\n"
    )
    new = render(doc, load_reports(results))
    assert new.startswith("# Prose before\n\n<!-- bench:render epoch_core -->\n")
    assert "\nProse between.\n" in new
    assert new.endswith("<!-- /bench:render -->\nProse after.\n")
    assert "stale" not in new
    for expected in [
        "x86_64, 2 cores, 24 GiB", "`python -m bench.epoch_core --runs 21`",
        "| whole epoch (Yuma + credits) | 26.6 ms |", "21 runs", "106.40x",
    ]:  # fmt: skip
        assert expected in new
    assert render(new, load_reports(results)) == new  # rendering again changes nothing


def test_every_recorded_report_renders_as_a_table() -> None:
    """The committed results all fit their renderers (no result shape drifted from its
    renderer), and only the scale report, whose tables are hand-written, has none."""
    reports = load_reports(ROOT / "bench" / "results")
    assert reports
    for name, report in reports.items():
        text = render_report(report)
        assert "Could not render" not in text, (name, text)
        if report.get("bench") != "scale":
            assert text != generic(report), f"{name}: no table renderer"
            assert "| figure |" in text or "| file |" in text, name


# `turn` turns after the smoke setup's turn_after (bench/incentives.py, SMOKE).
CHEATERS = ["nulls", "noserve", "burst:0.3", "hide:0.5", "turn:0.5@6", "late:1.5"]


@pytest.mark.timeout(180)
def test_incentives_smoke(tmp_path: Path) -> None:
    """What this proves: the bench runs end to end (a local net of real miner and adversary
    processes, an upload, the chain's ledger, the validator's database) and reports every
    strategy in the shape the docs render. It does not prove the aims: 30 s, 5 s epochs and
    a 12 s grace are too short to tell a cheater's leftover credit from a late detection on
    a loaded machine, so the ratio aims are checked only for a run as long as the issue's
    measurement (60 s grace; ``python -m bench.incentives`` in docs/benchmarks.md)."""
    report = run_smoke("incentives", tmp_path / "incentives.json", timeout=170)
    summary = report["summary"]
    assert list(summary) == ["honest", "slow:0.25", *CHEATERS]
    for line in summary.values():
        assert {"ratio_to_honest", "rounds_to_detection", "seconds_to_detection",
                "disqualified", "suspended"} <= set(line)  # fmt: skip
    assert len(report["miners_detail"]["honest"]) == 3
    assert all(e["bytes_acknowledged"] > 0 for es in report["miners_detail"].values() for e in es)
    assert all(e["epochs_counted"] > 0 for e in report["miners_detail"]["honest"])
    assert summary["honest"]["ratio_to_honest"] == pytest.approx(1.0, abs=1e-3)
    if report["grace_seconds"] >= 60 and report["seconds"] >= 180:
        for cheater in CHEATERS:
            assert summary[cheater]["ratio_to_honest"] <= 0.05, (cheater, summary[cheater])
        assert summary["slow:0.25"]["ratio_to_honest"] >= 0.95, summary["slow:0.25"]
    assert "| strategy |" in render_report(report)
