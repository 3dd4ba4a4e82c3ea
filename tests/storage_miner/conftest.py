from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.seaweedfs import seaweedfs


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "miner"
