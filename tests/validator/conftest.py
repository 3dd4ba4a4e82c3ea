from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from bittensor_wallet import Keypair
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from protocol.db import make_engine, upgrade
from protocol.signing import SigningClient
from storage_miner.app import make_app
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.service import MinerService
from storage_miner.settings import MinerSettings
from tests.db import DATABASES, database_url
from validator.miner_client import MinerClient
from validator.models import Miner, User
from validator.placement import Candidate

VALIDATOR = Keypair.create_from_uri("//GatewayValidator")


@dataclass
class LiveMiner:
    key: Keypair
    service: MinerService
    server: TestServer

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.key.ss58_address, self.server.host, self.server.port, 2**30, 1.0)


@pytest.fixture(autouse=True)
def _the_app_goes_first(request: pytest.FixtureRequest) -> None:
    """Sets up what a test's validator app uses before the app, so that it is torn down
    after it: pytest tears fixtures down in the reverse of their set-up, and tests name
    ``aiohttp_client`` first. Else an upload still in flight at the end is cancelled, and
    cleans up (database writes, shard deletes), after its database, miners and miner client
    have gone: a connection opened on a disposed engine, left to the garbage collector,
    failed a later test with a ResourceWarning."""
    for name in ("sessions", "live_miners", "miner_client"):
        if name in request.fixturenames:
            request.getfixturevalue(name)


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url, "validator")
    engine = make_engine(db_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
async def live_miners(tmp_path: Path) -> AsyncIterator[list[LiveMiner]]:
    """Eight real miner apps, each on its own loopback address."""
    miners = []
    for i in range(8):
        key = Keypair.create_from_uri(f"//GatewayMiner{i}")
        folder = tmp_path / f"miner{i}"
        settings = MinerSettings(data_dir=folder, validators=(VALIDATOR.ss58_address,))
        service = MinerService(
            settings, key, FsShardStore(folder), ShardIndex(folder / "index.sqlite")
        )
        server = TestServer(make_app(service, background=False), host=f"127.0.0.{i + 1}")
        await server.start_server()
        miners.append(LiveMiner(key, service, server))
    yield miners
    for miner in miners:
        await miner.server.close()
        miner.service.index.close()


@pytest.fixture
def seeded(sessions: sessionmaker[Session], live_miners: list[LiveMiner]) -> int:
    """The user id; the live miners are registered in the validator's database."""
    with sessions.begin() as session:
        user = User(name="alice", hotkey=None, created_at=datetime.now(UTC))
        session.add(user)
        for miner in live_miners:
            c = miner.candidate
            session.add(Miner(hotkey=c.hotkey, host=c.host, port=c.port, free_bytes=c.free_bytes))
        session.flush()
        return user.id


@pytest.fixture
async def miner_client() -> AsyncIterator[MinerClient]:
    async with aiohttp.ClientSession() as session:
        yield MinerClient(SigningClient(session, VALIDATOR), timeout=10)


class DatabaseOutage:
    """What a database restart does to the validator, from the moment an upload's commit
    has landed: every later statement fails with an operational error until ``end``."""

    def __init__(self, sessions: sessionmaker[Session], *, lose_the_commit_reply: bool) -> None:
        self.down = False
        self.committing_object = False
        self.engine = sessions.kw["bind"]
        self.sessions = sessions
        self.lose_reply = lose_the_commit_reply
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(sessions, "after_commit", self._committed)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.down:
            raise OperationalError(statement, None, ConnectionError("the server restarted"))
        if statement.startswith("UPDATE objects") and "committed_at" in statement:
            self.committing_object = True

    def _committed(self, _session: Session) -> None:
        if self.committing_object and not self.down:
            self.down = True
            if self.lose_reply:  # the commit landed, but its reply never came back
                raise OperationalError("COMMIT", None, ConnectionError("the server restarted"))

    def end(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.sessions, "after_commit", self._committed)
