"""``subnet audit``: read, summarise and check a validator's challenge log.

The log is public: these commands need no wallet. ``log`` and ``verify`` page through the
validator's ``/v1/audit/log`` a thousand entries at a time, so millions of rows stream.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import sys
import time
from collections.abc import AsyncGenerator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import click
from rich.table import Table

from subnet.tables import table_console
from validator.audit_log import LogEntry, verify_entries

URL_OPTION = click.option(
    "--url",
    envvar="SUBNET_VALIDATOR_URL",
    default="http://127.0.0.1:8090",
    show_default=True,
    help="The validator whose log to read.",
)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
COLUMNS = ("seq", "issued", "miner", "kind", "verdict", "latency_ms", "shard_id", "reason")


def parse_time(text: str | None) -> float | None:
    """Unix seconds from ``2026-11-24T10:00``, unix seconds, or an age like ``2h``."""
    if text is None:
        return None
    if match := _DURATION.match(text):
        return time.time() - float(match[1]) * _UNITS[match[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give an ISO time (2026-11-24T10:00), unix seconds, or an age (30m, 2h, 7d)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def _pages(url: str, query: dict[str, str]) -> AsyncGenerator[dict[str, Any]]:
    after = -1
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while True:
            params = {**query, "after": str(after)}
            try:
                async with session.get(f"{url.rstrip('/')}/v1/audit/log", params=params) as reply:
                    body = await reply.json(content_type=None)
                    if reply.status != 200:
                        message = body.get("message") if isinstance(body, dict) else body
                        raise click.ClickException(f"{url} refused: {reply.status} {message}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise click.ClickException(
                    f"cannot read the log at {url} ({exc}); is the validator running? (--url)"
                ) from None
            yield body
            if body.get("next") is None:
                return
            after = int(body["next"])


def _entries(url: str, query: dict[str, str]) -> Iterator[LogEntry]:
    """Entries from the validator, one page in memory at a time."""
    loop = asyncio.new_event_loop()
    pages = _pages(url, query)
    try:
        while True:
            try:
                page = loop.run_until_complete(anext(pages))
            except StopAsyncIteration:
                return
            for raw in page["entries"]:
                yield LogEntry.from_json(json.dumps(raw))
    finally:
        loop.run_until_complete(pages.aclose())
        loop.close()


def _row(entry: LogEntry) -> list[str]:
    issued = datetime.fromtimestamp(entry.issued_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    latency = "" if entry.latency_ms is None else f"{entry.latency_ms:.1f}"
    return [
        str(entry.seq),
        issued,
        entry.miner,
        entry.kind,
        entry.verdict,
        latency,
        entry.shard_id,
        entry.reason,
    ]


@click.group()
def audit() -> None:
    """Audit challenge logs: who was challenged, how they answered, and whether the log is
    whole. Every entry is hash-chained to the one before and signed by the validator.

    \b
    Examples:
      subnet audit log --miner 5F... --verdict wrong --since 2h
      subnet audit log --format json > log.jsonl      # the export
      subnet audit summary
      subnet audit verify log.jsonl                   # or: subnet audit verify --url URL
    """


@audit.command("log")
@URL_OPTION
@click.option("--miner", help="Only this miner's hotkey.")
@click.option("--since", help="From this time: ISO, unix seconds, or an age (2h, 7d).")
@click.option("--until", help="Before this time (same forms).")
@click.option("--verdict", type=click.Choice(["pass", "wrong", "missing", "timeout", "repaired"]))
@click.option("--kind", type=click.Choice(["merkle", "retrieval", "read", "repair"]))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="json is JSON lines with every field: the export `audit verify FILE` checks.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many entries.")
def log_cmd(
    url: str,
    miner: str | None,
    since: str | None,
    until: str | None,
    verdict: str | None,
    kind: str | None,
    fmt: str,
    limit: int | None,
) -> None:
    """Print challenge-log entries, oldest first, streaming through any number of rows."""
    query = {
        key: value
        for key, value in {
            "miner": miner,
            "verdict": verdict,
            "kind": kind,
            "since": _text(parse_time(since)),
            "until": _text(parse_time(until)),
        }.items()
        if value is not None
    }
    entries: Iterable[LogEntry] = _entries(url, query)
    out = sys.stdout
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    elif fmt == "table":
        click.echo("  ".join(f"{c:<{w}}" for c, w in zip(COLUMNS, _WIDTHS, strict=True)))
    for count, entry in enumerate(entries, start=1):
        if fmt == "json":
            out.write(entry.to_json() + "\n")
        elif writer is not None:
            writer.writerow(_row(entry))
        else:
            cells = _row(entry)
            cells[2], cells[6] = cells[2][:12] + "…", cells[6][:12] + "…"
            click.echo("  ".join(f"{c:<{w}}" for c, w in zip(cells, _WIDTHS, strict=True)))
        if limit is not None and count >= limit:
            break


_WIDTHS = (7, 19, 13, 9, 8, 10, 13, 0)


def _text(value: float | None) -> str | None:
    return None if value is None else repr(value)


@audit.command("summary")
@URL_OPTION
@click.option(
    "--since",
    help="Only challenges since (ISO, unix seconds, or an age: 24h); the validator rounds it "
    "down to a 10-minute boundary.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def summary_cmd(url: str, since: str | None, as_json: bool) -> None:
    """Per miner: pass rate, p50/p95/p99 latency, verified bytes, reputation, weight.

    The validator keeps these figures with its log as it grows: counts are exact, and a
    latency percentile is its histogram bin's middle (bins 26% wide: within 12%). The
    entries themselves: subnet audit log.
    """
    params = {} if since is None else {"since": repr(parse_time(since))}

    async def fetch() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
            session.get(f"{url.rstrip('/')}/v1/audit/summary", params=params) as reply,
        ):
            body: dict[str, Any] = await reply.json(content_type=None)
            if reply.status != 200:
                raise click.ClickException(f"{url} refused: {reply.status} {body.get('message')}")
            return body

    try:
        body = asyncio.run(fetch())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise click.ClickException(
            f"cannot reach {url} ({exc}); is the validator running?"
        ) from None
    if as_json:
        click.echo(json.dumps(body))
        return
    table = Table(title=f"Challenges by validator {body['validator']}")
    for column in (
        "miner",
        "challenges",
        "pass rate",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "verified",
        "integrity",
        "timeouts",
        "serving",
        "status",
        "weight",
    ):
        table.add_column(column, justify="left" if column == "miner" else "right")
    for row in body["miners"]:
        rate = "-" if row["pass_rate"] is None else f"{row['pass_rate']:.1%}"
        table.add_row(
            row["miner"][:12] + "…",
            str(row["challenges"]),
            rate,
            *(("-" if row[k] is None else f"{row[k]:.1f}") for k in ("p50_ms", "p95_ms", "p99_ms")),
            _bytes(row["verified_bytes"]),
            f"{row['wrong_score']:.3f}",
            f"{row['timeout_score']:.3f}",
            f"{row.get('serving_score', 1.0):.3f}",
            _status(row),
            f"{row['weight']:.3f}",
        )
    table_console().print(table)


def _status(row: dict[str, Any]) -> str:
    if row.get("disqualified"):
        return "disqualified"
    return "suspended" if row.get("suspended") else "ok"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _read_file(path: Path) -> Iterator[LogEntry]:
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield LogEntry.from_json(line)
            except (ValueError, TypeError) as exc:
                raise click.ClickException(f"{path}:{number}: not a log entry ({exc})") from None


@audit.command("verify")
@click.argument(
    "log_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--url", help="Check a running validator's whole log instead of a file.")
@click.option(
    "--validator", help="The hotkey every entry must be signed by (default: the first's)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify_cmd(
    log_file: Path | None, url: str | None, validator: str | None, as_json: bool
) -> None:
    """Check the chain of hashes, every signature and every Merkle proof of a log.

    Give an exported file (`subnet audit log --format json > FILE`) or --url of a running
    validator. Names the first bad entry and exits 1; exits 0 when every entry checks out.
    """
    if (log_file is None) == (url is None):
        raise click.UsageError("give either LOG_FILE or --url")
    entries = _read_file(log_file) if log_file is not None else _entries(url or "", {})
    check = verify_entries(entries, validator)
    problem = check.problem
    if as_json:
        bad = None if problem is None else {"seq": problem.seq, "reason": problem.reason}
        click.echo(
            json.dumps(
                {
                    "entries": check.entries,
                    "ok": problem is None,
                    "first_bad": bad,
                    "complete": check.complete,
                    "gaps": check.gaps,
                }
            )
        )
    elif problem is not None:
        click.echo(f"BAD entry {problem.seq}: {problem.reason}")
    elif check.complete:
        click.echo(f"OK: {check.entries} entries, chain, signatures and proofs intact")
    else:
        # A filtered export (audit log --miner X): each entry still proves itself.
        click.echo(
            f"OK: {check.entries} entries, each signature and proof intact, and each hash link "
            "where the entry before it is present; this is a filtered export, which cannot "
            "prove that no entry is missing: verify the whole log for that "
            "(subnet audit verify --url URL)"
        )
    if problem is not None:
        raise SystemExit(1)
