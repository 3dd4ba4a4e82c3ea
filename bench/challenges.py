"""Challenge throughput: one validator process proving what 32 real miner processes hold.

Each miner is ``subnet miner run`` (fs backend, scrubber off) on its own loopback address.
Objects are uploaded through the production ``Uploader`` (k=4, m=8, segments of k MiB,
unsealed so shards are exactly 1 MiB, with 16 KiB leaves) into a validator database (SQLite, WAL,
``synchronous=FULL``, as ``subnet validator run`` makes it), so the placements are the
production rows. Then this process plays the validator: the production ``Challenger``
(with its metrics, the production HTTP client and the log store) runs rounds back to back.

Reported per run (the median over runs, and every run):

- leaves verified per second (``RoundReport.leaves_verified`` over the rounds' wall time)
  and per CPU second of this process (``os.times()``: all its threads, user and kernel), with the
  CPU the miners and everything else on the machine used meanwhile (``/proc``);
- p50/p99 of the per-batch challenge round trip, from the challenge log's ``latency_ms``
  (one value per batch: issuing it, signing, sending, the miner's answer, reading it);
- baselines in the same run, against a bare aiohttp server in its own process, from this
  process: tiny requests (rate, and latency alone), and replies as large as a challenge
  batch's (rate, latency, and this process's CPU per reply);
- in-process costs: the miner's prover (leaf reads and multiproofs from saved trees) and
  the validator's per-leaf and per-entry steps, each on one thread.

    python -m bench.challenges [--miners 32] [--seconds 20] [--shards-per-miner 256]
                               [--runs 3] [--batch 64] [--smoke] [--out ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from bittensor_wallet import Keypair
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.report import emit
from erasure import ErasureParams, MerkleTree, hash_leaf
from protocol.db import make_engine, upgrade
from protocol.memory import return_large_buffers_to_the_os
from protocol.signing import SigningClient
from protocol.wallet import create_wallet
from protocol.wire import decode_frame, encode_frame
from storage_miner.fs_store import FsShardStore
from storage_miner.prover import TreeCache, answer
from storage_miner.store import ShardKey
from subnet.processes import free_port, running, start_subnet_command, wait_healthy
from validator.audit_log import LogEntry, chain_after, proof_digest
from validator.challenger import ChallengePolicy, Challenger, ChallengerMetrics
from validator.challenges import derive_indices, judge_hashes, new_nonce
from validator.gateway import Gateway
from validator.log_store import ChallengeLogStore
from validator.miner_client import MinerClient
from validator.models import ChallengeRecord, Miner, Placement, Shard
from validator.uploads import UploadOptions

SHARD = 2**20  # bytes per shard: segments are k MiB
LEAF = 16 * 2**10
LEAVES = 8  # leaves per challenged shard (the production default)
SEGMENTS_PER_OBJECT = 16
UPLOADS_AT_ONCE = 4
BASELINE_CLIENTS = 32  # requests in flight, as the challenger has one per miner
VALIDATOR_URI = "//BenchChallenger"


# --- the baseline server: plain aiohttp, no checks ------------------------------------


def baseline_app(reply_size: int) -> web.Application:
    reply = os.urandom(reply_size)

    async def tiny(_request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    async def sized(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=reply)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/tiny", tiny)
    app.router.add_post("/reply", sized)
    app.router.add_get("/healthz", healthz)
    return app


# --- CPU accounting -------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; not idle or iowait)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK


@dataclass
class CpuMeter:
    miner_pids: list[int]
    miner_urls: list[str]

    def read(self) -> tuple[float, float, float, float, float]:
        own = os.times()
        return (
            time.perf_counter(),
            own.user + own.system,
            own.system,
            sum(process_cpu(p) for p in self.miner_pids),
            machine_busy(),
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- setup: miners, the validator's database, uploads -----------------------------------


def start_miners(
    stack: ExitStack, root: Path, count: int, validator: str
) -> tuple[list[str], list[subprocess.Popen[bytes]]]:
    wallets = root / "wallets"
    procs = []
    pending = []
    for i in range(count):
        hotkey = create_wallet(f"m{i}", "default", wallets).ss58_address
        host = f"127.0.0.{i + 2}"
        port, log = free_port(host), root / f"m{i}.log"
        proc = stack.enter_context(running(start_subnet_command(
            ["miner", "run", "--wallet-name", f"m{i}", "--wallet-path", str(wallets),
             "--host", host, "--port", str(port), "--data-dir", str(root / f"m{i}"),
             "--validators", validator, "--capacity", "100GiB", "--scrub-rate", "0",
             "--log-level", "warning"], log,
        )))  # fmt: skip
        procs.append(proc)
        pending.append((f"http://{host}:{port}", proc, log, f"{hotkey}@{host}:{port}"))
    for url, proc, log, _ in pending:
        wait_healthy(url, proc, log, timeout=300)  # 32 interpreters starting at once
    return [entry for *_, entry in pending], procs


async def object_body(size: int, tag: int, base: bytes) -> AsyncIterator[bytes]:
    """``size`` bytes of ``base`` with every 1 MiB block stamped uniquely, so no two shards
    anywhere are equal (identical blocks would code to identical shards)."""
    for offset in range(0, size, SHARD):
        block = bytearray(base[offset % len(base) : offset % len(base) + SHARD])
        block[:16] = tag.to_bytes(8, "big") + offset.to_bytes(8, "big")
        yield bytes(block)


async def upload_all(gateway: Gateway, owner: int, params: ErasureParams, shards: int) -> float:
    segments = -(-shards // params.m)
    objects = -(-segments // SEGMENTS_PER_OBJECT)
    base = os.urandom(params.segment_size)
    limit = asyncio.Semaphore(UPLOADS_AT_ONCE)
    options = UploadOptions(params, encrypt=False)
    left = segments

    async def one(i: int, count: int) -> None:
        async with limit:
            size = count * params.segment_size
            await gateway.uploader.upload(owner, f"o{i}", object_body(size, i, base), options)

    jobs = []
    for i in range(objects):
        count = min(SEGMENTS_PER_OBJECT, left)
        left -= count
        jobs.append(one(i, count))
    start = time.perf_counter()
    await asyncio.gather(*jobs)
    return segments * params.segment_size / (time.perf_counter() - start) / 1e6


def shards_per_miner(sessions: sessionmaker[Session]) -> dict[str, list[str]]:
    held: dict[str, list[str]] = {}
    with sessions() as session:
        rows = session.execute(
            select(Miner.hotkey, Shard.shard_id)
            .join(Placement, Placement.miner_id == Miner.id)
            .join(Shard, Shard.id == Placement.shard_id)
            .where(Placement.state == "stored")
        )
        for hotkey, shard_id in rows:
            held.setdefault(hotkey, []).append(shard_id)
    return held


# --- the measurements -------------------------------------------------------------------


async def miner_answer_time(urls: list[str]) -> tuple[float, float]:
    """Seconds the miners spent in ``answer_challenges`` and batches answered, so far (the
    ``miner_challenge_batch_seconds`` histogram on each miner's /metrics)."""
    total = count = 0.0
    async with aiohttp.ClientSession() as session:
        for url in urls:
            async with session.get(f"{url}/metrics") as response:
                text = await response.text()
            for line in text.splitlines():
                if line.startswith("miner_challenge_batch_seconds_sum "):
                    total += float(line.split()[1])
                elif line.startswith("miner_challenge_batch_seconds_count "):
                    count += float(line.split()[1])
    return total, count


async def challenge_run(
    challenger: Challenger, sessions: sessionmaker[Session], meter: CpuMeter, seconds: float
) -> dict[str, Any]:
    head = challenger.log_store.head()
    after = -1 if head is None else head[0]
    verdicts: Counter[str] = Counter()
    leaves = rounds = 0
    answer0, answered0 = await miner_answer_time(meter.miner_urls)
    t0, cpu0, sys0, miners0, busy0 = meter.read()
    while time.perf_counter() - t0 < seconds:
        report = await challenger.run_round()
        leaves += report.leaves_verified
        verdicts.update(report.verdicts)
        rounds += 1
    t1, cpu1, sys1, miners1, busy1 = meter.read()
    wall, cpu = t1 - t0, cpu1 - cpu0
    answer1, answered1 = await miner_answer_time(meter.miner_urls)
    with sessions() as session:
        rows = session.execute(
            select(
                ChallengeRecord.miner, ChallengeRecord.issued_at, ChallengeRecord.latency_ms
            ).where(ChallengeRecord.seq > after, ChallengeRecord.kind == "merkle")
        ).all()
    # Every entry of a batch holds the batch's latency: one value per (miner, issued_at).
    batches = {(miner, issued): ms for miner, issued, ms in rows if ms is not None}
    latencies = list(batches.values())
    return {
        "seconds": round(wall, 2),
        "rounds": rounds,
        "verdicts": dict(verdicts),
        "leaves_verified": leaves,
        "leaves_per_s": round(leaves / wall),
        "validator_cpu_s": round(cpu, 2),
        "validator_kernel_cpu_s": round(sys1 - sys0, 2),
        "leaves_per_validator_cpu_s": round(leaves / cpu) if cpu > 0 else None,
        "miners_cpu_s": round(miners1 - miners0, 2),
        "leaves_per_miner_cpu_s": round(leaves / (miners1 - miners0))
        if miners1 > miners0
        else None,
        "other_cpu_s": round(max(0.0, (busy1 - busy0) - cpu - (miners1 - miners0)), 2),
        "machine_cpu_s_available": round(wall * (os.cpu_count() or 1), 2),
        "batches": len(latencies),
        "batch_latency_p50_ms": round(percentile(latencies, 50), 1),
        "batch_latency_p99_ms": round(percentile(latencies, 99), 1),
        "batch_latency_mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "miner_answer_mean_ms": round((answer1 - answer0) / (answered1 - answered0) * 1000, 1)
        if answered1 > answered0
        else None,
    }


async def load(
    session: aiohttp.ClientSession,
    clients: int,
    seconds: float,
    request: Callable[[], Any],
) -> dict[str, Any]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with request() as response:
                await response.read()
            latencies.append(time.perf_counter() - started)

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ms = [s * 1000 for s in latencies]
    return {
        "requests_per_s": round(len(ms) / wall),
        "requests_per_client_cpu_s": round(len(ms) / cpu) if cpu > 0 else None,
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
    }


async def baseline_run(
    url: str, seconds: float, request_body: bytes, leaves_per_batch: int
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=256)  # as the validator's client
    async with aiohttp.ClientSession(connector=connector) as session:
        tiny = await load(
            session, BASELINE_CLIENTS, seconds / 2, lambda: session.get(f"{url}/tiny")
        )
        alone = await load(session, 1, seconds / 4, lambda: session.get(f"{url}/tiny"))
        sized = await load(
            session,
            BASELINE_CLIENTS,
            seconds,
            lambda: session.post(f"{url}/reply", data=request_body),
        )
    sized["leaf_equivalents_per_s"] = sized["requests_per_s"] * leaves_per_batch
    per_cpu = sized["requests_per_client_cpu_s"]
    sized["leaf_equivalents_per_client_cpu_s"] = per_cpu and per_cpu * leaves_per_batch
    return {
        f"tiny_{BASELINE_CLIENTS}_in_flight": tiny,
        "tiny_1_in_flight": {k: alone[k] for k in ("requests_per_s", "p50_ms", "p99_ms")},
        f"batch_sized_reply_{BASELINE_CLIENTS}_in_flight": sized,
    }


def start_profiler(out: Path | None, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy sampling this process for ``seconds`` into ``out`` (collapsed stacks), only
    the thread holding the GIL: what serialises one validator process. None without ``out``."""
    if out is None:
        return None
    beside = Path(sys.executable).parent / "py-spy"
    binary = str(beside) if beside.exists() else shutil.which("py-spy")
    if binary is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return subprocess.Popen(
        [binary, "record", "--pid", str(os.getpid()), "--duration", str(int(seconds)),
         "--rate", "200", "--nonblocking", "--threads", "--gil", "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def timed(work: Callable[[], object], min_seconds: float = 0.5) -> float:
    """CPU seconds per call of ``work`` on this thread (best of three stretches), so other
    processes on the machine do not inflate it."""
    best = float("inf")
    for _ in range(3):
        calls, start = 0, time.thread_time()
        while (spent := time.thread_time() - start) < min_seconds / 3 or calls < 3:
            work()
            calls += 1
        best = min(best, spent / calls)
    return best


def prover_rate(
    folder: Path, validator: str, shard_ids: list[str], batch: int, seconds: float
) -> float:
    """Leaves per CPU second of the miner's prover on one thread: trees cached and leaves in
    the page cache, as in a miner that has been answering for a while."""
    store = FsShardStore(folder)
    trees = TreeCache(64 * 2**20)
    rng = random.Random(3)
    keys = [ShardKey(validator, shard_id) for shard_id in shard_ids]
    for key in keys:
        answer(store, trees, key, range(SHARD // LEAF))  # every tree and leaf read once

    def one_batch() -> None:
        for key in rng.sample(keys, min(batch, len(keys))):
            answer(store, trees, key, rng.sample(range(SHARD // LEAF), LEAVES))

    return min(batch, len(keys)) * LEAVES / timed(one_batch, seconds)


def sample_reply(batch: int) -> tuple[bytes, bytes, dict[str, Any]]:
    """A batch request and reply of production shape, and what one challenge of it holds."""
    rng = random.Random(5)
    data = rng.randbytes(SHARD)
    tree = MerkleTree.build(data, LEAF)
    shard_id = tree.root.hex()
    nonce = rng.randbytes(16)
    indices = derive_indices(nonce, shard_id, tree.leaf_count, LEAVES)
    leaves = [data[i * LEAF : (i + 1) * LEAF] for i in indices]
    proof = tree.prove(indices).to_bytes()
    one = {"shard_id": shard_id, "nonce": nonce.hex(), "indices": list(indices)}
    request = json.dumps({"challenges": [one] * batch}, separators=(",", ":")).encode()
    answers = [{"shard_id": shard_id, "nonce": nonce.hex(), "status": 200, "leaves": LEAVES}]
    reply = encode_frame({"answers": answers * batch}, [*leaves, proof] * batch)
    return request, reply, {"tree": tree, "leaves": leaves, "proof": proof, **one}


def log_store_cost(folder: Path, keypair: Keypair, entry: LogEntry, count: int) -> float:
    """CPU seconds per entry of ``ChallengeLogStore.record`` appending ``count`` entries in
    one transaction (chain, sign, hash, rows, commit) to a fresh database like the bench's."""
    url = f"sqlite:///{folder / 'log-cost.sqlite'}"
    upgrade(url, "validator")
    engine = make_engine(url)
    try:
        store = ChallengeLogStore(sessionmaker(engine, expire_on_commit=False), keypair)
        best = float("inf")
        for _ in range(3):
            start = time.thread_time()
            store.record(lambda _session: [entry] * count)
            best = min(best, (time.thread_time() - start) / count)
        return best
    finally:
        engine.dispose()


def unit_costs(batch: int, keypair: Keypair, folder: Path, seconds: float) -> dict[str, float]:
    """CPU microseconds per step of judging and logging, each alone on one thread."""
    _, reply, one = sample_reply(batch)
    tree: MerkleTree = one["tree"]
    hashes = [hash_leaf(leaf) for leaf in one["leaves"]]
    indices = tuple(one["indices"])

    def judge() -> None:
        judge_hashes(
            root_hex=one["shard_id"], leaf_count=tree.leaf_count, indices=indices,
            leaf_hashes=hashes, proof=one["proof"], latency=0.01, allowed=2.0,
        )  # fmt: skip

    entry = LogEntry(
        seq=0, validator=keypair.ss58_address, miner=keypair.ss58_address,
        shard_id=one["shard_id"], kind="merkle", nonce=one["nonce"], indices=indices,
        root=one["shard_id"], issued_at=time.time(), answered_at=time.time(), latency_ms=5.0,
        verdict="pass", reason="proof verified against the upload-time root",
        proof_digest=proof_digest(hashes, one["proof"]), leaf_count=tree.leaf_count,
        leaf_hashes=tuple(h.hex() for h in hashes), proof=one["proof"].hex(), size=SHARD,
    )  # fmt: skip
    head = (41, "ab" * 32)

    def us(work: Callable[[], object]) -> float:
        return round(timed(work, seconds) * 1e6, 1)

    return {
        "hash_one_16k_leaf_us": us(lambda: hash_leaf(one["leaves"][0])),
        "derive_indices_per_challenge_us": us(
            lambda: derive_indices(new_nonce(), one["shard_id"], tree.leaf_count, LEAVES)
        ),
        "verify_multiproof_per_challenge_us": us(judge),
        "sign_and_chain_log_entry_us": us(lambda: chain_after(head, entry, keypair)),
        "entry_hash_us": us(lambda: entry.entry_hash),
        "decode_batch_reply_frame_us": us(lambda: decode_frame(reply)),
        "log_store_record_per_entry_us": round(
            log_store_cost(folder, keypair, entry, 32 * batch) * 1e6, 1
        ),
    }


# --- the whole benchmark ----------------------------------------------------------------


async def measure(
    args: argparse.Namespace, root: Path, entries: list[str], meter: CpuMeter, baseline_url: str
) -> dict[str, Any]:
    return_large_buffers_to_the_os()  # as `subnet validator run` does at start
    keypair = Keypair.create_from_uri(VALIDATOR_URI)
    url = f"sqlite:///{root / 'validator' / 'validator.sqlite'}"
    (root / "validator").mkdir()
    upgrade(url, "validator")
    engine = make_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    params = ErasureParams(args.k, args.m, args.k * SHARD, LEAF)
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=None)
    )  # as validator/runner.py builds it
    try:
        miners = MinerClient(SigningClient(http, keypair))
        gateway = Gateway(sessions, miners)
        gateway.sync_users([f"bench={keypair.ss58_address}"])
        gateway.sync_miners(entries)
        await gateway.refresh_miners()
        owner = gateway.user_id(keypair.ss58_address)
        upload_mb_s = await upload_all(gateway, owner, params, args.miners * args.shards_per_miner)
        held = shards_per_miner(sessions)
        counts = sorted(len(v) for v in held.values())
        print(f"uploaded at {upload_mb_s:.0f} MB/s; shards per miner {counts}", file=sys.stderr)

        policy = ChallengePolicy(batch=args.batch, leaves=LEAVES)
        challenger = Challenger(
            sessions,
            miners,
            ChallengeLogStore(sessions, keypair),
            policy,
            ChallengerMetrics(CollectorRegistry()),
        )
        await challenger.run_round()  # warm: connections open, trees cached, head read
        request_body, reply, _ = sample_reply(args.batch)
        runs = []
        for r in range(args.runs):
            profiler = start_profiler(args.profile, args.seconds) if r == 0 else None
            challenges = await challenge_run(challenger, sessions, meter, args.seconds)
            if profiler is not None:
                await asyncio.to_thread(profiler.wait)
            print(f"run {r}: {challenges}", file=sys.stderr)
            baseline = await baseline_run(
                baseline_url, args.seconds, request_body, args.batch * LEAVES
            )
            runs.append({"challenges": challenges, "baseline": baseline})
    finally:
        await http.close()
        engine.dispose()
    first = entries[0].split("@")[0]
    timing = 0.05 if args.smoke else 0.5  # CPU seconds per in-process figure
    mine = held.get(first, [])
    miner_rate = 0.0
    if mine:
        miner_rate = await asyncio.to_thread(
            prover_rate, root / "m0", keypair.ss58_address, mine, args.batch, 2 * timing
        )
    return {
        "upload_mb_s": round(upload_mb_s, 1),
        "shards_per_miner": {
            "min": counts[0],
            "median": counts[len(counts) // 2],
            "max": counts[-1],
        },
        "batch_reply_bytes": len(reply),
        "runs": runs,
        "miner_prover_leaves_per_cpu_s": round(miner_rate),
        "validator_unit_costs": unit_costs(args.batch, keypair, root, timing),
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(path: tuple[str, ...]) -> float:
        values: list[float] = []
        for run in runs:
            value: Any = run
            for key in path:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    sized = f"batch_sized_reply_{BASELINE_CLIENTS}_in_flight"
    tiny = f"tiny_{BASELINE_CLIENTS}_in_flight"
    return {
        "leaves_per_s": med(("challenges", "leaves_per_s")),
        "leaves_per_validator_cpu_s": med(("challenges", "leaves_per_validator_cpu_s")),
        "batch_latency_p50_ms": med(("challenges", "batch_latency_p50_ms")),
        "batch_latency_p99_ms": med(("challenges", "batch_latency_p99_ms")),
        "miner_answer_mean_ms": med(("challenges", "miner_answer_mean_ms")),
        "validator_cpu_share": med(("challenges", "validator_cpu_s"))
        / med(("challenges", "seconds")),
        "baseline_tiny_requests_per_s": med(("baseline", tiny, "requests_per_s")),
        "baseline_tiny_p50_ms_alone": med(("baseline", "tiny_1_in_flight", "p50_ms")),
        "baseline_tiny_p99_ms_alone": med(("baseline", "tiny_1_in_flight", "p99_ms")),
        "baseline_batch_sized_leaf_equivalents_per_s": med(
            ("baseline", sized, "leaf_equivalents_per_s")
        ),
        "baseline_batch_sized_leaf_equivalents_per_client_cpu_s": med(
            ("baseline", sized, "leaf_equivalents_per_client_cpu_s")
        ),
        "baseline_batch_sized_p50_ms": med(("baseline", sized, "p50_ms")),
        "baseline_batch_sized_p99_ms": med(("baseline", sized, "p99_ms")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--miners", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--shards-per-miner", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="shards challenged per miner")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--m", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="4 miners, 2 s, one run (CI)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/challenges.json"))
    parser.add_argument(
        "--profile", type=Path, help="py-spy (collapsed stacks) of this process in run 0"
    )
    parser.add_argument("--baseline-server", nargs=2, metavar=("PORT", "REPLY_BYTES"))
    args = parser.parse_args()
    if args.baseline_server:
        port, reply = args.baseline_server
        web.run_app(baseline_app(int(reply)), host="127.0.0.1", port=int(port), print=None)
        return
    if args.smoke:
        args.miners, args.seconds, args.shards_per_miner, args.runs = 4, 2.0, 16, 1
        args.k, args.m, args.batch = 2, 4, min(args.batch, 16)
    if args.miners > 250:
        raise SystemExit("at most 250 miners: one loopback address each, 127.0.0.2 and up")
    validator = Keypair.create_from_uri(VALIDATOR_URI).ss58_address
    with tempfile.TemporaryDirectory(prefix="bench-challenges-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        entries, procs = start_miners(stack, root, args.miners, validator)
        bport, blog = free_port(), root / "baseline.log"
        _, reply, _ = sample_reply(args.batch)
        with blog.open("ab") as out:
            base = stack.enter_context(running(subprocess.Popen(
                [sys.executable, "-m", "bench.challenges", "--baseline-server", str(bport),
                 str(len(reply))], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )))  # fmt: skip
        baseline_url = f"http://127.0.0.1:{bport}"
        wait_healthy(baseline_url, base, blog)
        urls = ["http://" + entry.split("@")[1] for entry in entries]
        meter = CpuMeter([p.pid for p in procs], urls)
        results = asyncio.run(measure(args, root, entries, meter, baseline_url))
    runs = results.pop("runs")
    emit(
        {
            "bench": "challenges",
            "command": " ".join(["python -m bench.challenges", *sys.argv[1:]]),
            "miners": args.miners,
            "k": args.k,
            "m": args.m,
            "shard_bytes": SHARD,
            "leaf_bytes": LEAF,
            "batch": args.batch,
            "leaves_per_challenge": LEAVES,
            "seconds_per_run": args.seconds,
            "latency_source": "challenge log latency_ms, one value per batch",
            "median": medians(runs),
            **results,
            "runs": runs,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
