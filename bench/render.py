"""Render bench/results/*.json into docs/benchmarks.md, between markers.

A block in the document looks like::

    <!-- bench:render NAME -->
    ...generated, replaced on every render...
    <!-- /bench:render -->

where NAME is a benchmark (``peers``: that report's table) or ``all`` (every report in the
results folder, one table each). Everything outside the markers is hand-written and left
alone. Every table states the machine, the exact command, how many runs each figure is the
median of, and the baseline measured in the same run.

    python -m bench.render [--results bench/results] [--doc docs/benchmarks.md] [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

BLOCK = re.compile(
    r"(<!-- bench:render (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench:render -->)", re.DOTALL
)
NONE = "-"
Row = tuple[str, str, str, str, str]  # figure, value, same-run baseline, ratio, median of
HEADER = "| figure | value | same-run baseline | ratio | median of |\n|---|---|---|---|---|\n"


def _num(value: Any, unit: str = "") -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return NONE
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"
    return f"{text} {unit}".rstrip()


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return f"{a / b:.2f}x"
    return NONE


def _ratio_small(a: Any, b: Any) -> str:
    """A ratio that may be far below 0.01, to three significant figures."""
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return f"{a / b:.3g}x"
    return NONE


def _runs(n: Any, what: str = "runs") -> str:
    return f"{n} {what}" if isinstance(n, int) else NONE


def _caption(report: dict[str, Any]) -> str:
    if "machine" not in report and "note" in report:  # a hand-assembled file of several runs
        return f"{report['note']}."
    note = f" {report['note'][0].upper()}{report['note'][1:]}." if report.get("note") else ""
    return f"Machine: {report.get('machine', '?')}. Command: `{report.get('command', '?')}`.{note}"


def _table(rows: list[Row]) -> str:
    return HEADER + "".join(f"| {' | '.join(row)} |\n" for row in rows)


# --- one renderer per benchmark ---------------------------------------------------------


def erasure(report: dict[str, Any]) -> str:
    runs = _runs(report.get("runs_per_figure"))
    rows: list[Row] = []
    for r in report["results"]:
        code = f"{r['k']}-of-{r['m']}"
        base = r["raw_zfec_per_segment_mb_s"]
        base_text = f"raw zfec, one call per segment: {_num(base, 'MB/s')}"
        for key, label in [
            ("raw_zfec_striped_mb_s", "raw zfec, 256 KiB stripes"),
            ("encode_1_thread_mb_s", "pipeline encode, 1 thread"),
            ("encode_2_threads_mb_s", "pipeline encode, 2 threads"),
            ("encode_2_threads_encrypted_mb_s", "pipeline encode, 2 threads + AES"),
            ("decode_from_check_shares_verified_mb_s", "decode from check shares, verified"),
        ]:
            rows.append((f"{code}: {label}", _num(r[key], "MB/s"), base_text,
                         _ratio(r[key], base), runs))  # fmt: skip
    size = f"{report.get('input_mib', '?')} MiB of random input"
    return f"{_caption(report)} {size}.\n\n{_table(rows)}"


def miner(report: dict[str, Any]) -> str:
    r = report["results"]
    rounds = report.get("put_rounds", 4)
    seconds = report.get("challenge_seconds")
    window = f"one {seconds:g} s window" if isinstance(seconds, int | float) else "one window"
    rows: list[Row] = [
        ("PUT, 4 MiB shards, 8 streams", _num(r["put_mb_s"], "MB/s"),
         f"plain aiohttp PUT + fsync: {_num(r['baseline_put_mb_s'], 'MB/s')}",
         _ratio(r["put_mb_s"], r["baseline_put_mb_s"]), _runs(rounds, "rounds")),
        ("leaf proofs per second, over HTTP", _num(r["leaf_proofs_per_s"], "/s"),
         f"aiohttp echo, same reply size: {_num(r['baseline_echo_leaves_per_s'], 'leaves/s')}",
         _ratio(r["leaf_proofs_per_s"], r["baseline_echo_leaves_per_s"]), window),
    ]  # fmt: skip
    return f"{_caption(report)}\n\n{_table(rows)}"


def epoch_core(report: dict[str, Any]) -> str:
    r = report["results"]
    runs = _runs(report.get("runs_per_figure"))
    base = r["baseline_one_pass_over_weights_ms"]
    base_text = f"one pure-Python pass over the weights: {_num(base, 'ms')}"
    rows: list[Row] = [
        (label, _num(r[key], "ms"), base_text, _ratio(r[key], base), runs)
        for key, label in [
            ("yuma_consensus_ms", "Yuma consensus"),
            ("credit_epoch_ms", "epoch credits"),
            ("epoch_ms", "whole epoch (Yuma + credits)"),
        ]
    ]
    return f"{_caption(report)}\n\n{_table(rows)}"


def epoch(report: dict[str, Any]) -> str:
    r = report["results"]
    runs = _runs(report.get("runs_per_figure"))
    rows: list[Row] = []
    for db, label in [("sqlite", "SQLite"), ("postgresql", "PostgreSQL")]:
        one = r.get(db)
        if not isinstance(one, dict):
            rows.append((f"epoch close, {label}", "not run", str(one), NONE, NONE))
            continue
        base = one["baseline_ledger_insert_only_ms"]
        rows.append((
            f"epoch close, {label}", _num(one["epoch_close_ms"], "ms"),
            f"the {one['ledger_rows_per_epoch']} ledger inserts alone: {_num(base, 'ms')}",
            _ratio(one["epoch_close_ms"], base), runs,
        ))  # fmt: skip
    core = r.get("pure_core_yuma_plus_credit_ms")
    rows.append(("Yuma + credits in memory", _num(core, "ms"), NONE, NONE, runs))
    return f"{_caption(report)}\n\n{_table(rows)}"


def gateway(report: dict[str, Any]) -> str:
    rows: list[Row] = []
    for r in report["results"]:
        code = f"{r['k']}-of-{r['m']}, {r['miners']} miners" + (
            f", {r['codec']}" if "codec" in r else ""
        )
        raw = r["raw_zfec_encode_mb_s"]
        base_text = f"raw zfec encode: {_num(raw, 'MB/s')}"
        for key, label in [
            ("dataset_upload_mb_s", f"dataset ({report.get('dataset_mib')} MiB) upload"),
            ("dataset_download_mb_s", "dataset download"),
            ("object_upload_mb_s", f"{report.get('object_mib')} MiB object upload"),
            ("object_download_mb_s", f"{report.get('object_mib')} MiB object download"),
        ]:
            rows.append((f"{code}: {label}", _num(r[key], "MB/s"), base_text,
                         _ratio(r[key], raw), "1 run"))  # fmt: skip
        rss = r.get("validator_peak_rss_mib_object", r.get("validator_peak_rss_mib"))
        rows.append((f"{code}: validator peak RSS, object phase", _num(rss, "MiB"), NONE, NONE,
                     "1 run"))  # fmt: skip
        if "miner_peak_rss_mib_object" in r:
            miner_rss = _num(r["miner_peak_rss_mib_object"], "MiB")
            rows.append((f"{code}: largest miner peak RSS, object phase", miner_rss, NONE, NONE,
                         "1 run"))  # fmt: skip
    return f"{_caption(report)}\n\n{_table(rows)}"


PEER_STEPS = [  # step, ours CLI, Tahoe, ours in-process, SeaweedFS, ratio keys and aim
    ("upload", "ours_cli_upload", "tahoe_put", "ours_client_upload", "seaweedfs_s3_put",
     "upload_vs_tahoe", "upload_vs_seaweedfs", "upload_aim_met"),
    ("download", "ours_cli_download", "tahoe_get", "ours_client_download", "seaweedfs_s3_get",
     "download_vs_tahoe", "download_vs_seaweedfs", "download_aim_met"),
]  # fmt: skip
PEER_COLUMNS = (
    "| file | step | ours, CLI | Tahoe-LAFS, CLI | {tahoe} "
    "| ours, in-process client | SeaweedFS S3, boto3 | {s3} |\n"
    "|---|---|---|---|---|---|---|---|\n"
)


def _peers_speed(report: dict[str, Any]) -> str:
    aims = report.get("aims", {})
    text = PEER_COLUMNS.format(tahoe="ours / Tahoe (aim)", s3="ours / SeaweedFS")
    for r in report["results"]:
        size = f"{r['size_mib']} MiB"
        if "ours_cli_start_s" in r:
            ours, tahoe = r["ours_cli_start_s"], r.get("tahoe_cli_start_s")
            text += (f"| {size} | CLI process start alone (`--version`) | {_num(ours, 's')} "
                     f"| {_num(tahoe, 's')} | | | | |\n")  # fmt: skip
        for step, cli, peer, client, s3, vs_tahoe, vs_s3, met in PEER_STEPS:
            ratio, aim = r.get(vs_tahoe), aims.get(f"{step}_vs_tahoe")
            verdict = NONE
            if isinstance(ratio, int | float) and isinstance(aim, int | float):
                verdict = f"**{ratio:.2f}x** (≥ {aim:g}x: {'met' if r.get(met) else 'missed'})"
            s3_ratio = r.get(vs_s3)
            text += (
                f"| {size} | {step} | {_num(r.get(cli + '_mb_s'), 'MB/s')} "
                f"| {_num(r.get(peer + '_mb_s'), 'MB/s')} | {verdict} "
                f"| {_num(r.get(client + '_mb_s'), 'MB/s')} | {_num(r.get(s3 + '_mb_s'), 'MB/s')} "
                f"| {f'{s3_ratio:.2f}x' if isinstance(s3_ratio, int | float) else NONE} |\n"
            )
    return text


def _peers_cpu(report: dict[str, Any]) -> str:
    if not any("ours_cli_upload_cpu_s" in r for r in report["results"]):
        return ""
    text = (
        "\nCPU seconds per transfer, every process of the system and its client summed"
        " (medians; the peer's over ours is how many times more CPU the peer spends):\n\n"
    ) + PEER_COLUMNS.format(tahoe="Tahoe / ours", s3="SeaweedFS / ours")
    for r in report["results"]:
        for step, cli, peer, client, s3, *_ in PEER_STEPS:
            cells = [r.get(f"{f}_cpu_s") for f in (cli, peer, client, s3)]
            text += (
                f"| {r['size_mib']} MiB | {step} | {_num(cells[0], 's')} "
                f"| {_num(cells[1], 's')} | {_ratio(cells[1], cells[0])} "
                f"| {_num(cells[2], 's')} | {_num(cells[3], 's')} "
                f"| {_ratio(cells[3], cells[2])} |\n"
            )
    return text


def _peers_notes(report: dict[str, Any]) -> str:
    setup, runs = report.get("setup", {}), report.get("runs_per_figure")
    notes = [f"Medians of {runs} runs per figure, every system in the same run "
             f"(order rotated run to run)."]  # fmt: skip
    short = sorted({
        f"{r['size_mib']} MiB {figure}: {n}"
        for r in report["results"]
        for figure, n in r.get("samples_per_figure", {}).items()
        if n != runs
    })  # fmt: skip
    if short:
        notes.append(f"Fewer samples where a transfer failed ({'; '.join(short)}).")
    if errors := report.get("errors"):
        notes.append(f"{len(errors)} failed transfers, listed in the JSON.")
    if o := setup.get("ours"):
        codec = f", codec: {o['codec']}" if "codec" in o else ""
        notes.append(f"Ours: {o['k']}-of-{o['m']} on {o['miners']} miners{codec}.")
    if t := setup.get("tahoe"):
        notes.append(f"Tahoe-LAFS {t['version']}: {t['storage_nodes']} storage nodes, "
                     f"needed/happy/total = {t['shares_needed']}/{t['shares_happy']}/"
                     f"{t['shares_total']}.")  # fmt: skip
    if w := setup.get("seaweedfs"):
        notes.append(f"SeaweedFS {w['version']}: {w['volume_servers']} volume servers, "
                     f"replication {w['replication']}, {w['client']}.")  # fmt: skip
    if isinstance(load := report.get("load_average_1min"), dict):
        notes.append(f"Load average (1 min) at start/end: {load['start']:.1f}/{load['end']:.1f}.")
    return textwrap.fill(" ".join(notes), 95) + "\n"


def peers(report: dict[str, Any]) -> str:
    body = _peers_speed(report) + _peers_cpu(report)
    return f"{_caption(report)}\n\n{body}\n{_peers_notes(report)}"


def challenges(report: dict[str, Any]) -> str:
    med, runs = report["median"], _runs(len(report.get("runs", [])))
    base_rate = "aiohttp, batch-sized replies: " + _num(
        med.get("baseline_batch_sized_leaf_equivalents_per_client_cpu_s"), "leaves/CPU-s"
    )
    base_lat = "aiohttp, batch-sized replies: p99 " + _num(
        med.get("baseline_batch_sized_p99_ms"), "ms"
    )
    rows: list[Row] = [
        ("leaves verified per validator CPU-second", _num(med["leaves_per_validator_cpu_s"]),
         base_rate, _ratio(med["leaves_per_validator_cpu_s"],
                           med.get("baseline_batch_sized_leaf_equivalents_per_client_cpu_s")),
         runs),
        ("leaves verified per second, wall", _num(med["leaves_per_s"]),
         "aiohttp, batch-sized replies: " + _num(
             med.get("baseline_batch_sized_leaf_equivalents_per_s"), "leaves/s"),
         _ratio(med["leaves_per_s"], med.get("baseline_batch_sized_leaf_equivalents_per_s")),
         runs),
        (f"batch round trip p99 ({report['batch']} shards x {report['leaves_per_challenge']} "
         "leaves)", _num(med["batch_latency_p99_ms"], "ms"), base_lat,
         _ratio(med["batch_latency_p99_ms"], med.get("baseline_batch_sized_p99_ms")), runs),
        ("batch round trip p50", _num(med["batch_latency_p50_ms"], "ms"),
         "aiohttp, batch-sized replies: p50 " + _num(med.get("baseline_batch_sized_p50_ms"), "ms"),
         _ratio(med["batch_latency_p50_ms"], med.get("baseline_batch_sized_p50_ms")), runs),
    ]  # fmt: skip
    return f"{_caption(report)} {report['miners']} miners.\n\n{_table(rows)}"


def rebuild_gap(report: dict[str, Any]) -> str:
    rows: list[Row] = []
    for size, r in report["results"].items():
        for step, what in [("one", "one challenge"), ("batch", "a batch"), ("get", "full GET")]:
            honest, rebuild = r["honest"][f"{step}_p50_ms"], r["rebuild"][f"{step}_p50_ms"]
            samples = _runs(report.get("samples"), "samples")
            rows.append((f"{size} shard, {what}: rebuild-on-demand miner, p50",
                         _num(rebuild, "ms"), f"honest miner: {_num(honest, 'ms')}",
                         _ratio(rebuild, honest), samples))  # fmt: skip
    return f"{_caption(report)}\n\n{_table(rows)}"


def repair_time(report: dict[str, Any]) -> str:
    held = report["lost_miner_held_bytes"] / 1e9
    rows: list[Row] = [
        (f"a miner holding {held:.2f} GB lost: detected", _num(report["seconds_to_detect"], "s"),
         NONE, NONE, "1 run"),
        ("... full health again", _num(report["seconds_to_full_health"], "s"), NONE, NONE,
         "1 run"),
        ("rebuilt", _num(report["rebuild_mb_s"], "MB/s"),
         f"upload, same run: {_num(report.get('upload_mb_s'), 'MB/s')}",
         _ratio(report["rebuild_mb_s"], report.get("upload_mb_s")), "1 run"),
    ]  # fmt: skip
    net = f"{report['k']}-of-{report['m']} on {report['miners']} miners"
    return f"{_caption(report)} {net}.\n\n{_table(rows)}"


def incentives(report: dict[str, Any]) -> str:
    """Credit per byte against honest (the standard table), then detection per strategy."""
    rows: list[Row] = []
    detection = "| strategy | rounds to detection | seconds | disqualified | suspended |\n"
    detection += "|---|---|---|---|---|\n"
    for strategy, s in report["summary"].items():
        aim = " (aim ≥ 0.95)" if strategy.startswith("slow") else " (aim ≤ 0.05)"
        aim = "" if strategy == "honest" else aim
        ratio = s["ratio_to_honest"]
        rows.append((
            f"`{strategy}`: credit per byte acknowledged{aim}", _num(s["rao_per_byte"], "rao/B"),
            f"honest, same {s['epochs_counted']} epochs: {_num(s['honest_rao_per_byte'], 'rao/B')}",
            NONE if ratio is None else f"{ratio:.3f}x", "1 run",
        ))  # fmt: skip
        yes = {True: "yes", False: "no"}
        detection += (
            f"| `{strategy}` | {_num(s['rounds_to_detection'])} | "
            f"{_num(s['seconds_to_detection'], 's')} | {yes[s['disqualified']]} | "
            f"{yes[s['suspended']]} |\n"
        )
    net = (
        f"{report['miners']} miners ({report['k']}-of-{report['m']}), one validator "
        f"(`{report['validator_flags']}`), {report['seconds']:g} s after the upload, "
        f"{report['epoch_seconds']:g} s epochs; epochs counted start ≥ "
        f"{report['grace_seconds']:g} s after the strategy's cheating began"
    )
    return f"{_caption(report)} {net}.\n\n{_table(rows)}\n{detection}"


def dashboard(report: dict[str, Any]) -> str:
    rows: list[Row] = [
        (
            f"validator dashboard `{path}`, {report['miners']} miners, "
            f"{report['placements']:,} placements, {report['log_rows']:,} log rows",
            _num(page["median_ms"], "ms"),
            f"the aim: {_num(report['aim_ms'], 'ms')} "
            f"(first render {_num(page['first_ms'], 'ms')})",
            _ratio(page["median_ms"], report["aim_ms"]),
            _runs(report.get("runs")),
        )
        for path, page in report["pages"].items()
    ]
    previous = report.get("previous")
    if previous:  # the same pages in an earlier recorded run: now / then
        rows += [
            (
                f"`{path}`: this run against the earlier one",
                _num(page["median_ms"], "ms"),
                f"earlier: {_num(previous['median_ms'][path], 'ms')}",
                _ratio_small(page["median_ms"], previous["median_ms"][path]),
                _runs(report.get("runs")),
            )
            for path, page in report["pages"].items()
            if path in previous["median_ms"]
        ]
    load = report.get("load_average")
    caption = _caption(report)
    if load:
        caption += f" Load average (1 min) at start and end: {load[0]}, {load[1]}."
    return f"{caption}\n\n{_table(rows)}"


def cpu_split(report: dict[str, Any]) -> str:
    """This tree against a git revision, both run side by side: CPU-s per process group."""
    rows: list[Row] = []
    for step in ("upload", "download"):
        this, base = report["this"][step], report["base"][step]
        for part, what in [("cli", "CLI"), ("validator", "validator"), ("miners", "8 miners"),
                           ("seconds", "wall time")]:  # fmt: skip
            unit = "s" if part == "seconds" else "CPU-s"
            rows.append((f"{report['size_mib']:g} MiB {step}: {what}", _num(this[part], unit),
                         f"{report['baseline']}: {_num(base[part], unit)}",
                         _ratio(this[part], base[part]), _runs(report["runs"])))  # fmt: skip
    loads = ", ".join(f"{x:g}" for x in report.get("load_average", []))
    return f"{_caption(report)} Load average after each run: {loads}.\n\n{_table(rows)}"


def s3(report: dict[str, Any]) -> str:
    large, small = report["large"], report["small_puts"]
    size, runs = f"{large['size_mib']} MiB", _runs(report.get("runs_per_figure"))
    aim = report.get("aims", {}).get("s3_vs_cli")
    rows: list[Row] = []
    for step in ("upload", "download"):
        ours, cli, weed = (large[f"{s}_{step}_mb_s"] for s in ("s3", "cli", "seaweedfs"))
        met = "met" if large.get(f"s3_{step}_aim_met") else "missed"
        rows.append((f"{size} {step}, boto3 through our S3 API", _num(ours, "MB/s"),
                     f"`subnet {step}` (CLI): {_num(cli, 'MB/s')} (aim ≥ {aim:g}x: {met})",
                     _ratio(ours, cli), runs))  # fmt: skip
        rows.append((f"{size} {step}, boto3 through our S3 API", _num(ours, "MB/s"),
                     f"SeaweedFS S3, boto3: {_num(weed, 'MB/s')}", _ratio(ours, weed),
                     runs))  # fmt: skip
        if f"s3_{step}_cpu_s" in large:  # under load, wall time tracks CPU
            rows.append((f"{size} {step}: CPU, validator and miners, S3 API",
                         _num(large[f"s3_{step}_cpu_s"], "CPU-s"),
                         f"native CLI: {_num(large[f'cli_{step}_cpu_s'], 'CPU-s')}",
                         _ratio(large[f"s3_{step}_cpu_s"], large[f"cli_{step}_cpu_s"]),
                         runs))  # fmt: skip
        rows.append((f"{size} {step}: validator peak RSS, S3 API",
                     _num(large[f"validator_peak_rss_mib_s3_{step}"], "MiB"),
                     f"native CLI: {_num(large[f'validator_peak_rss_mib_cli_{step}'], 'MiB')}",
                     _ratio(large[f"validator_peak_rss_mib_s3_{step}"],
                            large[f"validator_peak_rss_mib_cli_{step}"]), runs))  # fmt: skip
    rows.append((
        f"{small['object_kib']} KiB PUTs, {small['threads']} threads, our S3 API",
        _num(small["ours_puts_per_s"], "PUT/s"),
        f"SeaweedFS S3: {_num(small['seaweedfs_puts_per_s'], 'PUT/s')}",
        _ratio(small["ours_puts_per_s"], small["seaweedfs_puts_per_s"]),
        f"1 run of {small['objects']:,}",
    ))  # fmt: skip
    setup, notes = report.get("setup", {}), []
    if o := setup.get("ours"):
        notes.append(f"Ours: {o['k']}-of-{o['m']} on {o['miners']} miners, S3 over {o['s3']}.")
    if w := setup.get("seaweedfs"):
        notes.append(f"SeaweedFS {w['version']}: {w['volume_servers']} volume servers, "
                     f"replication {w['replication']}.")  # fmt: skip
    if client := setup.get("client"):
        notes.append(f"Client: {client}.")
    if isinstance(load := report.get("load_average_1min"), dict):
        notes.append(f"Load average (1 min) at start/end: {load['start']:.1f}/{load['end']:.1f}.")
    return f"{_caption(report)}\n\n{_table(rows)}\n{textwrap.fill(' '.join(notes), 95)}\n"


def memory(report: dict[str, Any]) -> str:
    size = f"{report['object_mib']:,} MiB"
    aim = report["aim_peak_rss_mib"]
    peak, alone = report["validator_peak_rss_mib_mix"], report["validator_peak_rss_mib_one_upload"]
    met = "met" if peak < aim else "missed"
    rows = [
        ("validator peak RSS, 4 uploads + 2 downloads at once", _num(peak, "MiB"),
         f"aim: under {aim} MiB ({met})", _ratio(peak, aim), "1 run"),
        ("validator peak RSS, one upload alone", _num(alone, "MiB"),
         f"at rest: {_num(report['validator_rss_mib_at_rest'], 'MiB')}",
         _ratio(alone, report["validator_rss_mib_at_rest"]), "1 run"),
        ("4 uploads + 2 downloads, all bytes moved", _num(report["mix_mb_s"], "MB/s"),
         f"one upload alone: {_num(report['one_upload_mb_s'], 'MB/s')}",
         _ratio(report["mix_mb_s"], report["one_upload_mb_s"]), "1 run"),
    ]  # fmt: skip
    notes = (
        f"Each object {size}; {report['k']}-of-{report['m']} on {report['miners']} miners, "
        "client-sealed (the CLI's default)."
    )
    if isinstance(load := report.get("load_average_1min"), dict):
        notes += f" Load average (1 min) at start/end: {load['start']:.1f}/{load['end']:.1f}."
    return f"{_caption(report)}\n\n{_table(rows)}\n{textwrap.fill(notes, 95)}\n"


def generic(report: dict[str, Any]) -> str:
    return f"{_caption(report)} No table renderer for this report: see its JSON and section.\n"


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "cpu_split": cpu_split,
    "dashboard": dashboard,
    "erasure": erasure,
    "miner": miner,
    "epoch_core": epoch_core,
    "epoch": epoch,
    "gateway": gateway,
    "peers": peers,
    "challenges": challenges,
    "rebuild_gap": rebuild_gap,
    "repair_time": repair_time,
    "incentives": incentives,
    "s3": s3,
    "memory": memory,
}
ORDER = ["peers", "erasure", "miner", "epoch_core", "epoch", "gateway"]


def render_report(report: dict[str, Any]) -> str:
    renderer = RENDERERS.get(report.get("bench", ""), generic)
    runs = report.get("runs")
    if (
        renderer is not generic
        and "results" not in report
        and isinstance(runs, list)
        and all(isinstance(run, dict) and "bench" in run for run in runs)
    ):
        # A file holding several whole reports (e.g. repeated runs): one table each.
        parts = [render_report(run) for run in runs]
        return f"{_caption(report)}\n\n" + "\n".join(parts)
    try:
        return renderer(report)
    except (KeyError, TypeError, ValueError) as exc:  # a report of an older or newer shape
        return f"{_caption(report)} Could not render ({type(exc).__name__}: {exc}).\n"


def load_reports(results: Path) -> dict[str, dict[str, Any]]:
    """Every report by file name (``peers`` for peers.json): two files may share a bench."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(results.glob("*.json"))}


def _title(stem: str, report: dict[str, Any]) -> str:
    bench = str(report.get("bench", stem))
    return f"**`bench.{bench}`**" + ("" if bench == stem else f" (`{stem}.json`)")


def render_block(name: str, reports: dict[str, dict[str, Any]]) -> str:
    if name != "all":
        if name not in reports:
            return f"No `{name}` report in the results folder yet.\n"
        return render_report(reports[name])
    names = [n for n in ORDER if n in reports] + sorted(set(reports) - set(ORDER))
    return "\n".join(f"{_title(n, reports[n])}. {render_report(reports[n])}" for n in names)


def render(doc: str, reports: dict[str, dict[str, Any]]) -> str:
    def block(match: re.Match[str]) -> str:
        body = render_block(match["name"], reports)
        return f"{match.group(1)}\n{body}\n{match.group(4)}"

    return BLOCK.sub(block, doc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is out of date")
    args = parser.parse_args()
    reports = load_reports(args.results)
    if not reports:
        print(f"{args.results}: no reports (*.json) to render", file=sys.stderr)
        return 1
    doc = args.doc.read_text()
    if not BLOCK.search(doc):
        print(f"{args.doc}: no <!-- bench:render NAME --> blocks", file=sys.stderr)
        return 1
    new = render(doc, reports)
    if args.check:
        if new != doc:
            print(f"{args.doc} is out of date: run python -m bench.render", file=sys.stderr)
            return 1
        return 0
    if new != doc:
        args.doc.write_text(new)
        print(f"rendered {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
