"""Scale: how the validator's per-operation costs grow with miners (8 → 64 → 256) and with
shard placements (10k → 100k → 1M), on SQLite and PostgreSQL, plus challenges verified per
second against real miners and the epoch close at 256 UIDs / 64 validators.

**The database figures.** For each database kind a scratch validator database is made by
the production migrations and grown with bulk inserts (objects of 16 segments, k=4 m=8,
4 MiB shards, each segment's 8 shards on 8 distinct miners; receipts and manifests of
production length; 0.1% of placements ``lost`` with their repair-queue rows, 0.05% in
containment, the rest ``stored`` and last passed within the hour): at the most miners
(256) through every ``--placements`` count, and at fewer miners to ``--miners-at`` (100k)
only (``--grid full``: every count at every miner count). At each point a fresh process
plays the validator on that database and times the production code:

- ``Challenger._plan``: the per-miner least-recently-challenged selection of a round (and
  its two per-miner queries alone, on 32 miners spread over the table), and
  ``Challenger._record`` of a round of passes for every miner's batch (and the per-round
  verified-bytes aggregate it runs, ``_verified_bytes``, alone);
- ``validator.placement.rank`` + ``pick`` over the miners, and ``Uploader._record_segment``
  (the database part of storing a segment: a segment, 8 shards, 8 placements);
- ``Repairer._choose`` (the segment selection of every repair run) and ``Repairer._holders``;
- the process's RSS (peak and current): the validator's, for that configuration.

Each figure is the median of ``--runs`` calls (fewer once they took 20 s), as wall time and
as CPU time: this process's, plus on PostgreSQL its server backends' (from ``/proc``). On a
shared machine the CPU figure is the steadier. PostgreSQL is ``ANALYZE``d after each growth
step (autovacuum would have); SQLite is left without statistics, as production leaves it.

**Challenges verified per second.** Real miners: ``--live-miners`` (up to 256)
``storage_miner.app.make_app(MinerService(...))`` apps, 64 per worker process, each on its
own loopback address (127.0.x.y) with its data under ``--miner-dir`` (tmpfs by default,
so that preloading thousands of shards does not wait on fsync). Each miner holds
``--shards-per-validator`` shards of 128 KiB (8 leaves of 16 KiB) for each of 2 validators,
stored through ``MinerService.store_shard``. Two validator processes, each with its own
SQLite database (holding exactly those shards' rows) and the production ``Challenger``
built as ``subnet validator run`` builds it (policy defaults but a deadline floor of
``--deadline-floor`` s: every miner shares the machine's two cores), run rounds back to
back for ``--seconds`` at the same time, against the first 8, 64 and 256 miners.

**Epoch close**: ``bench.epoch.measure`` (256 UIDs, 64 validators, dense weights).

    python -m bench.scale [--out bench/results/scale.json]   # the full run (~20 min idle)
    python -m bench.scale --smoke --out /tmp/scale.json       # seconds; SQLite only
    python -m bench.scale --miners 256 --placements 10000,100000 --databases postgresql \\
        --live-miners 0                                       # one slice
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import psycopg
from aiohttp import web
from bittensor_wallet import Keypair
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from bench.report import command, emit
from erasure import ErasureParams, MerkleTree, ObjectEncoder
from protocol.db import make_engine, upgrade
from protocol.memory import return_large_buffers_to_the_os
from protocol.signing import SigningClient
from protocol.wire import StorageReceipt
from storage_miner.app import make_app
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.service import MinerService
from storage_miner.settings import MinerSettings
from validator import verified
from validator.challenger import ChallengePolicy, Challenger, Outcome, Plan
from validator.challenges import derive_indices, new_nonce
from validator.log_store import ChallengeLogStore
from validator.miner_client import MinerClient
from validator.models import Miner
from validator.placement import Candidate, pick, rank
from validator.repair import Repairer, RepairReport
from validator.uploads import Uploader, UploadOptions

K, M = 4, 8
LEAF = 16 * 2**10
DB_SHARD = 4 * 2**20  # the production default: 16 MiB segments, k=4
LIVE_SHARD = 8 * LEAF  # 8 leaves: a challenge of 8 leaves reads all of them
SEGMENTS_PER_OBJECT = 16
LOST_FRACTION = 0.001
CONTAINED_FRACTION = 0.0005
BATCH_SEGMENTS = 4096  # segments per bulk-insert transaction
MINERS_PER_WORKER = 64
PROOF_HASHES = 40  # ~ a multiproof for 8 of 256 leaves
VALIDATOR_URI = "//BenchScaleValidator{}"
MINER_URI = "//BenchScaleMiner{}"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
EPOCH_BUDGET_MS = 200.0
QUERY_SAMPLE = 32  # miners whose two per-miner selection queries are timed one by one
RUN_BUDGET_S = 20.0  # a figure's runs stop once they took this long (at least one run)


# --- small helpers --------------------------------------------------------------------


def miner_host(i: int) -> str:
    """Miner ``i``'s own loopback address: 127.0.0.2 ... 127.0.0.251, 127.0.1.2, ..."""
    return f"127.0.{i // 250}.{i % 250 + 2}"


def status_mib(field: str) -> float:
    """A ``/proc/self/status`` figure (VmRSS, VmHWM) in MiB; 0 where it is missing."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def reset_peak_rss() -> None:
    """Start VmHWM over from the current RSS (Linux: ``5`` to ``clear_refs``)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def write_json(path: Path, value: Any) -> None:
    part = path.with_suffix(".part")
    part.write_text(json.dumps(value))
    part.replace(path)


# --- bulk rows into a validator database ----------------------------------------------


@dataclass(frozen=True, slots=True)
class MinerRow:
    hotkey: str
    host: str
    port: int


class Loader:
    """Rows straight into a validator database whose schema the migrations made.

    SQLite: ``executemany`` in transactions of ``BATCH_SEGMENTS`` segments (synchronous off
    and a large page cache for this connection only: loading is not what is measured).
    PostgreSQL: ``COPY``. Ids are explicit; PostgreSQL's sequences are moved past them, so
    the production code's own inserts afterwards get fresh ids.
    """

    def __init__(self, url: str, *, shard_size: int, validator: str, seed: int) -> None:
        self.engine: Engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        self.shard_size = shard_size
        self.segment_size = K * shard_size
        self.validator = validator
        self.rng = random.Random(seed)
        self.segments = self.placements = self.shards = self.repairs = 0
        self.signature = "0x" + "5a" * 64

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _raw(self) -> Iterator[Any]:
        raw = self.engine.raw_connection()
        try:
            conn: Any = raw.driver_connection
            if self.dialect == "sqlite":
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute("PRAGMA cache_size=-262144")
            yield conn
            conn.commit()
        finally:
            raw.close()

    def _insert(
        self, conn: Any, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        names = ", ".join(f'"{c}"' for c in columns)
        if self.dialect == "sqlite":
            marks = ", ".join("?" for _ in columns)
            conn.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks})",
                [tuple(_sqlite(v) for v in row) for row in rows],
            )
            return
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def add_base(self, miners: Sequence[MinerRow]) -> None:
        now = datetime.now(UTC)
        with self._raw() as conn:
            self._insert(
                conn, "users", ("id", "name", "hotkey", "created_at"),
                [(1, "bench", self.validator, now)],
            )  # fmt: skip
            self._insert(
                conn,
                "miners",
                ("id", "hotkey", "host", "port", "capacity_bytes", "free_bytes", "wrong_alpha",
                 "wrong_beta", "timeout_alpha", "timeout_beta", "last_seen", "active",
                 "verified_bytes"),
                [(i + 1, m.hotkey, m.host, m.port, 1 << 42, 1 << 41, 1.0, 0.0, 1.0, 0.0, now,
                  True, 0) for i, m in enumerate(miners)],
            )  # fmt: skip
        self._fix_sequences()

    def add_segments(
        self, segments: Sequence[Sequence[tuple[str, int]]], *, challenged: bool
    ) -> None:
        """Each segment is m (shard id, miner row id) pairs, in share order; objects of
        ``SEGMENTS_PER_OBJECT`` segments, committed."""
        for start in range(0, len(segments), BATCH_SEGMENTS):
            with self._raw() as conn:
                self._add_batch(conn, segments[start : start + BATCH_SEGMENTS], challenged)
        self._fix_sequences()

    def _add_batch(
        self, conn: Any, segments: Sequence[Sequence[tuple[str, int]]], challenged: bool
    ) -> None:
        rng, now = self.rng, datetime.now(UTC)
        objects: list[tuple[Any, ...]] = []
        seg_rows: list[tuple[Any, ...]] = []
        shard_rows: list[tuple[Any, ...]] = []
        placement_rows: list[tuple[Any, ...]] = []
        repair_rows: list[tuple[Any, ...]] = []
        for first in range(0, len(segments), SEGMENTS_PER_OBJECT):
            group = segments[first : first + SEGMENTS_PER_OBJECT]
            object_id = f"{rng.getrandbits(128):032x}"
            manifest = {
                "codec": "zfec", "encryption": "aes-256-gcm", "hash": "blake3-merkle-v1",
                "k": K, "m": M, "leaf_size": LEAF, "segment_size": self.segment_size,
                "size": len(group) * self.segment_size, "version": 1,
                "segments": [
                    {"size": self.segment_size + 16, "padding": 0, "shard_size": self.shard_size,
                     "shards": [sid for sid, _ in seg]}
                    for seg in group
                ],
            }  # fmt: skip
            objects.append(
                (object_id, 1, f"scale/{object_id}", "committed", len(group) * self.segment_size,
                 K, M, self.segment_size, LEAF, "aes-256-gcm",
                 json.dumps(manifest, sort_keys=True, separators=(",", ":")),
                 f"{rng.getrandbits(256):064x}", now, now)
            )  # fmt: skip
            for index, seg in enumerate(group):
                self.segments += 1
                seg_rows.append(
                    (self.segments, object_id, index, self.segment_size, 0, self.shard_size)
                )
                for share, (shard_id, miner_id) in enumerate(seg):
                    self.shards += 1
                    shard_rows.append(
                        (self.shards, self.segments, share, shard_id, self.shard_size)
                    )
                    self.placements += 1
                    state, verdict, containment = "stored", None, 0
                    last = None
                    if challenged:
                        verdict = "pass"
                        last = now - timedelta(seconds=rng.uniform(0, 3600))
                        draw = rng.random()
                        if draw < LOST_FRACTION:
                            state, verdict = "lost", "missing"
                            self.repairs += 1
                            repair_rows.append(
                                (self.repairs, self.shards, "missing on merkle challenge", 0, now)
                            )
                        elif draw < LOST_FRACTION + CONTAINED_FRACTION:
                            verdict, containment = "contained", 1
                    placement_rows.append(
                        (self.placements, self.shards, miner_id, state, self.shard_size,
                         self._receipt(shard_id, miner_id), now, last, verdict, containment)
                    )  # fmt: skip
        self._insert(
            conn, "objects",
            ("id", "owner_id", "name", "state", "size", "k", "m", "segment_size", "leaf_size",
             "encryption", "manifest_json", "verifier", "created_at", "committed_at"),
            objects,
        )  # fmt: skip
        self._insert(
            conn, "segments", ("id", "object_id", "index", "size", "padding", "shard_size"),
            seg_rows,
        )  # fmt: skip
        self._insert(conn, "shards", ("id", "segment_id", "share", "shard_id", "size"), shard_rows)
        self._insert(
            conn, "placements",
            ("id", "shard_id", "miner_id", "state", "size", "receipt_json", "stored_at",
             "last_challenged_at", "last_verdict", "containment"),
            placement_rows,
        )  # fmt: skip
        if repair_rows:
            self._insert(
                conn, "repair_queue", ("id", "shard_id", "reason", "attempts", "created_at"),
                repair_rows,
            )  # fmt: skip

    def _receipt(self, shard_id: str, miner_id: int) -> str:
        # The production form (sorted keys, compact), as long as a real one.
        return (
            f'{{"miner":"5Miner{miner_id:042d}","root":"{shard_id}","shard_id":"{shard_id}",'
            f'"signature":"{self.signature}","size":{self.shard_size},'
            f'"stored_at":1700000000.123456,"validator":"{self.validator}","version":1}}'
        )

    def _fix_sequences(self) -> None:
        if self.dialect != "postgresql":
            return
        with self.engine.begin() as conn:
            for table in ("users", "miners", "segments", "shards", "placements", "repair_queue"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"
                    )
                )

    def analyze(self) -> None:
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))

    def size_bytes(self) -> int:
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                return int(
                    conn.execute(text("SELECT pg_database_size(current_database())")).one()[0]
                )
            database = self.engine.url.database or ""
        return sum(
            Path(database + suffix).stat().st_size
            for suffix in ("", "-wal")
            if Path(database + suffix).exists()
        )


def _sqlite(value: Any) -> Any:
    # SQLAlchemy's SQLite DateTime stores UTC as this text form.
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def random_segments(rng: random.Random, count: int, miners: int) -> list[list[tuple[str, int]]]:
    """``count`` segments, each on m distinct miners out of ``miners`` (row ids 1..)."""
    ids = range(1, miners + 1)
    return [
        list(zip((rng.randbytes(32).hex() for _ in range(M)), rng.sample(ids, M), strict=True))
        for _ in range(count)
    ]


@contextmanager
def scratch_database(kind: str, folder: Path) -> Iterator[str]:
    """An empty database of ``kind``: a SQLite file, or a PostgreSQL database dropped after."""
    if kind == "sqlite":
        path = folder / f"scale-{uuid.uuid4().hex[:8]}.sqlite"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"bench_scale_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.format(name=name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


# --- role "db": the validator's operations on one database, timed ------------------------


def pass_outcomes(
    challenger: Challenger, plans: Sequence[Plan], rng: random.Random
) -> list[Outcome]:
    """A pass for every Merkle target of ``plans``, with entries of production shape."""
    now = time.time()
    outcomes = []
    for plan in plans:
        for target in plan.merkle:
            nonce = new_nonce()
            indices = derive_indices(nonce, target.shard_id, target.leaf_count, 8)
            outcomes.append(
                challenger._entry(
                    plan, target, kind="merkle", nonce=nonce.hex(), indices=indices,
                    issued_at=now, answered_at=now + 0.01, latency_ms=10.0, verdict="pass",
                    reason="proof verified against the upload-time root",
                    proof_digest=rng.randbytes(32).hex(),
                    leaf_hashes=tuple(rng.randbytes(32).hex() for _ in indices),
                    proof=rng.randbytes(32 * PROOF_HASHES).hex(),
                )
            )  # fmt: skip
    return outcomes


class Meter:
    """Wall time and CPU time of a call: this process's CPU (all threads) plus, on
    PostgreSQL, that of the database's server backends (read from ``/proc``). On a shared
    machine the CPU figure is the steadier one; both are reported."""

    def __init__(self, engine: Engine) -> None:
        self.database = engine.url.database if engine.dialect.name == "postgresql" else None
        self.admin = psycopg.connect(PG_ADMIN, autocommit=True) if self.database else None

    def close(self) -> None:
        if self.admin is not None:
            self.admin.close()

    def _backends(self) -> dict[int, float]:
        if self.admin is None:
            return {}
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.database,),
        ).fetchall()
        cpu = {}
        for (pid,) in rows:
            with contextlib.suppress(OSError, IndexError, ValueError):
                cpu[int(pid)] = process_cpu(int(pid))
        return cpu

    def sample(self, fn: Callable[[], object]) -> tuple[float, float]:
        backends0 = self._backends()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        backends1 = self._backends()
        cpu += sum(v - backends0.get(pid, 0.0) for pid, v in backends1.items())
        return wall, cpu

    def summary(self, runs: int, fn: Callable[[], object], per: int = 1) -> dict[str, float]:
        """Medians over ``runs`` calls, in ms (divided by ``per``: a figure per item). A slow
        operation stops after ``RUN_BUDGET_S`` seconds of calls, with at least one."""
        samples: list[tuple[float, float]] = []
        while len(samples) < runs and (not samples or sum(w for w, _ in samples) < RUN_BUDGET_S):
            samples.append(self.sample(fn))
        return {
            "median_ms": round(median([w for w, _ in samples]) * 1e3 / per, 3),
            "cpu_ms": round(median([c for _, c in samples]) * 1e3 / per, 3),
            "min_ms": round(min(w for w, _ in samples) * 1e3 / per, 3),
            "runs": len(samples),
        }


def rank_pick_us(candidates: Sequence[Candidate], runs: int = 300) -> float:
    """Microseconds of CPU for ``rank`` + ``pick`` of m miners (pure: this thread only)."""
    rng = random.Random(7)
    start = time.thread_time()
    for _ in range(runs):
        pick(rank(candidates, DB_SHARD, rng), M)
    return round((time.thread_time() - start) / runs * 1e6, 1)


def measure_db(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the production code on the database at ``spec["url"]``; this process is the
    validator, so its RSS is the validator's for this configuration."""
    return_large_buffers_to_the_os()  # as `subnet validator run` does at start
    rss_start = status_mib("VmRSS")
    reset_peak_rss()
    runs, rng = int(spec["runs"]), random.Random(int(spec["seed"]))
    keypair = Keypair.create_from_uri(VALIDATOR_URI.format(0))
    engine = make_engine(spec["url"])
    sessions = sessionmaker(engine, expire_on_commit=False)
    meter = Meter(engine)
    nobody = cast(MinerClient, None)  # nothing here talks to a miner
    out: dict[str, Any] = {}
    try:
        challenger = Challenger(
            sessions, nobody, ChallengeLogStore(sessions, keypair), ChallengePolicy()
        )
        plans = challenger._plan(False)  # warm: the first one also reads the schema

        def plan() -> None:
            plans[:] = challenger._plan(False)

        out["plan"] = meter.summary(runs, plan)
        out["plan"]["targets"] = sum(len(p.merkle) + len(p.retrieval) for p in plans)
        with sessions() as session:
            ids = list(session.scalars(select(Miner.id).order_by(Miner.id)))
            sample = ids[:: max(1, len(ids) // QUERY_SAMPLE)]
            for contained in (True, False):
                name = "plan_query_contained" if contained else "plan_query_due"

                def each(flag: bool = contained) -> None:
                    for miner_id in sample:
                        challenger._targets(session, miner_id, contained=flag)

                out[name] = meter.summary(runs, each, per=len(sample))  # per miner
                out[name]["miners_sampled"] = len(sample)
            out["verified_bytes_aggregate"] = meter.summary(
                runs, lambda: verified.recount(session, ids)
            )

        records = []
        for run in range(int(spec["record_runs"])):
            # A round of passes for the last plan: every miner, its batch of due placements.
            outcomes = pass_outcomes(
                challenger, plans if run == 0 else challenger._plan(False), rng
            )
            records.append(meter.sample(lambda o=outcomes: challenger._record(o)))  # type: ignore[misc]
        wall, cpu = median([w for w, _ in records]), median([c for _, c in records])
        out["record"] = {
            "median_ms": ms(wall),
            "cpu_ms": ms(cpu),
            "runs": len(records),
            "outcomes": len(outcomes),
            "per_outcome_us": round(wall / max(1, len(outcomes)) * 1e6, 1),
            "per_outcome_cpu_us": round(cpu / max(1, len(outcomes)) * 1e6, 1),
        }

        with sessions() as session:
            miners = session.execute(
                select(Miner.hotkey, Miner.host, Miner.port, Miner.free_bytes)
            ).all()
        candidates = [Candidate(h, host, port, free, 1.0) for h, host, port, free in miners]
        out["rank_pick_us"] = rank_pick_us(candidates)
        out["record_segment"] = record_segment(sessions, candidates, keypair, spec, meter)

        repairer = Repairer(sessions, nobody, lambda: [], max_segments=32)
        chosen: list[int] = []

        def choose() -> None:
            chosen[:] = repairer._choose(RepairReport(), set())

        choose()
        out["repair_choose"] = meter.summary(runs, choose)
        out["repair_choose"]["chosen"] = len(chosen)
        out["repair_holders"] = meter.summary(runs, repairer._holders)
    finally:
        meter.close()
        engine.dispose()
    out["rss_mib"] = {"start": rss_start, "peak": status_mib("VmHWM"), "end": status_mib("VmRSS")}
    return out


def record_segment(
    sessions: sessionmaker[Session],
    candidates: Sequence[Candidate],
    keypair: Keypair,
    spec: dict[str, Any],
    meter: Meter,
) -> dict[str, Any]:
    """``Uploader._record_segment`` for ``segment_runs`` segments of one pending object."""
    uploader = Uploader(sessions, cast(MinerClient, None), lambda: candidates)
    params = ErasureParams(K, M, K * LEAF, LEAF)  # tiny shards: only the rows matter here
    encoder = ObjectEncoder(params, encrypt=False, workers=1)
    segment = next(iter(encoder.encode([random.Random(3).randbytes(K * LEAF)])))
    rng = random.Random(5)
    options = UploadOptions(params, encrypt=False)
    object_id = uploader._begin(1, f"scale-segments-{uuid.uuid4().hex}", options)
    runs = int(spec["segment_runs"])
    placements = []
    for _ in range(runs):
        chosen = pick(rank(candidates, params.segment_size, rng), M)
        placements.append(
            {
                shard.share: (
                    c,
                    StorageReceipt(
                        miner=c.hotkey, validator=keypair.ss58_address, shard_id=shard.id,
                        size=shard.size, root=shard.id, stored_at=time.time(),
                        signature="0x" + "5a" * 64,
                    ),
                )
                for shard, c in zip(segment.shards, chosen, strict=True)
            }
        )  # fmt: skip
    todo = iter(enumerate(placements))

    def one() -> None:
        index, placed = next(todo)
        uploader._record_segment(object_id, replace(segment, index=index), placed)

    try:
        return meter.summary(runs, one)
    finally:
        uploader._delete_rows(object_id)


# --- role "miners": real miner apps, many per process -----------------------------------


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def serve_miners(spec: dict[str, Any]) -> None:
    """Preload each miner with shards for each validator, serve them all, write where they
    listen to ``spec["manifest"]``, and serve until SIGTERM."""
    return_large_buffers_to_the_os()
    root = Path(spec["root"])
    validators: list[str] = spec["validators"]
    per_validator = int(spec["shards_per_validator"])
    runners: list[web.AppRunner] = []
    entries = []
    try:
        for i in spec["indices"]:
            keypair = Keypair.create_from_uri(MINER_URI.format(i))
            settings = MinerSettings(
                host=miner_host(i), port=0, data_dir=root / f"m{i}", capacity=1 << 40,
                validators=tuple(validators), scrub_rate=0,
            )  # fmt: skip
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            index = ShardIndex(settings.data_dir / "index.sqlite")
            service = MinerService(settings, keypair, FsShardStore(settings.data_dir), index)
            rng = random.Random(i)
            held: dict[str, list[str]] = {}
            for validator in validators:
                held[validator] = []
                for _ in range(per_validator):
                    data = rng.randbytes(LIVE_SHARD)
                    shard_id = MerkleTree.build(data, LEAF).root.hex()

                    def check(root_hex: str, expected: str = shard_id) -> None:
                        if root_hex != expected:
                            raise RuntimeError("preloaded shard does not hash to its id")

                    await service.store_shard(
                        validator, shard_id, size=len(data), leaf_size=LEAF,
                        body=_one_chunk(data), check_root=check,
                    )  # fmt: skip
                    held[validator].append(shard_id)
            runner = web.AppRunner(make_app(service))
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, settings.host, 0).start()
            port = int(runner.addresses[0][1])
            entries.append(
                {"index": i, "hotkey": keypair.ss58_address, "host": settings.host,
                 "port": port, "shards": held}
            )  # fmt: skip
        write_json(Path(spec["manifest"]), entries)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()


# --- role "validator": the production challenger against live miners -------------------


class TimedChallenger(Challenger):
    """The production challenger, with the time of each round's plan and record noted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan_seconds: list[float] = []
        self.record_seconds: list[float] = []

    def _plan(self, retrieve: bool = False) -> list[Plan]:
        start = time.perf_counter()
        try:
            return super()._plan(retrieve)
        finally:
            self.plan_seconds.append(time.perf_counter() - start)

    def _record(self, outcomes: Sequence[Outcome], served: Mapping[str, int] | None = None) -> Any:
        start = time.perf_counter()
        try:
            return super()._record(outcomes, served)
        finally:
            self.record_seconds.append(time.perf_counter() - start)


def live_segments(miners: Sequence[dict[str, Any]], validator: str) -> list[list[tuple[str, int]]]:
    """The real shards as segments of m shards on m distinct miners (row ids 1.. in order)."""
    pairs = [
        (miner["shards"][validator][slot], row)
        for slot in range(len(miners[0]["shards"][validator]))
        for row, miner in enumerate(miners, start=1)
    ]
    return [pairs[i : i + M] for i in range(0, len(pairs) - M + 1, M)]


async def run_validator(spec: dict[str, Any]) -> dict[str, Any]:
    return_large_buffers_to_the_os()
    keypair = Keypair.create_from_uri(VALIDATOR_URI.format(spec["number"]))
    url = spec["url"]
    upgrade(url, "validator")
    loader = Loader(url, shard_size=LIVE_SHARD, validator=keypair.ss58_address, seed=spec["number"])
    miners = spec["miners"]
    loader.add_base([MinerRow(m["hotkey"], m["host"], m["port"]) for m in miners])
    loader.add_segments(live_segments(miners, keypair.ss58_address), challenged=False)
    placements = loader.placements
    loader.close()
    # From here on, as validator/runner.py builds it.
    engine = make_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=None)
    )
    try:
        challenger = TimedChallenger(
            sessions,
            MinerClient(SigningClient(http, keypair)),
            ChallengeLogStore(sessions, keypair),
            # Production policy but the deadline's floor: on a shared two-core machine
            # running every miner, a late answer is the machine's, not a miner's.
            ChallengePolicy(floor=float(spec["deadline_floor"])),
        )
        await challenger.run_round()  # warm: connections, the miners' tree caches, the head
        challenger.plan_seconds.clear()
        challenger.record_seconds.clear()
        print("ready", flush=True)  # to the parent, which answers "go" when all are
        await asyncio.to_thread(sys.stdin.readline)
        reset_peak_rss()
        verdicts: dict[str, int] = {}
        leaves = 0
        round_seconds: list[float] = []
        cpu0, start = time.process_time(), time.perf_counter()
        while time.perf_counter() - start < spec["seconds"] or len(round_seconds) < 2:
            report = await challenger.run_round()
            round_seconds.append(report.seconds)
            leaves += report.leaves_verified
            for verdict, count in report.verdicts.items():
                verdicts[verdict] = verdicts.get(verdict, 0) + count
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    finally:
        await http.close()
        engine.dispose()
    return {
        "placements": placements,
        "rounds": len(round_seconds),
        "seconds": round(wall, 2),
        "verdicts": verdicts,
        "leaves_verified": leaves,
        "leaves_per_s": round(leaves / wall),
        "challenges_per_s": round(sum(verdicts.values()) / wall),
        "leaves_per_cpu_s": round(leaves / cpu) if cpu > 0 else None,
        "round_median_s": round(median(round_seconds), 3),
        "plan_median_ms": ms(median(challenger.plan_seconds)),
        "record_median_ms": ms(median(challenger.record_seconds)),
        "cpu_s": round(cpu, 2),
        "rss_mib": {"peak": status_mib("VmHWM"), "end": status_mib("VmRSS")},
    }


# --- the parent: orchestration ---------------------------------------------------------


def run_role(role: str, spec: dict[str, Any], folder: Path, timeout: float = 1800) -> Any:
    """Run ``python -m bench.scale --role ROLE`` on ``spec`` and return its JSON result."""
    spec_path = folder / f"{role}-{uuid.uuid4().hex[:8]}.json"
    result = spec_path.with_suffix(".result.json")
    write_json(spec_path, {**spec, "result": str(result)})
    subprocess.run(
        [sys.executable, "-m", "bench.scale", "--role", role, "--spec", str(spec_path)],
        check=True, timeout=timeout,
    )  # fmt: skip
    return json.loads(result.read_text())


def database_series(
    kind: str, miners: int, sizes: Sequence[int], args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    """One scratch database of ``kind`` on ``miners`` miners, grown through ``sizes``."""
    series: dict[str, Any] = {}
    validator = Keypair.create_from_uri(VALIDATOR_URI.format(0)).ss58_address
    with scratch_database(kind, folder) as url:
        upgrade(url, "validator")
        loader = Loader(url, shard_size=DB_SHARD, validator=validator, seed=args.seed + miners)
        try:
            loader.add_base(
                [
                    MinerRow(Keypair.create_from_uri(MINER_URI.format(i)).ss58_address,
                             miner_host(i), 8091)
                    for i in range(miners)
                ]
            )  # fmt: skip
            for size in sizes:
                missing = max(0, size - loader.placements) // M
                start = time.perf_counter()
                loader.add_segments(random_segments(loader.rng, missing, miners), challenged=True)
                loader.analyze()
                generated = time.perf_counter() - start
                print(
                    f"[scale] {kind}, {miners} miners: {loader.placements} placements "
                    f"(+{missing * M} in {generated:.1f} s); measuring",
                    file=sys.stderr,
                )
                figures = run_role(
                    "db",
                    {"url": url, "runs": args.runs, "record_runs": args.record_runs,
                     "segment_runs": args.segment_runs, "seed": args.seed},
                    folder,
                )  # fmt: skip
                series[str(size)] = {
                    "placements": loader.placements,
                    "lost": loader.repairs,
                    "database_mib": round(loader.size_bytes() / 2**20, 1),
                    "generate_s": round(generated, 1),
                    **figures,
                }
        finally:
            loader.close()
    return series


@contextmanager
def live_miners(
    count: int, validators: Sequence[str], args: argparse.Namespace, folder: Path
) -> Iterator[tuple[list[dict[str, Any]], list[int]]]:
    """``count`` miners in worker processes of up to 64; yields (entries, worker pids)."""
    base = Path(args.miner_dir) if args.miner_dir else folder
    with ExitStack() as stack:
        root = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-miners-", dir=base))
        )
        procs = []
        manifests = []
        for w in range(math.ceil(count / MINERS_PER_WORKER)):
            indices = list(range(w * MINERS_PER_WORKER, min(count, (w + 1) * MINERS_PER_WORKER)))
            manifest = root / f"worker{w}.json"
            spec = root / f"worker{w}.spec.json"
            write_json(
                spec,
                {"indices": indices, "root": str(root), "validators": list(validators),
                 "shards_per_validator": args.shards_per_validator, "manifest": str(manifest)},
            )  # fmt: skip
            log = (root / f"worker{w}.log").open("ab")
            stack.callback(log.close)
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.scale", "--role", "miners", "--spec", str(spec)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            stack.callback(_stop, proc)
            procs.append(proc)
            manifests.append(manifest)
        deadline = time.monotonic() + 600
        while not all(m.exists() for m in manifests):
            for w, proc in enumerate(procs):
                if proc.poll() is not None:
                    tail = (root / f"worker{w}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"miner worker {w} exited early:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("miner workers did not come up within 600 s")
            time.sleep(0.1)
        entries = [e for m in manifests for e in json.loads(m.read_text())]
        yield sorted(entries, key=lambda e: int(e["index"])), [p.pid for p in procs]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def live_series(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    counts = sorted(c for c in args.live_miners if c > 0)
    if not counts:
        return {}
    validators = [
        Keypair.create_from_uri(VALIDATOR_URI.format(n)).ss58_address
        for n in range(args.validators)
    ]
    series: dict[str, Any] = {}
    start = time.perf_counter()
    with live_miners(counts[-1], validators, args, folder) as (entries, pids):
        print(
            f"[scale] {len(entries)} miners up in {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
        )
        for count in counts:
            series[str(count)] = live_round(entries[:count], pids, args, folder)
    return series


def live_round(
    miners: list[dict[str, Any]], pids: Sequence[int], args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    """``args.validators`` validator processes challenging ``miners`` at the same time."""
    tag = uuid.uuid4().hex[:8]
    procs, results = [], []
    workers = pids[: math.ceil(len(miners) / MINERS_PER_WORKER)]
    try:
        for n in range(args.validators):
            result = folder / f"validator{n}-{tag}.json"
            spec = folder / f"validator{n}-{tag}.spec.json"
            write_json(
                spec,
                {"number": n, "url": f"sqlite:///{folder / f'validator{n}-{tag}.sqlite'}",
                 "miners": miners, "seconds": args.seconds, "result": str(result),
                 "deadline_floor": args.deadline_floor},
            )  # fmt: skip
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.scale",
                        "--role",
                        "validator",
                        "--spec",
                        str(spec),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
            results.append(result)
        for proc in procs:  # each says "ready" after its warm-up round
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError("a validator process failed before its first round")
        cpu0 = sum(process_cpu(p) for p in workers)
        wall0 = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        for proc in procs:
            if proc.wait(timeout=1800) != 0:
                raise RuntimeError("a validator process failed")
        wall = time.perf_counter() - wall0
        cpu1 = sum(process_cpu(p) for p in workers)
    finally:
        for proc in procs:
            _stop(proc)
    per_validator = [json.loads(r.read_text()) for r in results]
    return {
        "miners": len(miners),
        "validators": len(per_validator),
        "leaves_per_s_total": sum(v["leaves_per_s"] for v in per_validator),
        "leaves_per_validator_cpu_s": median(
            [v["leaves_per_cpu_s"] for v in per_validator if v["leaves_per_cpu_s"]]
        ),
        "challenges_per_s_total": sum(v["challenges_per_s"] for v in per_validator),
        "miner_processes_cpu_s": round(cpu1 - cpu0, 2),
        "wall_s": round(wall, 2),
        "per_validator": per_validator,
    }


def epoch_close(args: argparse.Namespace) -> dict[str, Any]:
    from bench.epoch import UIDS as EPOCH_UIDS  # noqa: PLC0415
    from bench.epoch import VALIDATORS, measure  # noqa: PLC0415

    results: dict[str, Any] = {"uids": EPOCH_UIDS, "validators": VALIDATORS}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.databases:
            with scratch_database(kind, Path(tmp)) as url:
                figures = measure(url, args.epoch_runs, args.seed)
            results[kind] = {
                "epoch_close_ms": figures["epoch_close_ms"],
                "within_budget": figures["epoch_close_ms"] < EPOCH_BUDGET_MS,
            }
    results["budget_ms"] = EPOCH_BUDGET_MS
    return results


OPERATIONS = (
    ("plan", "cpu_ms"),
    ("plan", "median_ms"),
    ("plan_query_contained", "cpu_ms"),
    ("plan_query_due", "cpu_ms"),
    ("verified_bytes_aggregate", "cpu_ms"),
    ("record", "per_outcome_cpu_us"),
    ("record", "per_outcome_us"),
    ("record_segment", "cpu_ms"),
    ("record_segment", "median_ms"),
    ("rank_pick_us", None),
    ("repair_choose", "cpu_ms"),
    ("repair_choose", "median_ms"),
    ("repair_holders", "cpu_ms"),
    ("rss_mib", "peak"),
)


def growth(database: dict[str, Any]) -> dict[str, Any]:
    """Per database and operation: the figure at the most placements over the fewest (at
    each miner count), and at the most miners over the fewest (at each placement count)."""

    def figure(cell: dict[str, Any], op: str, key: str | None) -> float | None:
        value = cell.get(op)
        if value is None:
            return None
        return float(value if key is None else value[key])

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    out: dict[str, Any] = {}
    for kind, by_miners in database.items():
        per_op: dict[str, Any] = {}
        miners = sorted(by_miners, key=int)
        sizes = sorted({s for m in miners for s in by_miners[m]}, key=int)
        for op, key in OPERATIONS:
            entry: dict[str, Any] = {}
            if len(sizes) > 1:
                lo, hi = sizes[0], sizes[-1]
                for m in miners:
                    cells = by_miners[m]
                    if lo in cells and hi in cells:
                        entry[f"{hi}/{lo} placements, {m} miners"] = ratio(
                            figure(cells[hi], op, key), figure(cells[lo], op, key)
                        )
            if len(miners) > 1:
                lo_m, hi_m = miners[0], miners[-1]
                for s in sizes:
                    if s in by_miners[lo_m] and s in by_miners[hi_m]:
                        entry[f"{hi_m}/{lo_m} miners, {s} placements"] = ratio(
                            figure(by_miners[hi_m][s], op, key), figure(by_miners[lo_m][s], op, key)
                        )
            if entry:
                per_op[op if key is None else f"{op}.{key}"] = entry
        out[kind] = per_op
    return out


def grid_sizes(args: argparse.Namespace, miners: int, most: int) -> list[int]:
    """Placement counts measured at ``miners``: all of them at the most miners (and at every
    count with ``--grid full``), else only ``--miners-at``."""
    if args.grid == "full" or miners == most:
        return sorted(args.placements)
    return [args.miners_at]


def parse_counts(value: str) -> list[int]:
    return [int(float(v)) for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--miners", type=parse_counts, default=[8, 64, 256],
                        help="miner counts of the database series")  # fmt: skip
    parser.add_argument("--placements", type=parse_counts, default=[10_000, 100_000, 1_000_000],
                        help="placement counts, all measured at the most miners")  # fmt: skip
    parser.add_argument("--miners-at", type=int, default=100_000,
                        help="the placement count at which fewer miners are measured")  # fmt: skip
    parser.add_argument("--grid", choices=["cross", "full"], default="cross",
                        help="full: every placement count at every miner count (slow)")  # fmt: skip
    parser.add_argument("--databases", type=lambda v: v.split(","),
                        default=["sqlite", "postgresql"])  # fmt: skip
    parser.add_argument("--live-miners", type=parse_counts, default=[8, 64, 256],
                        help="miner counts of the live challenge series; 0: none")  # fmt: skip
    parser.add_argument("--validators", type=int, default=2)
    parser.add_argument("--deadline-floor", type=float, default=60.0,
                        help="the live validators' challenge deadline floor, s")  # fmt: skip
    parser.add_argument("--shards-per-validator", type=int, default=16,
                        help="128 KiB shards each live miner holds per validator")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=20.0, help="per live miner count")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--record-runs", type=int, default=1, help="rounds recorded per size")
    parser.add_argument("--segment-runs", type=int, default=30)
    parser.add_argument("--epoch-runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--miner-dir", default="/dev/shm" if Path("/dev/shm").is_dir() else "",
                        help="where live miners keep shards (default: tmpfs)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true",
                        help="8 miners, 10k placements, SQLite, 2 s of challenges")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    parser.add_argument("--role", choices=["db", "miners", "validator"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()

    if args.role:
        spec = json.loads(args.spec.read_text())
        if args.role == "db":
            write_json(Path(spec["result"]), measure_db(spec))
        elif args.role == "miners":
            asyncio.run(serve_miners(spec))
        else:
            write_json(Path(spec["result"]), asyncio.run(run_validator(spec)))
        return

    if args.smoke:
        args.miners, args.placements, args.databases = [8], [10_000], ["sqlite"]
        args.miners_at = 10_000
        args.live_miners, args.seconds, args.shards_per_validator = [8], 2.0, 8
        args.runs, args.record_runs, args.segment_runs, args.epoch_runs = 2, 1, 5, 1
    if max(args.live_miners, default=0) > 256 or min(args.miners) < M:
        raise SystemExit(f"miners: {M}..256 (one loopback address each)")
    if "postgresql" in args.databases and not postgres_reachable():
        print("[scale] PostgreSQL at 127.0.0.1:5432 is unreachable: skipped", file=sys.stderr)
        args.databases = [d for d in args.databases if d != "postgresql"]

    started, load_start = time.perf_counter(), round(os.getloadavg()[0], 2)
    with ExitStack() as stack:
        folder = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-"))
        )
        folder.mkdir(parents=True, exist_ok=True)
        database: dict[str, Any] = {}
        most = max(args.miners)
        for kind in args.databases:
            database[kind] = {
                str(m): database_series(kind, m, grid_sizes(args, m, most), args, folder)
                for m in sorted(args.miners)
            }
        live = live_series(args, folder)
        epoch = epoch_close(args)
    emit(
        {
            "bench": "scale",
            "command": command("bench.scale"),
            "k": K,
            "m": M,
            "db_shard_bytes": DB_SHARD,
            "live_shard_bytes": LIVE_SHARD,
            "leaf_bytes": LEAF,
            "challenge_policy": {
                "batch": ChallengePolicy().batch,
                "leaves": ChallengePolicy().leaves,
            },
            "runs_per_figure": args.runs,
            "database": database,
            "growth": growth(database),
            "live": live,
            "epoch_close": epoch,
            "total_seconds": round(time.perf_counter() - started, 1),
            "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        },
        args.out,
    )


if __name__ == "__main__":
    main()
