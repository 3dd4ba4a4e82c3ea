"""Credit per byte acknowledged, cheating miners against honest ones, on a local net.

Real processes (``subnet.localnet.LocalNet``): the embedded chain, one validator at a quick
pace and ten miners on 127.0.0.2..11: three honest (``subnet miner run``), one honest but
slow within its deadline, and one of each of issue 13's cheaters, each a real miner process
from ``tests/adversaries`` (``python -m tests.adversaries BEHAVIOUR``, same flags):

- ``nulls``: holds nothing, answers every challenge batch with null entries;
- ``noserve``: holds and proves everything, refuses every read (503);
- ``burst:0.3``: like noserve, but serves in the 0.3 s after each challenge batch;
- ``hide:0.5``: loses half its shards, lets challenges on them time out;
- ``turn:0.5@30``: honest for 30 s after its first store, then loses half;
- ``late:1.5``: answers every Merkle batch 1.5 s late (past the 1 s floor).

A dataset is uploaded as the local net's user (1 MiB segments, 4-of-8, so every miner
acknowledges shards), then the net runs for ``--seconds``. Per strategy:

- **ratio**: its credit per byte acknowledged over the honest miners' mean, both summed over
  the epochs that start at least ``grace`` (60 s) after its cheating began (its first store;
  for ``turn`` 30 s later). Credits are the chain's ledger (``GET /v1/ledger``); bytes
  acknowledged are the shard sizes of every placement ever made to it (the validator's
  SQLite database, read-only). Epoch start times are watched on the chain during the run
  (an epoch starts when the one before it closes). Aims: cheaters <= 0.05, slow >= 0.95.
- **rounds to detection**: challenge rounds (Merkle batches the validator sent it, counted
  in its signed challenge log) from its cheating start to the first time it was seen
  disqualified or suspended; also in seconds.
- whether it was **disqualified** (for good) or **suspended**, ever during the run.

    python -m bench.incentives [--seconds 240] [--out bench/results/incentives.json]
    python -m bench.incentives --smoke --out /tmp/incentives.json

Run from the repository root (the adversaries are ``tests.adversaries``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.report import command, emit
from subnet.dataset import generate
from subnet.gateway_client import GatewayClient
from subnet.localnet import LocalNet, LocalNetConfig

HONEST = "honest"
SLOW = "slow:0.25"
CHALLENGE_SECONDS = 2.0
VALIDATOR_FLAGS = [
    "--challenge-seconds", str(CHALLENGE_SECONDS), "--retrieval-every", "2",
    # ``slow`` (0.25 s) answers within the 1 s floor, ``late`` (1.5 s) after it; a high
    # minimum rate keeps the deadline at the floor whatever the batch's size.
    "--challenge-floor", "1", "--challenge-min-rate", "100000000",
    # Small segments: many shards, so every miner holds some of a small dataset.
    "--segment-size", "1MiB",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Setup:
    seconds: float
    grace: float  # from cheating start to the first epoch that counts
    turn_after: float
    dataset_mib: int
    block_time: float
    tempo: int

    @property
    def behaviours(self) -> list[str]:
        cheaters = ["nulls", "noserve", "burst:0.3", "hide:0.5"]
        cheaters += [f"turn:0.5@{self.turn_after:g}", "late:1.5"]
        return [HONEST, HONEST, HONEST, SLOW, *cheaters]


FULL = Setup(seconds=240, grace=60, turn_after=30, dataset_mib=32, block_time=0.5, tempo=30)
# Smoke: 5 s epochs, and the window opens 12 s after cheating starts (not 60), so 30 s
# has a few epochs in it; too short to judge the aims (see tests/test_bench_smoke.py).
SMOKE = Setup(seconds=30, grace=12, turn_after=6, dataset_mib=12, block_time=0.25, tempo=20)


@dataclass(slots=True)
class Watch:
    """What the run saw as it went: when each epoch closed, and each miner's first
    disqualification and suspension (a suspension lifts, so the end state is not enough)."""

    closed_at: dict[int, float] = field(default_factory=dict)  # epoch -> unix seconds
    disqualified: dict[str, float] = field(default_factory=dict)  # hotkey -> unix seconds
    suspended: dict[str, float] = field(default_factory=dict)
    polled: bool = False


def _unix(value: str | None) -> float | None:
    """A timestamp as SQLAlchemy stores it in SQLite (UTC, naive text), as unix seconds."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def read_db(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Read-only: the validator is writing the same database."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return conn.execute(sql, args).fetchall()


STANDING = "SELECT hotkey, disqualified_at, suspended_at FROM miners"
ACKNOWLEDGED = """
    SELECT m.hotkey, SUM(s.size), MIN(p.stored_at) FROM placements p
    JOIN shards s ON s.id = p.shard_id JOIN miners m ON m.id = p.miner_id GROUP BY m.hotkey
"""
ROUNDS = """
    SELECT COUNT(DISTINCT issued_at) FROM challenge_log
    WHERE miner = ? AND kind = 'merkle' AND issued_at >= ? AND issued_at <= ?
"""


async def watch(http: aiohttp.ClientSession, chain: str, db: Path, seen: Watch) -> None:
    """Until cancelled, twice a second."""
    while True:
        try:
            async with http.get(f"{chain}/v1/epochs", params={"limit": "5"}) as response:
                epochs = (await response.json())["epochs"]
            # Epochs already closed at the first poll closed at some unknown earlier time:
            # 0, so the epochs after them never count as starting inside a window.
            now = time.time() if seen.polled else 0.0
            for epoch in epochs:
                seen.closed_at.setdefault(int(epoch["number"]), now)
            seen.polled = True
        except (aiohttp.ClientError, ValueError, KeyError):
            pass  # the next poll will do
        try:
            rows = await asyncio.to_thread(read_db, db, STANDING)
        except sqlite3.Error:
            rows = []  # not there or not migrated yet, or locked past the timeout
        for hotkey, disqualified_at, suspended_at in rows:
            if (t := _unix(disqualified_at)) is not None:
                seen.disqualified.setdefault(hotkey, t)
            if (t := _unix(suspended_at)) is not None:
                seen.suspended.setdefault(hotkey, t)
        await asyncio.sleep(0.5)


async def upload(net: LocalNet, root: Path, mib: int) -> None:
    folder = root / "dataset"
    await asyncio.to_thread(generate, folder, mib * 2**20, 4, 13)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        client = GatewayClient(http, net.user, net.validator_urls[0], root / "caps")
        await client.connect()
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size):
            await client.upload(path, str(path.relative_to(folder)))


async def run(net: LocalNet, root: Path, setup: Setup, db: Path) -> Watch:
    seen = Watch()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        watcher = asyncio.create_task(watch(http, net.chain_url, db, seen))
        try:
            await upload(net, root, setup.dataset_mib)
            uploaded = time.time()
            while time.time() < uploaded + setup.seconds:
                if ended := net.exited():  # a dead adversary would make the figures meaningless
                    names = ", ".join(f"{s.name} (log {s.log})" for s in ended)
                    raise RuntimeError(f"exited during the run: {names}")
                await asyncio.sleep(1)
        finally:
            watcher.cancel()
    return seen


def credits_by_epoch(chain: str) -> dict[str, dict[int, int]]:
    async def fetch() -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
            http.get(f"{chain}/v1/ledger") as response,
        ):
            response.raise_for_status()
            rows: list[dict[str, Any]] = (await response.json())["credits"]
            return rows

    credits: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for row in asyncio.run(fetch()):
        credits[row["hotkey"]][int(row["epoch"])] += int(row["amount"])
    return credits


def figures(
    setup: Setup,
    hotkeys: dict[str, str],  # miner name -> hotkey
    behaviours: dict[str, str],  # miner name -> behaviour
    seen: Watch,
    credits: dict[str, dict[int, int]],
    db: Path,
) -> dict[str, Any]:
    acked = {h: (int(size), _unix(first)) for h, size, first in read_db(db, ACKNOWLEDGED)}
    # Epoch e starts when e - 1 closes; the first epochs seen closed started before we watched.
    starts = {e + 1: t for e, t in seen.closed_at.items()}
    closed = set(seen.closed_at)
    honest = [hotkeys[n] for n, b in behaviours.items() if b == HONEST]

    def rate(hotkey: str, epochs: list[int]) -> float:
        held = acked.get(hotkey, (0, None))[0]
        earned = sum(credits.get(hotkey, {}).get(e, 0) for e in epochs)
        return earned / held if held else 0.0

    strategies: dict[str, Any] = {}
    for name, behaviour in behaviours.items():
        hotkey = hotkeys[name]
        held, first_store = acked.get(hotkey, (0, None))
        cheating = first_store
        if cheating is not None and behaviour.startswith("turn:"):
            cheating += setup.turn_after
        epochs = sorted(
            e
            for e, t in starts.items()
            if e in closed and cheating is not None and t >= cheating + setup.grace
        )
        honest_rate = sum(rate(h, epochs) for h in honest) / len(honest)
        ratio = rate(hotkey, epochs) / honest_rate if epochs and honest_rate > 0 else None
        out = [t for t in (seen.disqualified.get(hotkey), seen.suspended.get(hotkey)) if t]
        detected = min(out) if out else None
        rounds = None
        if detected is not None and cheating is not None:
            [(count,)] = read_db(db, ROUNDS, hotkey, cheating, detected)
            rounds = int(count)
        entry = {
            "miner": name,
            "hotkey": hotkey,
            "bytes_acknowledged": held,
            "credit_rao": sum(credits.get(hotkey, {}).get(e, 0) for e in epochs),
            "epochs_counted": len(epochs),
            "rao_per_byte": round(rate(hotkey, epochs), 4),
            "honest_rao_per_byte": round(honest_rate, 4),  # the same epochs
            "ratio_to_honest": None if ratio is None else round(ratio, 4),
            "rounds_to_detection": rounds,
            "seconds_to_detection": (
                None if detected is None or cheating is None else round(detected - cheating, 1)
            ),
            "disqualified": hotkey in seen.disqualified,
            "suspended": hotkey in seen.suspended,
        }
        strategies.setdefault(behaviour, []).append(entry)
    return strategies


def summary(strategies: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One line per strategy; the three honest miners' ratios (each to their mean) shown as
    a spread, and their mean, 1.0 by definition."""
    lines: dict[str, Any] = {}
    for behaviour, entries in strategies.items():
        ratios = [e["ratio_to_honest"] for e in entries if e["ratio_to_honest"] is not None]
        first = entries[0]
        lines[behaviour] = {
            "rao_per_byte": round(sum(e["rao_per_byte"] for e in entries) / len(entries), 4),
            "honest_rao_per_byte": first["honest_rao_per_byte"],
            "epochs_counted": first["epochs_counted"],
            "ratio_to_honest": (
                round(sum(ratios) / len(ratios), 4) if len(ratios) == len(entries) else None
            ),
            "rounds_to_detection": first["rounds_to_detection"],
            "seconds_to_detection": first["seconds_to_detection"],
            "disqualified": any(e["disqualified"] for e in entries),
            "suspended": any(e["suspended"] for e in entries),
        }
        if len(entries) > 1:
            lines[behaviour]["ratio_range"] = [min(ratios, default=None), max(ratios, default=None)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, help=f"after the upload (default {FULL.seconds})")
    parser.add_argument("--out", type=Path, default=Path("bench/results/incentives.json"))
    parser.add_argument(
        "--dir", type=Path, help="a fresh folder to keep the net in (default: a temp dir)"
    )
    parser.add_argument("--smoke", action="store_true", help="30 s, 5 s epochs, 12 s grace")
    args = parser.parse_args()
    # Stopped from outside (a timeout, `kill`): unwind, so the net's processes are stopped.
    signal.signal(signal.SIGTERM, lambda _n, _f: sys.exit(143))
    setup = SMOKE if args.smoke else FULL
    if args.seconds is not None:
        setup = replace(setup, seconds=args.seconds)
    behaviours = {f"miner{i}": b for i, b in enumerate(setup.behaviours)}
    config = LocalNetConfig(
        miners=len(behaviours), block_time=setup.block_time, tempo=setup.tempo, capacity="1GiB"
    )
    programs = {
        name: [sys.executable, "-m", "tests.adversaries", b]
        for name, b in behaviours.items()
        if b != HONEST  # the honest ones are the real `subnet miner run`
    }
    with ExitStack() as stack:
        root = args.dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-incentives-"))
        )
        net = LocalNet(
            root / "net",
            config,
            service_args={"validator0": VALIDATOR_FLAGS},
            miner_programs=programs,
        )
        stack.callback(net.down)
        net.up()
        db = net.root / "validators" / "validator0" / "validator.sqlite"
        seen = asyncio.run(run(net, root, setup, db))
        credits = credits_by_epoch(net.chain_url)
        hotkeys = {name: net.keypair(name).ss58_address for name in behaviours}
        strategies = figures(setup, hotkeys, behaviours, seen, credits, db)
    k, m, _ = config.erasure
    emit(
        {
            "bench": "incentives",
            "command": command("bench.incentives"),
            "seconds": setup.seconds,
            "grace_seconds": setup.grace,
            "epoch_seconds": setup.block_time * setup.tempo,
            "epochs_closed": len(seen.closed_at),
            "challenge_seconds": CHALLENGE_SECONDS,
            "k": k,
            "m": m,
            "miners": len(behaviours),
            "dataset_mib": setup.dataset_mib,
            "validator_flags": " ".join(VALIDATOR_FLAGS),
            "summary": summary(strategies),
            "miners_detail": strategies,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
