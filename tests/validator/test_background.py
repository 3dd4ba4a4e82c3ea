"""The validator's background loops run as the app runs: challenges, synthetic fill, repair."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from erasure import ErasureParams
from tests.validator.conftest import VALIDATOR, LiveMiner
from tests.validator.test_challenger import challenger
from validator.app import make_app
from validator.gateway import Gateway
from validator.log_store import LogFilter
from validator.miner_client import MinerClient
from validator.models import Miner, Placement, StoredObject, User
from validator.repair import Repairer
from validator.settings import ValidatorSettings
from validator.synthetic import SYNTHETIC_USER, SyntheticFiller

PARAMS = ErasureParams(k=4, m=6, segment_size=256 * 1024, leaf_size=4096)


async def wait_for(check: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.1)


async def test_loops_challenge_fill_and_repair(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
    tmp_path: Path,
) -> None:
    settings = ValidatorSettings(
        data_dir=tmp_path,
        k=4,
        m=6,
        challenge_seconds=0.2,
        repair_seconds=0.2,
        synthetic_share=0.05,
        synthetic_object_size=300_000,
    )
    gateway = Gateway(sessions, miner_client)
    checker = challenger(sessions, miner_client)
    filler = SyntheticFiller(
        sessions, gateway.uploader, bytes(32), share=0.05, object_size=300_000, params=PARAMS
    )
    repairer = Repairer(sessions, miner_client, gateway.candidates, retry_after=0)
    app = make_app(
        gateway,
        settings,
        VALIDATOR.ss58_address,
        challenger=checker,
        filler=filler,
        repairer=repairer,
    )
    with sessions.begin() as session:  # room for a few synthetic objects, not unbounded
        session.execute(update(Miner).values(capacity_bytes=2_000_000))
    async with TestClient(TestServer(app)) as client:

        def synthetic_count() -> int:
            with sessions() as session:
                return len(
                    session.scalars(
                        select(StoredObject.id)
                        .join(StoredObject.segments)
                        .distinct()
                        .where(StoredObject.name.startswith("synthetic/"))
                    ).all()
                )

        await wait_for(lambda: synthetic_count() >= 1)
        await wait_for(lambda: len(checker.log_store.read(limit=1)) > 0)
        # The victim must hold something: a fixed miner held no shard in ~1 run in 10 (each
        # segment is on 6 of the 8), and then nothing was ever lost or repaired.
        with sessions.begin() as session:
            miner_id, victim = session.execute(
                select(Miner.id, Miner.hotkey)
                .join(Placement, Placement.miner_id == Miner.id)
                .where(Placement.state == "stored")
                .limit(1)
            ).one()
            session.execute(
                update(Placement).where(Placement.miner_id == miner_id).values(state="lost")
            )

        def repaired() -> bool:
            return bool(checker.log_store.read(LogFilter(kind="repair"), limit=1))

        await wait_for(repaired)
        entries = await (await client.get("/v1/audit/log", params={"kind": "repair"})).json()
        assert all(e["verdict"] == "repaired" for e in entries["entries"])
        assert entries["entries"][0]["reason"].count(victim) == 1
        metrics = await (await client.get("/metrics")).text()
        assert "validator_repair_shards_rebuilt_total" in metrics
    with sessions() as session:
        owners = session.scalars(
            select(StoredObject.owner_id).where(StoredObject.name.startswith("synthetic/"))
        ).all()
        internal = session.scalar(select(User.id).where(User.name == SYNTHETIC_USER))
    assert set(owners) == {internal}  # owned by the internal user, not by any real one
