"""The validator's dashboard at scale: time to render the page and each panel with 256 miners,
1M placements and an hour of challenge log at the production pace (64 challenges per miner
every 30 s), on SQLite.

The database is filled by ``bench.scale``'s loader (the real schema, made by the migrations);
the log rows are written the same way. Then the real validator app (``validator.app.make_app``,
no background loops) is served on loopback and each URL is fetched ``--runs`` times; the
figure is the server's own ``X-Render-Ms`` (what the page took to build), and the wall time a
client saw. The aim (issue 18): every page under 200 ms.

    python -m bench.dashboard [--miners 256] [--placements 1000000] [--log-minutes 60]
    python -m bench.dashboard --smoke --out /tmp/dashboard.json
    python -m bench.dashboard --compare bench/results/dashboard.json   # ratios to a run before

The load average (1 min) at the start and end of the run is recorded: the machine is
shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from bittensor_wallet import Keypair
from sqlalchemy.orm import sessionmaker

from bench.report import command, emit
from bench.scale import Loader, M, MinerRow, miner_host, random_segments
from protocol.db import make_engine, upgrade
from protocol.logs import configure_logging
from protocol.signing import SigningClient
from validator import challenge_stats
from validator.app import make_app
from validator.challenge_stats import Observation
from validator.challenger import ChallengePolicy, Challenger
from validator.gateway import Gateway
from validator.log_store import ChallengeLogStore
from validator.miner_client import MinerClient
from validator.repair import Repairer
from validator.settings import ValidatorSettings

SHARD = 4 * 2**20
PER_ROUND = 64  # challenges per miner per round, production's batch
ROUND_SECONDS = 30.0
PANELS = ("miners", "log", "repair", "objects", "weights")


def load_log(loader: Loader, miners: list[MinerRow], minutes: float, validator: str) -> int:
    """An hour (or ``minutes``) of log rows at the production pace, ending now, and the
    per-miner figures the recorder keeps with them (``challenge_stats.add``, per round)."""
    now = time.time()
    rounds = int(minutes * 60 / ROUND_SECONDS)
    columns = (
        "seq", "validator", "miner", "shard_id", "kind", "nonce", "indices", "root",
        "issued_at", "answered_at", "latency_ms", "verdict", "reason", "proof_digest",
        "leaf_count", "leaf_hashes", "proof", "size", "prev_hash", "signature", "entry_hash",
    )  # fmt: skip
    rng = random.Random(5)
    seq = 0
    for r in range(rounds):
        issued = now - (rounds - r) * ROUND_SECONDS
        rows = []
        seen = []
        for m in miners:
            for _ in range(PER_ROUND):
                latency = rng.uniform(2, 40)
                rows.append(
                    (seq, validator, m.hotkey, "ab" * 32, "merkle", "00" * 16, "[1,2]", "ab" * 32,
                     issued, issued + latency / 1000, latency, "pass", "ok", "0" * 64, 256,
                     b"\0" * 64, b"\0" * 32, SHARD, "0" * 64, "0x" + "5a" * 64, f"{seq:064x}")
                )  # fmt: skip
                seen.append(Observation(m.hotkey, "merkle", "pass", issued, latency))
                seq += 1
        with loader._raw() as conn:
            loader._insert(conn, "challenge_log", columns, rows)
        with loader.engine.begin() as connection:
            challenge_stats.add(connection, challenge_stats.tally(seen))
    return seq


async def measure(url: str, keypair: Keypair, runs: int) -> dict[str, Any]:
    engine = make_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        miners = MinerClient(SigningClient(http, keypair))
        gateway = Gateway(sessions, miners)
        challenger = Challenger(
            sessions, miners, ChallengeLogStore(sessions, keypair), ChallengePolicy()
        )
        repairer = Repairer(sessions, miners, gateway.candidates)
        app = make_app(
            gateway,
            ValidatorSettings(),
            keypair.ss58_address,
            challenger=challenger,
            repairer=repairer,
            background=False,
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            for path in ["/", *(f"/dashboard/{p}" for p in PANELS)]:
                server, wall = [], []
                for _ in range(runs):
                    started = time.perf_counter()
                    async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                        await response.read()
                        assert response.status == 200, (path, response.status)
                        server.append(float(response.headers["X-Render-Ms"]))
                    wall.append((time.perf_counter() - started) * 1000)
                out[path] = {
                    "first_ms": round(server[0], 1),
                    "median_ms": round(statistics.median(server), 1),
                    "max_ms": round(max(server), 1),
                    "wall_median_ms": round(statistics.median(wall), 1),
                }
        finally:
            await runner.cleanup()
            engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--miners", type=int, default=256)
    parser.add_argument("--placements", type=int, default=1_000_000)
    parser.add_argument("--log-minutes", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="16 miners, 8k placements")
    parser.add_argument("--out", type=Path, default=Path("bench/results/dashboard.json"))
    parser.add_argument(
        "--compare",
        type=Path,
        help="an earlier report of this bench: its medians go into this one, for the ratios",
    )
    args = parser.parse_args()
    previous = json.loads(args.compare.read_text()) if args.compare else None
    load_before = os.getloadavg()
    if args.smoke:
        args.miners, args.placements, args.log_minutes, args.runs = 16, 8_000, 5.0, 2
    configure_logging("warning", "text")  # no migration chatter in the JSON it prints
    keypair = Keypair.create_from_uri("//BenchDashboard")
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'validator.sqlite'}"
        upgrade(url, "validator")
        loader = Loader(url, shard_size=SHARD, validator=keypair.ss58_address, seed=3)
        rows = [MinerRow(f"5Miner{i:05d}", miner_host(i), 9000) for i in range(args.miners)]
        started = time.perf_counter()
        loader.add_base(rows)
        loader.add_segments(
            random_segments(random.Random(4), args.placements // M, args.miners),
            challenged=True,
        )
        log_rows = load_log(loader, rows, args.log_minutes, keypair.ss58_address)
        loader.analyze()
        placements = loader.placements
        loader.close()
        load_seconds = time.perf_counter() - started
        pages = asyncio.run(measure(url, keypair, args.runs))
    worst = max(v["max_ms"] for v in pages.values())
    report: dict[str, Any] = {}
    if previous is not None:
        report["previous"] = {
            "command": previous.get("command"),
            "note": previous.get("note"),
            "median_ms": {path: page["median_ms"] for path, page in previous["pages"].items()},
        }
    emit(
        {
            **report,
            # other sessions share this machine: what it was doing is part of the figure
            "load_average": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
            "bench": "dashboard",
            "command": command("bench.dashboard"),
            "runs": args.runs,
            "miners": args.miners,
            "placements": placements,
            "log_rows": log_rows,
            "load_seconds": round(load_seconds, 1),
            "pages": pages,
            "worst_ms": worst,
            "aim_ms": 200,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
