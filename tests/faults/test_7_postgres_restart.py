"""Scenario 7: PostgreSQL "restarted" under a validator that keeps its database there.

This is an EMULATION of a PostgreSQL restart. A test cannot restart the machine's PostgreSQL
service (CI's included), so it does to the validator's (scratch) database what a restart
does to its clients, again and again while uploads, downloads and challenge rounds run:
every connection is cut (``pg_terminate_backend`` on all of that database's backends) and
new connections are refused for half a second (``ALTER DATABASE ... ALLOW_CONNECTIONS
false``, then true again). The server itself keeps running, so nothing is lost from its
memory or its disk as a real crash might; that is PostgreSQL's own business.

validator1 runs with ``--database-url postgresql+psycopg://...`` on a database made for this
run (tests/db.py; dropped afterwards). Its engine checks a pooled connection before using it
(``pool_pre_ping``), so it keeps working between restarts; a request that meets the database
down fails, but cleanly: a 503 (never a 500 with a traceback), and no object that is listed
but incomplete. Afterwards every upload and download succeeds, including a retry of every
name that failed (a failed upload must not keep its name taken).
Skipped when PostgreSQL is unreachable, except under CI=true, where that fails.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import psycopg
import pytest
from sqlalchemy.engine import make_url

from subnet.gateway_client import GatewayError
from tests.db import PG_ADMIN, require_postgres
from tests.faults.harness import Harness, HttpError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

VALIDATOR = "validator1"
UPLOADS = 12
RESTART_EVERY = 1.0  # seconds between emulated restarts
DOWN = 0.5  # seconds each refuses new connections
PACE = 0.4  # seconds between one upload and read and the next
TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = %s AND pid <> pg_backend_pid()"
)


def restart(database: str) -> int:
    """What a restart does to ``database``'s clients: every connection is cut, and new ones
    are refused for a moment. Returns how many connections were cut."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            rows = conn.execute(TERMINATE, (database,)).fetchall()
            time.sleep(DOWN)
        finally:
            conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    return sum(1 for (done,) in rows if done)


async def test_postgres_restart_under_a_validator(
    harness: Harness, http: aiohttp.ClientSession
) -> None:
    require_postgres()
    assert harness.pg_url is not None, "the net was started without PostgreSQL"
    database = make_url(harness.pg_url).database
    assert database
    for i in range(3):  # something to challenge and to read
        path, sha256 = harness.make_file(150_000, "postgres")
        await harness.upload(http, VALIDATOR, f"postgres/before-{i}.bin", path, sha256)
    restarts = 0
    backends = 0
    stop = asyncio.Event()

    async def restart_postgres_again_and_again() -> None:
        nonlocal restarts, backends
        while not stop.is_set():
            killed = await asyncio.to_thread(restart, database)
            if killed:
                restarts += 1
                backends += killed
            await asyncio.sleep(RESTART_EVERY)

    failures: list[tuple[str, GatewayError | HttpError | aiohttp.ClientError]] = []
    retry: list[tuple[str, Path, str]] = []
    during = await harness.log_head(http, VALIDATOR)
    terminator = asyncio.create_task(restart_postgres_again_and_again())
    try:
        client = await harness.client(http, VALIDATOR)
        for i in range(UPLOADS):
            path, sha256 = harness.make_file(150_000, "postgres")
            name = f"postgres/during-{i}.bin"
            try:
                await harness.upload(http, VALIDATOR, name, path, sha256)
            except (GatewayError, aiohttp.ClientError) as exc:
                failures.append((name, exc))
                retry.append((name, path, sha256))
            # Reads too: the first object, each time.
            target = harness.work / "downloads" / "postgres-read.bin"
            try:
                await client.download("postgres/before-0.bin", target)
            except (GatewayError, aiohttp.ClientError) as exc:
                failures.append(("read postgres/before-0.bin", exc))
            await asyncio.sleep(PACE)  # spread over several restarts

        # And challenge rounds: two more recorded (a miner challenged twice) while
        # connections keep dying.
        async def challenged() -> bool:
            try:
                entries = await harness.log(http, VALIDATOR, after=during, kind="merkle")
            except HttpError as exc:
                failures.append(("read the audit log", exc))
                return False
            rounds: dict[str, set[float]] = defaultdict(set)
            for entry in entries:
                rounds[entry["miner"]].add(entry["issued_at"])
            return any(len(times) >= 2 for times in rounds.values())

        await harness.wait_until(f"{VALIDATOR}'s challenge rounds", challenged)
    finally:
        stop.set()
        await terminator
    harness.fault("postgres restart (emulated)", restarts)
    harness.totals.notes["postgres"] = {
        "restarts emulated": restarts,
        "backends terminated": backends,
        "requests that failed": [f"{what}: {exc}" for what, exc in failures],
    }
    assert restarts > 0

    # Failures, if any, were clean: never a 500, and a failed upload left nothing listed.
    statuses = await harness.requests(http, VALIDATOR)
    assert statuses["500"] == 0, statuses
    for what, error in failures:
        assert not isinstance(error, GatewayError | HttpError) or error.status != 500, (what, error)
    listed = await harness.listed(http, VALIDATOR)
    for name, _, _ in retry:
        assert name not in listed, f"{name} failed but is listed"
    # Afterwards: retries of the failed names succeed, and everything reads back.
    for name, path, sha256 in retry:
        await harness.upload(http, VALIDATOR, name, path, sha256)
    await harness.check_all(http)
