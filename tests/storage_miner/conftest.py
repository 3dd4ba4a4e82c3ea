from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from bittensor_wallet import Keypair

from protocol.signing import SigningClient
from storage_miner.app import make_app
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.service import MinerService
from storage_miner.settings import MinerSettings
from tests.seaweedfs import seaweedfs


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def miner_key() -> Keypair:
    return Keypair.create_from_uri("//MinerOne")


@pytest.fixture(scope="session")
def validator_key() -> Keypair:
    return Keypair.create_from_uri("//ValidatorOne")


@pytest.fixture(scope="session")
def other_validator_key() -> Keypair:
    return Keypair.create_from_uri("//ValidatorTwo")


@pytest.fixture
def settings(tmp_path: Path, validator_key: Keypair, other_validator_key: Keypair) -> MinerSettings:
    return MinerSettings(
        data_dir=tmp_path / "miner",
        capacity=64 * 2**20,
        validators=(validator_key.ss58_address, other_validator_key.ss58_address),
        max_shard_size=8 * 2**20,
    )


@pytest.fixture
def service(settings: MinerSettings, miner_key: Keypair) -> Iterator[MinerService]:
    index = ShardIndex(settings.data_dir / "index.sqlite")
    yield MinerService(settings, miner_key, FsShardStore(settings.data_dir), index)
    index.close()


@pytest.fixture
async def client(service: MinerService, aiohttp_client: Any) -> TestClient[Any, Any]:
    # service first: set up before the app's client, so torn down after the app
    return await aiohttp_client(make_app(service, background=False))  # type: ignore[no-any-return]


@pytest.fixture
def signer(client: TestClient[Any, Any], validator_key: Keypair) -> SigningClient:
    return SigningClient(client.session, validator_key)


@pytest.fixture
def other_signer(client: TestClient[Any, Any], other_validator_key: Keypair) -> SigningClient:
    return SigningClient(client.session, other_validator_key)
