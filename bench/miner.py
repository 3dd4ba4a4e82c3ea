"""Miner throughput against plain aiohttp, in one run, both servers as separate processes.

- PUT: 4 MiB shards over 8 concurrent streams, in alternating rounds (median), to
  ``subnet miner run`` (hash check, Merkle levels, fsync, rename, index) against a bare
  aiohttp handler streaming the bytes to a file (with the same fsync): the cost of
  everything the miner adds.
- Challenges: batches of 64 leaves (8 shards x 8 leaves, 16 KiB leaves) from 4 concurrent
  clients, against a bare aiohttp echo returning a reply of the same size.

    python -m bench.miner [--shards 64] [--seconds 5] [--out bench/results/miner.json]
    python -m bench.miner --smoke --out /tmp/miner.json   # seconds: 8 shards, 0.5 s of load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from bittensor_wallet import Keypair

from bench.report import command, emit
from erasure import MerkleTree
from protocol.signing import SigningClient
from protocol.wallet import create_wallet
from protocol.wire import decode_frame
from subnet.processes import free_port, stop, wait_healthy

SHARD = 4 * 2**20
LEAF = 16384
STREAMS = 8
CLIENTS = 4
LEAVES_PER_SHARD = 8
SHARDS_PER_BATCH = 8
SCRUB = os.environ.get("BENCH_SCRUB_RATE", "0")  # the scrubber is off unless asked for


# --- the baseline server: plain aiohttp, no checks ------------------------------------


def baseline_app(folder: Path, reply_size: int) -> web.Application:
    async def put(request: web.Request) -> web.Response:
        path = folder / request.match_info["name"]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            async for chunk in request.content.iter_chunked(1 << 20):
                await asyncio.to_thread(os.write, fd, chunk)
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        return web.json_response({"ok": True}, status=201)

    reply = os.urandom(reply_size)

    async def echo(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=reply)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=8 * 2**20)
    app.router.add_put("/put/{name}", put)
    app.router.add_post("/echo", echo)
    app.router.add_get("/healthz", healthz)
    return app


# --- load generation -------------------------------------------------------------------


async def pool(n: int, jobs: list[Callable[[], Coroutine[Any, Any, None]]]) -> float:
    queue = list(jobs)
    start = time.perf_counter()

    async def worker() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(worker() for _ in range(n)))
    return time.perf_counter() - start


async def body(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 256 * 1024):
        yield data[i : i + 256 * 1024]


async def measure(
    miner_url: str, base_url: str, miner: str, key: Keypair, args: Any
) -> dict[str, Any]:
    rng = random.Random(7)
    shards = [rng.randbytes(SHARD) for _ in range(args.shards)]
    trees = [MerkleTree.build(s, LEAF) for s in shards]
    total = args.shards * SHARD
    async with aiohttp.ClientSession() as session:
        signer = SigningClient(session, key)

        def miner_put(data: bytes, tree: MerkleTree) -> Callable[[], Coroutine[Any, Any, None]]:
            async def job() -> None:
                sid = tree.root.hex()
                async with signer.request_stream(
                    "PUT", f"{miner_url}/v1/shards/{sid}?leaf_size={LEAF}", signed_for=miner,
                    content_hash=sid, body=body(data), headers={"Content-Length": str(len(data))},
                ) as r:  # fmt: skip
                    assert r.status == 201, await r.text()

            return job

        def base_put(i: int, data: bytes) -> Callable[[], Coroutine[Any, Any, None]]:
            async def job() -> None:
                async with session.put(f"{base_url}/put/{i}", data=body(data)) as r:
                    assert r.status == 201

            return job

        # Alternate rounds so disk writeback and noise fall on both sides alike.
        base_times, miner_times = [], []
        per_round = len(shards) // args.rounds
        for r in range(args.rounds):
            part = range(r * per_round, (r + 1) * per_round)
            base_times.append(await pool(STREAMS, [base_put(i, shards[i]) for i in part]))
            miner_times.append(await pool(STREAMS, [miner_put(shards[i], trees[i]) for i in part]))
        base_s = statistics.median(base_times) * args.rounds
        miner_s = statistics.median(miner_times) * args.rounds

        leaf_count = trees[0].leaf_count
        proofs = 0
        reply_bytes = 0

        def batch() -> dict[str, Any]:
            picks = rng.sample(range(len(trees)), SHARDS_PER_BATCH)
            return {
                "challenges": [
                    {
                        "shard_id": trees[p].root.hex(),
                        "nonce": os.urandom(8).hex(),
                        "indices": rng.sample(range(leaf_count), LEAVES_PER_SHARD),
                    }
                    for p in picks
                ]
            }

        async def challenge_client(deadline: float) -> None:
            nonlocal proofs, reply_bytes
            while time.perf_counter() < deadline:
                async with signer.request(
                    "POST", f"{miner_url}/v1/challenges", signed_for=miner, json=batch()
                ) as r:
                    raw = await r.read()
                meta, _ = decode_frame(raw)
                proofs += sum(a.get("leaves", 0) for a in meta["answers"])
                reply_bytes = len(raw)

        start = time.perf_counter()
        await asyncio.gather(*(challenge_client(start + args.seconds) for _ in range(CLIENTS)))
        proofs_per_s = proofs / (time.perf_counter() - start)

        echoes = 0
        request_body = json.dumps(batch()).encode()

        async def echo_client(deadline: float) -> None:
            nonlocal echoes
            while time.perf_counter() < deadline:
                async with session.post(f"{base_url}/echo", data=request_body) as r:
                    await r.read()
                echoes += 1

        start = time.perf_counter()
        await asyncio.gather(*(echo_client(start + args.seconds) for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - start
        echo_leaves_per_s = echoes * SHARDS_PER_BATCH * LEAVES_PER_SHARD / elapsed
    return {
        "put_mb_s": round(total / miner_s / 1e6, 1),
        "baseline_put_mb_s": round(total / base_s / 1e6, 1),
        "put_ratio": round(base_s / miner_s, 2),
        "leaf_proofs_per_s": round(proofs_per_s),
        "baseline_echo_leaves_per_s": round(echo_leaves_per_s),
        "challenge_ratio": round(proofs_per_s / echo_leaves_per_s, 2),
        "reply_bytes_per_batch": reply_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4, help="alternating PUT rounds")
    parser.add_argument("--out", type=Path, default=Path("bench/results/miner.json"))
    parser.add_argument("--baseline-server", nargs=3, metavar=("PORT", "DIR", "REPLY"))
    parser.add_argument("--smoke", action="store_true", help="8 shards, 2 rounds, 0.5 s")
    args = parser.parse_args()
    if args.smoke:
        args.shards, args.rounds, args.seconds = 8, 2, 0.5
    if args.baseline_server:
        port, folder, reply = args.baseline_server
        app = baseline_app(Path(folder), int(reply))
        web.run_app(app, host="127.0.0.1", port=int(port), print=None)
        return

    with tempfile.TemporaryDirectory(prefix="bench-miner-") as tmp:
        root = Path(tmp)
        miner = create_wallet("bench", "default", root / "wallets").ss58_address
        validator = Keypair.create_from_uri("//BenchValidator")
        mport, bport = free_port(), free_port()
        (root / "base").mkdir()
        reply = SHARDS_PER_BATCH * LEAVES_PER_SHARD * LEAF + SHARDS_PER_BATCH * 9 * 32
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "subnet", "miner", "run", "--wallet-name", "bench",
                 "--wallet-path", str(root / "wallets"), "--port", str(mport),
                 "--data-dir", str(root / "miner"), "--validators", validator.ss58_address,
                 "--capacity", "100GiB", "--log-level", "warning", "--scrub-rate", SCRUB]
            ),
            subprocess.Popen(
                [sys.executable, "-m", "bench.miner", "--baseline-server", str(bport),
                 str(root / "base"), str(reply)]
            ),
        ]  # fmt: skip
        try:
            murl, burl = f"http://127.0.0.1:{mport}", f"http://127.0.0.1:{bport}"
            wait_healthy(murl, procs[0], root / "miner.log")
            wait_healthy(burl, procs[1], root / "baseline.log")
            results = asyncio.run(measure(murl, burl, miner, validator, args))
        finally:
            for proc in procs:
                stop(proc)
    report = {
        "bench": "miner",
        "command": command("bench.miner"),
        "shard_bytes": SHARD,
        "shards": args.shards,
        "put_rounds": args.rounds,
        "challenge_seconds": args.seconds,
        "put_streams": STREAMS,
        "challenge_clients": CLIENTS,
        "leaves_per_batch": SHARDS_PER_BATCH * LEAVES_PER_SHARD,
        "results": results,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
