from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.db import make_engine, upgrade
from chain.genesis import Genesis
from chain.state import ChainParams, LocalChain
from tests.db import DATABASES, database_url

OWNER = "owner-hotkey"


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chain.sqlite'}"


def open_chain(
    url: str, genesis: Genesis, params: ChainParams | None = None
) -> Iterator[LocalChain]:
    upgrade(url)
    engine = make_engine(url)
    chain = LocalChain(engine, params or ChainParams())
    chain.initialise(genesis)
    try:
        yield chain
    finally:
        engine.dispose()
