"""Gateway throughput: a dataset and one large object through a validator to real miners.

Every service is its own process on loopback (each miner on its own 127.0.0.x address); the
load is the user's client (`subnet.gateway_client`, the same code `subnet upload` runs),
sha256 pass included. Reported: upload and download MB/s, the validator's peak RSS, and raw
single-threaded zfec encode MB/s on the same bytes (one call per segment) for the ratio.
4-of-8 runs on 8 miners; 10-of-16 needs 16 miners to keep one shard per host.

    python -m bench.gateway [--dataset-mib 1024] [--object-mib 4096] [--out ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import zfec

from bench.report import emit
from protocol.wallet import create_wallet, load_hotkey
from subnet.dataset import generate
from subnet.gateway_client import GatewayClient
from subnet.processes import free_port, running, start_subnet_command, wait_healthy

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


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs), to measure one phase's peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def transfer(
    url: str,
    root: Path,
    dataset: Path,
    big: Path,
    files: list[Path],
    big_size: int,
    validator_pid: int,
) -> dict[str, float]:
    keypair = load_hotkey("user", "default", root / "wallets")
    size = sum(p.stat().st_size for p in files)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        client = GatewayClient(session, keypair, url, caps=root / "caps")
        await client.connect()
        limit = asyncio.Semaphore(4)

        async def put(path: Path) -> None:
            async with limit:
                await client.upload(path, path.relative_to(dataset).as_posix())

        start = time.perf_counter()
        await asyncio.gather(*(put(p) for p in files))
        up_dataset = size / (time.perf_counter() - start) / 1e6
        start = time.perf_counter()
        for p in files:
            await client.download(p.relative_to(dataset).as_posix(), root / "out" / p.name)
        down_dataset = size / (time.perf_counter() - start) / 1e6

        dataset_rss = peak_rss_mib(validator_pid)
        await asyncio.to_thread(reset_peak_rss, validator_pid)
        start = time.perf_counter()
        await client.upload(big, "big.bin")
        up_big = big_size / (time.perf_counter() - start) / 1e6
        start = time.perf_counter()
        await client.download("big.bin", root / "big.out")
        down_big = big_size / (time.perf_counter() - start) / 1e6
    return {
        "validator_peak_rss_mib_dataset": round(dataset_rss, 1),
        "validator_peak_rss_mib_object": round(peak_rss_mib(validator_pid), 1),
        "dataset_upload_mb_s": round(up_dataset, 1),
        "dataset_download_mb_s": round(down_dataset, 1),
        "object_upload_mb_s": round(up_big, 1),
        "object_download_mb_s": round(down_big, 1),
    }


def run_config(k: int, m: int, miners: int, dataset: Path, big: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-gateway-{k}-{m}-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        wallets = root / "wallets"
        validator = create_wallet("validator", "default", wallets).ss58_address
        user = create_wallet("user", "default", wallets).ss58_address
        entries = []
        for i in range(miners):
            hotkey = create_wallet(f"m{i}", "default", wallets).ss58_address
            host, port, log = f"127.0.0.{i + 2}", free_port(), root / f"m{i}.log"
            proc = stack.enter_context(running(start_subnet_command(
                ["miner", "run", "--wallet-name", f"m{i}", "--wallet-path", str(wallets),
                 "--host", host, "--port", str(port), "--data-dir", str(root / f"m{i}"),
                 "--validators", validator, "--capacity", "1TiB", "--scrub-rate", "0",
                 "--log-level", "warning"], log,
            )))  # fmt: skip
            wait_healthy(f"http://{host}:{port}", proc, log)
            entries.append(f"{hotkey}@{host}:{port}")
        vport, vlog = free_port(), root / "validator.log"
        vproc = stack.enter_context(running(start_subnet_command(
            ["validator", "run", "--wallet-name", "validator", "--wallet-path", str(wallets),
             "--port", str(vport), "--data-dir", str(root / "v"), "--users", f"user={user}",
             "--miners", ",".join(entries), "--k", str(k), "--m", str(m),
             "--log-level", "warning"], vlog,
        )))  # fmt: skip
        url = f"http://127.0.0.1:{vport}"
        wait_healthy(url, vproc, vlog)
        files = [p for p in sorted(dataset.rglob("*")) if p.is_file()]
        figures = asyncio.run(
            transfer(url, root, dataset, big, files, big.stat().st_size, vproc.pid)
        )
        raw = raw_zfec_mb_s(big, k, m)
        return {
            "k": k,
            "m": m,
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
    parser.add_argument("--out", type=Path, default=Path("bench/results/gateway.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-data-") as tmp:
        dataset = Path(tmp) / "dataset"
        generate(dataset, args.dataset_mib * 2**20, args.files, seed=1)
        big = Path(tmp) / "big.bin"
        with big.open("wb") as out:
            for _ in range(args.object_mib):
                out.write(os.urandom(2**20))
        results = [
            run_config(*(int(x) for x in config.split("/")), dataset, big)  # type: ignore[misc]
            for config in args.configs.split(",")
        ]
    emit(
        {
            "bench": "gateway",
            "command": " ".join(["python -m bench.gateway", *sys.argv[1:]]),
            "dataset_mib": args.dataset_mib,
            "dataset_files": args.files,
            "object_mib": args.object_mib,
            "results": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
