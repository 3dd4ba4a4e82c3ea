"""Time to repair to full health after losing one miner that holds N MiB of shards.

Real processes on loopback: 8 miners (127.0.0.2..9) and one validator coding 4-of-6, so two
miners are always free to take a rebuilt share. Enough data is uploaded that each miner
holds about N MiB of shards; then one miner is SIGKILLed. The validator notices through its
own challenges (a timeout, then 3 full-retrieval rechecks, 1 s apart) and its repair loop
rebuilds every lost share elsewhere. Full health = every shard again has a stored placement
on a live miner, read from the validator's database. Reported: seconds from the kill to
detection and to full health, bytes rebuilt, and the rebuild rate beside the upload rate
measured in the same run (the baseline: the same pipeline moving data the other way).

    python -m bench.repair_time [--per-miner-mib 1024] [--out bench/results/repair_time.json]
    python -m bench.repair_time --smoke --out /tmp/repair.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import aiohttp

from bench.report import command, emit
from protocol.wallet import create_wallet, load_hotkey
from subnet.dataset import generate
from subnet.gateway_client import GatewayClient
from subnet.processes import free_port, running, start_subnet_command, wait_healthy

MINERS, K, M = 8, 4, 6
UNHEALTHY = """
    SELECT COUNT(*) FROM shards s WHERE NOT EXISTS (
        SELECT 1 FROM placements p JOIN miners m ON m.id = p.miner_id
        WHERE p.shard_id = s.id AND p.state = 'stored' AND m.hotkey != ?)
"""
HELD = """
    SELECT COALESCE(SUM(s.size), 0) FROM placements p JOIN shards s ON s.id = p.shard_id
    JOIN miners m ON m.id = p.miner_id WHERE m.hotkey = ? AND p.state = 'stored'
"""
LOST = """
    SELECT COUNT(*) FROM placements p JOIN miners m ON m.id = p.miner_id
    WHERE m.hotkey = ? AND p.state = 'lost'
"""


def query(db: Path, sql: str, *args: object) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


async def upload(url: str, root: Path, wallets: Path, paths: list[Path]) -> float:
    user = load_hotkey("user", "default", wallets)
    started = time.perf_counter()
    total = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        client = GatewayClient(http, user, url, root / "caps")
        await client.connect()
        for path in paths:
            await client.upload(path, path.name)
            total += path.stat().st_size
    return total / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-miner-mib", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=Path("bench/results/repair_time.json"))
    parser.add_argument("--smoke", action="store_true", help="16 MiB per miner")
    args = parser.parse_args()
    per_miner = (16 if args.smoke else args.per_miner_mib) * 2**20
    upload_bytes = per_miner * K * MINERS // M  # each miner holds m/miners of the shards
    with tempfile.TemporaryDirectory(prefix="bench-repair-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        wallets = root / "wallets"
        validator = create_wallet("validator", "default", wallets).ss58_address
        user = create_wallet("user", "default", wallets).ss58_address
        miners = []
        for i in range(MINERS):
            hotkey = create_wallet(f"miner{i}", "default", wallets).ss58_address
            host, port = f"127.0.0.{i + 2}", free_port()
            log = root / f"miner{i}.log"
            proc = stack.enter_context(
                running(
                    start_subnet_command(
                        [
                            "miner",
                            "run",
                            "--wallet-name",
                            f"miner{i}",
                            "--wallet-path",
                            str(wallets),
                            "--host",
                            host,
                            "--port",
                            str(port),
                            "--data-dir",
                            str(root / f"m{i}"),
                            "--validators",
                            validator,
                            "--capacity",
                            "64GiB",
                            "--scrub-rate",
                            "0",
                            "--log-level",
                            "warning",
                        ],
                        log,
                    )
                )
            )
            miners.append((hotkey, proc, f"http://{host}:{port}", log))
        for _, proc, url, log in miners:
            wait_healthy(url, proc, log)
        vport, vlog = free_port(), root / "validator.log"
        vproc = stack.enter_context(
            running(
                start_subnet_command(
                    [
                        "validator",
                        "run",
                        "--wallet-name",
                        "validator",
                        "--wallet-path",
                        str(wallets),
                        "--port",
                        str(vport),
                        "--data-dir",
                        str(root / "v"),
                        "--users",
                        f"user={user}",
                        "--miners",
                        ",".join(f"{h}@{u.removeprefix('http://')}" for h, _, u, _ in miners),
                        "--k",
                        str(K),
                        "--m",
                        str(M),
                        "--challenge-seconds",
                        "1",
                        "--challenge-floor",
                        "1",
                        "--repair-seconds",
                        "1",
                        "--repair-max-segments",
                        "64",
                        "--log-level",
                        "warning",
                    ],
                    vlog,
                )
            )
        )
        vurl = f"http://127.0.0.1:{vport}"
        wait_healthy(vurl, vproc, vlog)
        files = max(4, upload_bytes // (256 * 2**20))
        generate(root / "data", upload_bytes, files, seed=5)
        paths = sorted(p for p in (root / "data").rglob("*") if p.is_file())
        upload_mb_s = asyncio.run(upload(vurl, root, wallets, paths))
        db = root / "v" / "validator.sqlite"
        victim, vproc_victim, _, _ = miners[3]
        held = query(db, HELD, victim)
        killed_at = time.monotonic()
        os.kill(vproc_victim.pid, signal.SIGKILL)
        detected = healthy = None
        while time.monotonic() - killed_at < 3600:
            if detected is None and query(db, LOST, victim) > 0:
                detected = time.monotonic() - killed_at
            if detected is not None and query(db, UNHEALTHY, victim) == 0:
                healthy = time.monotonic() - killed_at
                break
            time.sleep(0.5)
    repair_seconds = None if healthy is None or detected is None else healthy - detected
    emit(
        {
            "bench": "repair_time",
            "command": command("bench.repair_time"),
            "k": K,
            "m": M,
            "miners": MINERS,
            "uploaded_bytes": upload_bytes,
            "lost_miner_held_bytes": held,
            "upload_mb_s": round(upload_mb_s, 1),
            "seconds_to_detect": None if detected is None else round(detected, 1),
            "seconds_to_full_health": None if healthy is None else round(healthy, 1),
            "rebuild_mb_s": (round(held / repair_seconds / 1e6, 1) if repair_seconds else None),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
