"""Our S3 API against our native CLI and SeaweedFS's S3, side by side in one run.

- **Ours, S3**: ``--m`` miners (each on its own 127.0.4.x) and one k-of-m validator serving
  its S3 API (``--s3-port``, plain HTTP on loopback); timed are boto3's managed transfers
  (``upload_file`` / ``download_file``: 8 MiB multipart parts, 10 threads), in process.
- **Ours, native CLI** (the baseline): the same validator, ``subnet upload PATH --json`` and
  ``subnet download ID -o OUT --json`` as subprocesses, process start included.
- **SeaweedFS S3** (the reference S3 server): a master, ``--m`` volume servers and a filer
  with its S3 gateway, replication 001 (two copies: the same 2x as 4-of-8); the same boto3
  transfers as ours.

Each run writes a fresh random file, sends it through all three in an order rotated from run
to run, and checks each download's sha256. Page cache and writeback are flushed (``sync``)
before each timed step. Figures are size / median wall time, MB/s; the validator's peak RSS
is taken per step. Then small objects: ``--small-puts`` PUTs of 16 KiB from ``--threads``
threads (one boto3 client, a connection per thread) against ours and SeaweedFS, PUTs per
second, a sample of them read back and checked.

    python -m bench.s3 [--size-mib 256] [--runs 3] [--small-puts 1000] [--threads 16]
    python -m bench.s3 --smoke --out /tmp/s3.json   # 2 MiB, one run, 2-of-4, 32 small PUTs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import boto3
from botocore.config import Config

from bench.cluster import local_subnet, peak_rss_mib, random_file, reset_peak_rss
from bench.peers import Ours, Samples, check_same, log, sha256_file, subnet_cli, timed
from bench.report import command, emit
from bench.seaweedfs_s3 import BUCKET, S3Endpoint, seaweedfs_s3, weed_version
from subnet.processes import free_port

MiB = 2**20
SMALL = 16 * 2**10
AIM_VS_CLI = 0.8  # the S3 API's large transfers, against the native CLI's
SYSTEMS = ("cli", "s3", "seaweedfs")
NET = "127.0.4"  # apart from peers' 127.0.3.x and SeaweedFS's 127.0.2.x
T = TypeVar("T")


def _terminated(_signum: int, _frame: object) -> NoReturn:
    raise SystemExit(143)  # unwinds the ExitStack: every server is stopped


def s3_client(endpoint: str, access: str, secret: str, threads: int) -> Any:
    """boto3 as a program would set it up for a non-AWS endpoint; the same for both servers."""
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3},
        max_pool_connections=threads,
    )
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name="us-east-1", config=config,
    )  # fmt: skip


def s3_keys(validator_dir: Path) -> tuple[str, str]:
    """An access key made as an operator makes one (``subnet s3 keys create``)."""
    done = subprocess.run(
        [*subnet_cli(), "s3", "keys", "create", "--user", "bench", "--json",
         "--data-dir", str(validator_dir)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    made = json.loads(done.stdout)
    return made["access_key"], made["secret_key"]


def large_run(
    ours: Ours, s3: S3Endpoint, seaweed: S3Endpoint, order: list[str], file: Path, tag: str,
    samples: Samples, rss: dict[str, list[float]],
) -> None:  # fmt: skip
    """``file`` through each system in ``order``: stored, read back, timed, checked."""
    digest = sha256_file(file)
    out = file.with_suffix(".out")
    validator = ours.net.validator.pid

    def step(figure: str, fn: Callable[[], T], pids: tuple[int, ...]) -> T:
        reset_peak_rss(validator)
        took, result = timed(fn, pids)
        samples.add(figure, took)
        rss.setdefault(figure, []).append(peak_rss_mib(validator))
        return result

    for system in order:
        if system == "cli":
            ref = step("cli_upload", partial(ours.cli_upload, file), ours.pids)
            step("cli_download", partial(ours.cli_download, ref, out), ours.pids)
            check_same(digest, out, "subnet download")
        else:
            target = s3 if system == "s3" else seaweed
            step(f"{system}_upload", partial(target.put, file, tag), target.pids)
            step(f"{system}_download", partial(target.get, tag, out), target.pids)
            check_same(digest, out, f"{target.name} GET")


def small_puts(target: S3Endpoint, count: int, threads: int) -> float:
    """PUTs per second of ``count`` 16 KiB objects from ``threads`` threads; then a sample
    is read back and compared."""
    bodies = [os.urandom(SMALL) for _ in range(threads)]

    def put(i: int) -> None:
        target.client.put_object(Bucket=BUCKET, Key=f"small/{i}", Body=bodies[i % threads])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(-threads, 0)))  # warm: a connection per thread
        os.sync()
        start = time.perf_counter()
        list(pool.map(put, range(count)))
        took = time.perf_counter() - start
    for i in range(0, count, max(1, count // 8)):
        got = target.client.get_object(Bucket=BUCKET, Key=f"small/{i}")["Body"].read()
        if hashlib.sha256(got).digest() != hashlib.sha256(bodies[i % threads]).digest():
            raise RuntimeError(f"{target.name} returned different bytes for small/{i}")
    return count / took


def large_figures(size: int, samples: Samples, rss: dict[str, list[float]]) -> dict[str, Any]:
    result: dict[str, Any] = {"size_mib": size // MiB}
    for figure, times in samples.seconds.items():
        result[f"{figure}_mb_s"] = round(size / statistics.median(times) / 1e6, 1)
        result[f"{figure}_cpu_s"] = round(statistics.median(samples.cpu[figure]), 2)
    for step in ("upload", "download"):
        s3, cli, weed = (result[f"{s}_{step}_mb_s"] for s in ("s3", "cli", "seaweedfs"))
        result[f"s3_{step}_vs_cli"] = round(s3 / cli, 2)
        result[f"s3_{step}_aim_met"] = s3 / cli >= AIM_VS_CLI
        result[f"s3_{step}_vs_seaweedfs"] = round(s3 / weed, 2)
    for figure in ("cli_upload", "cli_download", "s3_upload", "s3_download"):
        result[f"validator_peak_rss_mib_{figure}"] = round(max(rss[figure]))
    result["seconds"] = {f: [round(t, 3) for t in ts] for f, ts in samples.seconds.items()}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="the large object's size")
    parser.add_argument("--runs", type=int, default=3, help="large-object runs; medians reported")
    parser.add_argument("--small-puts", type=int, default=1000, help="16 KiB PUTs per server")
    parser.add_argument("--threads", type=int, default=16, help="threads for the small PUTs")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--m", type=int, default=8, help="also miners and volume servers")
    parser.add_argument("--out", type=Path, default=Path("bench/results/s3.json"))
    parser.add_argument(
        "--smoke", action="store_true", help="2 MiB, one run, 2-of-4, 32 small PUTs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.size_mib, args.runs, args.k, args.m, args.small_puts = 2, 1, 2, 4, 32
    signal.signal(signal.SIGTERM, _terminated)
    size = args.size_mib * MiB
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        log(f"starting ours: {args.m} miners, a {args.k}-of-{args.m} validator with S3")
        s3_port = free_port(f"{NET}.1")
        net = stack.enter_context(local_subnet(
            work / "ours", args.k, args.m, args.m, net=NET,
            validator_args=["--s3-port", str(s3_port)],
        ))  # fmt: skip
        ours = Ours(net)
        access, secret = s3_keys(work / "ours" / "v")
        url = f"http://{NET}.1:{s3_port}"
        s3 = S3Endpoint("our S3 API", url, s3_client(url, access, secret, args.threads), ours.pids)
        s3.client.create_bucket(Bucket=BUCKET)
        log(f"starting SeaweedFS: a master, {args.m} volume servers, a filer with S3")
        weed = stack.enter_context(seaweedfs_s3(work / "seaweedfs", volumes=args.m))
        # The same boto3 settings as ours (threads, checksums), not the warm-up client's.
        seaweed = replace(weed, client=s3_client(weed.endpoint, "bench", "bench", args.threads))

        samples, rss = Samples(), dict[str, list[float]]()
        for run in range(args.runs):
            tag = f"r{run}-{args.size_mib}mib"
            file = random_file(work / f"{tag}.bin", size)  # `subnet upload` names it by file
            order = list(SYSTEMS[run % 3 :] + SYSTEMS[: run % 3])
            large_run(ours, s3, seaweed, order, file, tag, samples, rss)
            file.unlink()
            log(f"run {run + 1}/{args.runs}, {args.size_mib} MiB: done ({', '.join(order)})")
        log(f"small objects: {args.small_puts} PUTs of 16 KiB, {args.threads} threads, each")
        ours_puts = small_puts(s3, args.small_puts, args.threads)
        weed_puts = small_puts(seaweed, args.small_puts, args.threads)
        log("stopping every system")
    emit(
        {
            "bench": "s3",
            "command": command("bench.s3"),
            "runs_per_figure": args.runs,
            # The machine is shared: a high load average says the figures are noisier.
            "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
            "setup": {
                "ours": {"k": args.k, "m": args.m, "miners": args.m, "s3": "plain HTTP"},
                "seaweedfs": {
                    "version": weed_version(),
                    "volume_servers": args.m,
                    "replication": "001",
                },
                "client": "boto3 upload_file/download_file (8 MiB parts, 10 threads)",
            },
            "aims": {"s3_vs_cli": AIM_VS_CLI},
            "large": large_figures(size, samples, rss),
            "small_puts": {
                "objects": args.small_puts,
                "object_kib": SMALL // 1024,
                "threads": args.threads,
                "ours_puts_per_s": round(ours_puts, 1),
                "seaweedfs_puts_per_s": round(weed_puts, 1),
                "ours_vs_seaweedfs": round(ours_puts / weed_puts, 2),
            },
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
