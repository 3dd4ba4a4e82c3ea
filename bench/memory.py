"""The validator's memory under a mix of transfers: four uploads and two downloads at once.

Every service is its own process on loopback (4-of-8 on 8 miners, each on its own address).
One object is stored first; then, all at once, four uploads of a fresh object each and two
downloads of the stored one, each through the user's client (`subnet.gateway_client`, what
`subnet upload` and `subnet download` run). Reported: the validator's peak RSS during the
mix (Linux VmHWM, reset before it), its RSS at rest before the mix, the peak while one
upload runs alone (the same-run baseline), and the mix's aggregate MB/s. Issue 20's aim is a
peak under 300 MiB for 4 GiB objects; the peak does not grow with the object's size once it
is larger than the pipeline's depth (a few segments), which `--object-mib` lets you check.

    python -m bench.memory [--object-mib 1024] [--out bench/results/memory.json]
    python -m bench.memory --smoke --out /tmp/memory.json   # seconds: 8 MiB objects
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.cluster import local_subnet, peak_rss_mib, random_file, reset_peak_rss, rss_mib
from bench.report import command, emit
from protocol.wallet import load_hotkey
from subnet.gateway_client import GatewayClient

UPLOADS, DOWNLOADS = 4, 2
AIM_MIB = 300


async def mix(url: str, root: Path, sources: list[Path], pid: int) -> dict[str, float]:
    keypair = load_hotkey("user", "default", root / "wallets")
    size = sources[0].stat().st_size
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        client = GatewayClient(session, keypair, url, caps=root / "caps")
        await client.connect()
        await client.upload(sources[0], "stored.bin")
        await asyncio.sleep(1.0)  # let the first upload's buffers go back
        at_rest = rss_mib(pid)

        await asyncio.to_thread(reset_peak_rss, pid)
        start = time.perf_counter()
        await client.upload(sources[0], "alone.bin")
        alone_mb_s = size / (time.perf_counter() - start) / 1e6
        alone = peak_rss_mib(pid)

        await asyncio.to_thread(reset_peak_rss, pid)
        start = time.perf_counter()
        await asyncio.gather(
            *(client.upload(sources[i % len(sources)], f"up-{i}.bin") for i in range(UPLOADS)),
            *(client.download("stored.bin", root / f"down-{i}.bin") for i in range(DOWNLOADS)),
        )
        spent = time.perf_counter() - start
        peak = peak_rss_mib(pid)
    return {
        "validator_rss_mib_at_rest": round(at_rest, 1),
        "validator_peak_rss_mib_one_upload": round(alone, 1),
        "validator_peak_rss_mib_mix": round(peak, 1),
        "one_upload_mb_s": round(alone_mb_s, 1),
        "mix_mb_s": round((UPLOADS + DOWNLOADS) * size / spent / 1e6, 1),
        "mix_seconds": round(spent, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--object-mib", type=int, default=1024, help="each object's size")
    parser.add_argument("--validator-args", default="", help="more `validator run` flags")
    parser.add_argument("--out", type=Path, default=Path("bench/results/memory.json"))
    parser.add_argument("--smoke", action="store_true", help="8 MiB objects, 2-of-4")
    args = parser.parse_args()
    k, m, miners = (2, 4, 4) if args.smoke else (4, 8, 8)
    size = (8 if args.smoke else args.object_mib) * 2**20
    load = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp,
        local_subnet(Path(tmp), k, m, miners, validator_args=args.validator_args.split()) as net,
    ):
        # Two sources, so that the uploads are not all of the same bytes.
        sources = [random_file(Path(tmp) / f"src-{i}.bin", size) for i in range(2)]
        figures = asyncio.run(mix(net.url, net.root, sources, net.validator.pid))
    report: dict[str, Any] = {
        "bench": "memory",
        "command": command("bench.memory"),
        "k": k,
        "m": m,
        "miners": miners,
        "object_mib": size // 2**20,
        "uploads": UPLOADS,
        "downloads": DOWNLOADS,
        "aim_peak_rss_mib": AIM_MIB,
        **figures,
        "load_average_1min": {"start": round(load, 1), "end": round(os.getloadavg()[0], 1)},
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
