"""Gateway throughput: a dataset and one large object through a validator to real miners.

Every service is its own process on loopback (each miner on its own 127.0.0.x address); the
load is the user's client (`subnet.gateway_client`, the same code `subnet upload` runs),
sha256 pass included. Reported: upload and download MB/s, the validator's and the largest
miner's peak RSS, and raw single-threaded zfec encode MB/s on the same bytes (one call per
segment) for the ratio.
4-of-8 runs on 8 miners; 10-of-16 needs 16 miners to keep one shard per host.

    python -m bench.gateway [--dataset-mib 1024] [--object-mib 4096] [--out ...]
    python -m bench.gateway --smoke --out /tmp/gateway.json   # seconds: tiny sizes, 2-of-4
    python -m bench.gateway --codecs zfec,isal ...   # each config once per erasure codec
    python -m bench.gateway --seals client,validator ...   # who seals, in one run

``--seals``: ``client`` (the default of ``subnet upload``: the client seals with AES-256-GCM
and the validator codes ciphertext; the client's up-front hash is then of the ciphertext, so
it seals twice) or ``validator`` (the client hashes the plaintext, the validator seals).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import zfec

from bench.cluster import local_subnet, peak_rss_mib, random_file, reset_peak_rss
from bench.report import command, emit
from protocol.wallet import load_hotkey
from subnet.dataset import generate
from subnet.gateway_client import GatewayClient

SEGMENT = 16 * 2**20


def raw_zfec_mb_s(path: Path, k: int, m: int) -> float:
    encoder = zfec.Encoder(k, m)
    wanted = tuple(range(k, m))
    total = 0
    spent = 0.0
    with path.open("rb") as src:
        while segment := src.read(SEGMENT):
            block = -(-len(segment) // k)
            segment += bytes(block * k - len(segment))
            blocks = [segment[i * block : (i + 1) * block] for i in range(k)]
            start = time.perf_counter()
            encoder.encode(blocks, wanted)
            spent += time.perf_counter() - start
            total += len(segment)
    return total / spent / 1e6


async def transfer(
    url: str,
    root: Path,
    dataset: Path,
    big: Path,
    files: list[Path],
    big_size: int,
    validator_pid: int,
    miner_pids: tuple[int, ...],
    codec: str = "zfec",
    seal: str = "client",
) -> dict[str, float]:
    keypair = load_hotkey("user", "default", root / "wallets")
    size = sum(p.stat().st_size for p in files)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        client = GatewayClient(session, keypair, url, caps=root / "caps")
        await client.connect()
        limit = asyncio.Semaphore(4)

        async def put(path: Path) -> None:
            async with limit:
                name = path.relative_to(dataset).as_posix()
                await client.upload(path, name, codec=codec, seal=seal)

        start = time.perf_counter()
        await asyncio.gather(*(put(p) for p in files))
        up_dataset = size / (time.perf_counter() - start) / 1e6
        start = time.perf_counter()
        for p in files:
            await client.download(p.relative_to(dataset).as_posix(), root / "out" / p.name)
        down_dataset = size / (time.perf_counter() - start) / 1e6

        dataset_rss = peak_rss_mib(validator_pid)
        for pid in (validator_pid, *miner_pids):
            await asyncio.to_thread(reset_peak_rss, pid)
        start = time.perf_counter()
        await client.upload(big, "big.bin", codec=codec, seal=seal)
        up_big = big_size / (time.perf_counter() - start) / 1e6
        start = time.perf_counter()
        await client.download("big.bin", root / "big.out")
        down_big = big_size / (time.perf_counter() - start) / 1e6
    return {
        "validator_peak_rss_mib_dataset": round(dataset_rss, 1),
        "validator_peak_rss_mib_object": round(peak_rss_mib(validator_pid), 1),
        # the largest of the miners' peaks: each holds one shard of every segment
        "miner_peak_rss_mib_object": round(max(peak_rss_mib(pid) for pid in miner_pids), 1),
        "dataset_upload_mb_s": round(up_dataset, 1),
        "dataset_download_mb_s": round(down_dataset, 1),
        "object_upload_mb_s": round(up_big, 1),
        "object_download_mb_s": round(down_big, 1),
    }


def run_config(
    k: int, m: int, miners: int, dataset: Path, big: Path, codec: str = "zfec",
    seal: str = "client",
) -> dict[str, Any]:  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-gateway-{k}-{m}-") as tmp,
        local_subnet(Path(tmp), k, m, miners) as net,
    ):
        files = [p for p in sorted(dataset.rglob("*")) if p.is_file()]
        figures = asyncio.run(
            transfer(
                net.url,
                net.root,
                dataset,
                big,
                files,
                big.stat().st_size,
                net.validator.pid,
                tuple(p.pid for p in net.miners),
                codec,
                seal,
            )
        )
        raw = raw_zfec_mb_s(big, k, m)
        return {
            "k": k,
            "m": m,
            "codec": codec,
            "seal": seal,
            "miners": miners,
            **figures,
            "raw_zfec_encode_mb_s": round(raw, 1),
            "object_upload_vs_raw_zfec": round(figures["object_upload_mb_s"] / raw, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--object-mib", type=int, default=4096)
    parser.add_argument("--configs", default="4/8/8,10/16/16", help="k/m/miners,...")
    parser.add_argument("--codecs", default="zfec", help="erasure codecs, e.g. zfec,isal")
    parser.add_argument("--seals", default="client", help="who seals: client,validator")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gateway.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one 2-of-4 config")
    args = parser.parse_args()
    if args.smoke:
        args.dataset_mib, args.files, args.object_mib, args.configs = 8, 4, 8, "2/4/4"
    configs = [tuple(int(x) for x in config.split("/")) for config in args.configs.split(",")]
    if any(len(c) != 3 for c in configs):
        parser.error("--configs takes k/m/miners triples, comma-separated")
    with tempfile.TemporaryDirectory(prefix="bench-gateway-data-") as tmp:
        dataset = Path(tmp) / "dataset"
        generate(dataset, args.dataset_mib * 2**20, args.files, seed=1)
        big = random_file(Path(tmp) / "big.bin", args.object_mib * 2**20)
        results = [
            run_config(k, m, miners, dataset, big, codec, seal)
            for k, m, miners in configs
            for codec in args.codecs.split(",")
            for seal in args.seals.split(",")
        ]
    emit(
        {
            "bench": "gateway",
            "command": command("bench.gateway"),
            "dataset_mib": args.dataset_mib,
            "dataset_files": args.files,
            "object_mib": args.object_mib,
            "results": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
