"""The latency gap between an honest miner and one that rebuilds each shard on demand.

Two real miner processes on loopback: `honest`, and `rebuild:4` from tests/adversaries
(it keeps the shard but, before answering, fetches 4 shard-sized bodies over loopback and
runs a real zfec decode: the cost of rebuilding from k = 4 other miners, emulated). For
each shard size it measures, one request at a time: a challenge of 1 shard x 8 leaves, a
batch of 8 shards x 8 leaves (what the challenger sends), and a full GET of one shard. The
baseline is the honest miner in the same run; the ratio is what a deadline has to separate.

    python -m bench.rebuild_gap [--sizes 1MiB,4MiB] [--samples 30] [--out ...]
    python -m bench.rebuild_gap --smoke --out /tmp/gap.json
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from bittensor_wallet import Keypair

from bench.report import command, emit
from protocol.settings import parse_size
from protocol.signing import SigningClient
from tests.adversaries.probes import challenge, make_shard, store
from tests.adversaries.process import MinerProcess, running_miners
from validator.miner_client import MinerClient

VALIDATOR = Keypair.create_from_uri("//GapValidator")
BATCH = 8


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2)}


async def measure(miners: list[MinerProcess], sizes: list[int], samples: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        client = MinerClient(SigningClient(session, VALIDATOR), timeout=120)
        for size in sizes:
            shards = [make_shard(size, seed=i) for i in range(BATCH)]
            figures: dict[str, dict[str, float]] = {}
            for miner in miners:
                for shard in shards:
                    await store(client, miner.address, shard)
                await challenge(client, miner.address, shards, count=8)  # warm the tree cache
                timings: dict[str, list[float]] = {"one": [], "batch": [], "get": []}
                for i in range(samples):
                    one = await challenge(client, miner.address, [shards[i % BATCH]], count=8)
                    timings["one"].append(one[0].latency)
                    batch = await challenge(client, miner.address, shards, count=8)
                    timings["batch"].append(batch[0].latency)
                    started = time.perf_counter()
                    await client.get_shard(miner.address, shards[i % BATCH].id)
                    timings["get"].append(time.perf_counter() - started)
                figures[miner.behaviour] = {
                    f"{kind}_{k}": v for kind, t in timings.items() for k, v in quantiles(t).items()
                }
            honest, rebuild = figures["honest"], figures["rebuild:4"]
            results[f"{size // 1024}KiB"] = {
                "honest": honest,
                "rebuild": rebuild,
                "ratio_p50": {
                    kind: round(rebuild[f"{kind}_p50_ms"] / honest[f"{kind}_p50_ms"], 1)
                    for kind in ("one", "batch", "get")
                },
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1MiB,4MiB", help="shard sizes, comma-separated")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/results/rebuild_gap.json"))
    parser.add_argument("--smoke", action="store_true", help="one 256 KiB size, 3 samples")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.samples = "256KiB", 3
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    with (
        tempfile.TemporaryDirectory(prefix="bench-gap-") as tmp,
        running_miners(
            ["honest", "rebuild:4"],
            Path(tmp),
            [VALIDATOR.ss58_address],
            hosts=["127.0.0.2", "127.0.0.3"],
            args=["--scrub-rate", "0"],
        ) as miners,
    ):
        results = asyncio.run(measure(miners, sizes, args.samples))
    emit(
        {
            "bench": "rebuild_gap",
            "command": command("bench.rebuild_gap"),
            "samples": args.samples,
            "leaves_per_shard": 8,
            "batch_shards": BATCH,
            "results": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
