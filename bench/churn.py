"""Churn with real processes: miners killed and restarted on a seeded schedule, checked
against the simulator's prediction for the same parameters.

A :class:`~subnet.localnet.LocalNet` of 16 miners and one validator (4-of-8, the local net's
code for 16 miners) stores a few objects; then, for ``--minutes``, miners are SIGKILLed at
exponential intervals (``--kills-per-minute`` over the net) and each is restarted after an
exponential outage (``--outage-seconds`` mean); never more than m - k - 1 are down at once,
so no object can be lost. Outages shorter than detection (the next challenge round plus 3
rechecks) cost nothing; longer ones lose the miner's shares, which the validator rebuilds
elsewhere. Meanwhile every segment's health (shares with a stored placement on a miner
neither deregistered, disqualified nor suspended) is read every second from the validator's
SQLite database, read-only.

At the end every miner is up again, the run waits until every segment is at full health,
and every object must download byte-identical. The report gives the measured time below the
repair threshold and repair traffic beside ``bench.durability``'s simulation of the same
parameters (16 miners, the same segments, kill rate, outage length, challenge and repair
pace).

    python -m bench.churn [--minutes 10] [--seed 1] [--out bench/results/churn.json]
    python -m bench.churn --smoke --out /tmp/churn.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.durability import Scenario, simulate
from bench.report import command, emit
from subnet.gateway_client import GatewayClient
from subnet.localnet import LocalNet, LocalNetConfig
from validator.durability import YEAR, DurabilityInputs

MINERS = 16
SAMPLE_SECONDS = 1.0
SETTLE_SECONDS = 420.0  # past the repairer's 300 s retry of a segment it could not finish
HEALTH = """
    SELECT s.segment_id, COUNT(DISTINCT s.id) FROM shards s
    JOIN placements p ON p.shard_id = s.id JOIN miners mi ON mi.id = p.miner_id
    WHERE p.state = 'stored' AND mi.deregistered_at IS NULL
      AND mi.disqualified_at IS NULL AND mi.suspended_at IS NULL
    GROUP BY s.segment_id
"""
# One signed `repair` entry per share placed; a segment's entries share its start and length.
REPAIRS = """
    SELECT DISTINCT issued_at, answered_at, reason FROM challenge_log
    WHERE kind = 'repair' AND answered_at IS NOT NULL
"""
MINER_STATES = """
    SELECT SUM(disqualified_at IS NOT NULL), SUM(suspended_at IS NOT NULL) FROM miners
"""
SEGMENTS = """
    SELECT g.id, sh.size FROM segments g JOIN objects o ON o.id = g.object_id
    JOIN shards sh ON sh.segment_id = g.id AND sh.share = 0 WHERE o.state = 'committed'
"""


@dataclass(frozen=True, slots=True)
class ChurnConfig:
    minutes: float = 10.0
    seed: int = 1
    objects: int = 24
    object_bytes: int = 768 * 2**10  # one segment each, 192 KiB shards
    kills_per_minute: float = 3.0
    outage_seconds: float = 15.0  # mean; detection is ~1 + 3 x challenge_seconds
    challenge_seconds: float = 2.0
    repair_seconds: float = 2.0
    containment_rechecks: int = 3

    def validator_flags(self) -> list[str]:
        return [
            "--challenge-seconds", str(self.challenge_seconds),
            "--repair-seconds", str(self.repair_seconds),
            "--containment-rechecks", str(self.containment_rechecks),
            # Detection by challenges only, as the simulator has it (not by unseen miners).
            "--repair-unseen-after", "3600",
            # A miner whose shares were given up on is suspended; let it back soon, or a
            # 10-minute run runs out of miners to repair onto.
            "--suspend-seconds", "20",
        ]  # fmt: skip


@dataclass
class Record:
    kills: int = 0
    restarts: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # t, below, min health
    most_down: int = 0


def schedule(config: ChurnConfig) -> list[tuple[float, float]]:
    """(kill time, outage) pairs from the seed: exponential gaps and outages."""
    rng = random.Random(config.seed)
    rate = config.kills_per_minute / 60
    events, t = [], rng.expovariate(rate)
    while t < config.minutes * 60:
        events.append((t, rng.expovariate(1 / config.outage_seconds)))
        t += rng.expovariate(rate)
    return events


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
        return list(c.execute(sql).fetchall())


def health(db: Path, segments: list[int]) -> list[int]:
    counts = dict(_query(db, HEALTH))
    return [int(counts.get(s, 0)) for s in segments]


async def repair_bytes(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "validator_repair_bytes_total":
                total += sample.value
    return int(total)


class Churn:
    def __init__(self, net: LocalNet, config: ChurnConfig, work: Path) -> None:
        self.net = net
        self.config = config
        self.work = work
        self.k, self.m, _ = net.config.erasure
        self.db = net.root / "validators" / "validator0" / "validator.sqlite"
        self.url = net.service("validator0").url
        self.record = Record()
        self.down: set[str] = set()
        self.rng = random.Random(config.seed + 1)
        self.expected: dict[str, str] = {}

    async def upload(self, http: aiohttp.ClientSession) -> None:
        client = GatewayClient(http, self.net.user, self.url, self.work / "caps")
        await client.connect()
        rng = random.Random(self.config.seed)
        for i in range(self.config.objects):
            data = rng.randbytes(self.config.object_bytes)
            path = self.work / "objects" / f"object-{i}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            await client.upload(path, path.name)
            self.expected[path.name] = hashlib.sha256(data).hexdigest()

    async def _outage(self, name: str, outage: float) -> None:
        pid = self.net.service(name).pid
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.record.kills += 1
        await asyncio.sleep(outage)
        await asyncio.to_thread(self.net.restart, name)
        self.record.restarts += 1
        self.down.discard(name)

    async def sample(self, segments: list[int], started: float, stop: asyncio.Event) -> None:
        full = self.m
        while not stop.is_set():
            healths = await asyncio.to_thread(health, self.db, segments)
            below = sum(1 for h in healths if h < full)  # threshold m - k: any share short
            self.record.samples.append((time.monotonic() - started, below, min(healths)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)

    async def churn(self) -> None:
        miners = [s.name for s in self.net.services if s.role == "miner"]
        started = time.monotonic()
        outages: set[asyncio.Task[None]] = set()
        for at, outage in schedule(self.config):
            await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
            live = [n for n in miners if n not in self.down]
            if len(self.down) >= self.m - self.k - 1 or not live:
                continue  # at most m - k - 1 away: nothing can be lost
            name = self.rng.choice(live)
            self.down.add(name)
            self.record.most_down = max(self.record.most_down, len(self.down))
            task = asyncio.create_task(self._outage(name, outage))
            outages.add(task)
            task.add_done_callback(outages.discard)
        await asyncio.gather(*list(outages))

    async def settle(self, segments: list[int]) -> float | None:
        """Seconds until every segment is at full health again; None if it was not within
        SETTLE_SECONDS (the report then says what was short, and why, from the database)."""
        started = time.monotonic()
        while min(await asyncio.to_thread(health, self.db, segments)) < self.m:
            if time.monotonic() - started > SETTLE_SECONDS:
                return None
            await asyncio.sleep(0.5)
        return time.monotonic() - started

    def shortfall(self, segments: list[int]) -> dict[str, Any]:
        healths = health(self.db, segments)
        disqualified, suspended = _query(self.db, MINER_STATES)[0]
        return {
            "segments_short": sum(1 for h in healths if h < self.m),
            "healths_short": sorted(h for h in healths if h < self.m),
            "miners_disqualified": int(disqualified or 0),
            "miners_suspended": int(suspended or 0),
        }

    async def verify(self, http: aiohttp.ClientSession) -> int:
        client = GatewayClient(http, self.net.user, self.url, self.work / "caps")
        await client.connect()
        listed = {o["name"]: o["id"] for o in await client.list()}
        verified = 0
        for name, sha256 in sorted(self.expected.items()):
            target = self.work / "downloads" / name
            await client.download(listed[name], target)
            if hashlib.sha256(target.read_bytes()).hexdigest() != sha256:
                raise RuntimeError(f"{name} downloaded with other bytes than were uploaded")
            verified += 1
        return verified


async def _run(net: LocalNet, config: ChurnConfig, work: Path) -> dict[str, Any]:
    churn = Churn(net, config, work)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await churn.upload(http)
        rows = _query(churn.db, SEGMENTS)
        segments = [int(r[0]) for r in rows]
        shard_bytes = sum(int(r[1]) for r in rows) // max(1, len(rows))
        bytes_before = await repair_bytes(http, churn.url)
        stop = asyncio.Event()
        started = time.monotonic()
        sampler = asyncio.create_task(churn.sample(segments, started, stop))
        await churn.churn()
        churn_seconds = time.monotonic() - started
        settle = await churn.settle(segments)
        short = None if settle is not None else churn.shortfall(segments)
        stop.set()
        await sampler
        traffic = await repair_bytes(http, churn.url) - bytes_before
        verified = await churn.verify(http)
    repairs = _query(churn.db, REPAIRS)
    # The rebuild rate this run achieved: per segment, fetch k, rebuild, push, record. With
    # small shards it is per-segment overhead, far below bench.repair_time's bulk rate.
    shares_rebuilt = len(repairs)
    repair_seconds = sum(float(b) - float(a) for a, b, _ in {(a, b, "") for a, b, _ in repairs})
    rebuild_rate = shares_rebuilt * shard_bytes / repair_seconds if repair_seconds else 8e6
    samples = churn.record.samples
    below = sum(b for _, b, _ in samples) / max(1, len(samples) * len(segments))
    stored = len(segments) * churn.m * shard_bytes
    seconds = churn_seconds + (SETTLE_SECONDS if settle is None else settle)
    measured = {
        "churn_seconds": round(churn_seconds, 1),
        "settle_seconds": None if settle is None else round(settle, 1),
        "health_restored": settle is not None,
        "shortfall": short,
        "kills": churn.record.kills,
        "restarts": churn.record.restarts,
        "most_down_at_once": churn.record.most_down,
        "segments": len(segments),
        "shard_bytes": shard_bytes,
        "samples": len(samples),
        "lowest_health": min((h for _, _, h in samples), default=churn.m) - churn.k,
        "fraction_below_threshold": below,
        "repair_bytes": traffic,
        "shares_rebuilt": shares_rebuilt,
        "rebuild_bytes_per_second": round(rebuild_rate),
        "repair_bytes_per_stored_byte_per_hour": traffic / stored / (seconds / 3600),
        "objects_verified": verified,
        "objects_lost": len(churn.expected) - verified,
    }
    predicted = predict(config, len(segments), shard_bytes, rebuild_rate)
    return {"measured": measured, "predicted": predicted}


def predict(
    config: ChurnConfig, segments: int, shard_bytes: int, rebuild_rate: float
) -> dict[str, Any]:
    """The simulator on the same parameters, over much longer than the run (its noise is
    then the run's, not the simulator's)."""
    policy = DurabilityInputs(
        k=4,
        m=8,
        failure_rate=config.kills_per_minute / 60 / MINERS,
        challenge_seconds=config.challenge_seconds,
        containment_rechecks=config.containment_rechecks,
        repair_seconds=config.repair_seconds,
        unseen_after=3600.0,
        outage_seconds=config.outage_seconds,
        rebuild_bytes_per_second=rebuild_rate,
    )
    scenario = Scenario(
        "churn run",
        policy,
        miners=MINERS,
        segments=segments,
        shard_bytes=shard_bytes,
        years=100 * config.minutes * 60 / YEAR,
        seed=config.seed,
    )
    result = simulate(scenario).to_dict()
    per_year = result["repair_bytes_per_stored_byte_per_year"]
    return {
        "fraction_below_threshold": result["fraction_below_threshold"],
        "repair_bytes_per_stored_byte_per_hour": per_year / (YEAR / 3600),
        "segments_lost": result["segments_lost"],
        "model_fraction_below_threshold": result["model_fraction_below_threshold"],
    }


@contextlib.contextmanager
def local_net(work: Path, config: ChurnConfig) -> Iterator[LocalNet]:
    net = LocalNet(
        work / "net",
        LocalNetConfig(miners=MINERS, validators=1, block_time=0.1, tempo=20, capacity="1GiB"),
        service_args={"validator0": config.validator_flags()},
    )
    try:
        net.up()
        yield net
    finally:
        net.down()


def run(config: ChurnConfig, work: Path) -> dict[str, Any]:
    """Start the net, churn it, check every object; the measured and predicted figures."""
    started = time.monotonic()
    with local_net(work, config) as net:
        report = asyncio.run(_run(net, config, work))
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    return report


def ratio(measured: float, predicted: float) -> float | None:
    return None if predicted <= 0 else round(measured / predicted, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/churn.json"))
    parser.add_argument("--smoke", action="store_true", help="30 s of churn, 8 objects")
    args = parser.parse_args()
    config = ChurnConfig(minutes=args.minutes, seed=args.seed)
    if args.smoke:
        config = ChurnConfig(minutes=0.5, seed=args.seed, objects=8, kills_per_minute=8.0)
    with tempfile.TemporaryDirectory(prefix="bench-churn-") as tmp:
        report = run(config, Path(tmp))
    measured, predicted = report["measured"], report["predicted"]
    emit(
        {
            "bench": "churn",
            "command": command("bench.churn"),
            "config": asdict(config),
            **report,
            "below_threshold_measured_over_predicted": ratio(
                measured["fraction_below_threshold"], predicted["fraction_below_threshold"]
            ),
            "repair_traffic_measured_over_predicted": ratio(
                measured["repair_bytes_per_stored_byte_per_hour"],
                predicted["repair_bytes_per_stored_byte_per_hour"],
            ),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
