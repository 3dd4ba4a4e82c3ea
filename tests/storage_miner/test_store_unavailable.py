"""A store that cannot be reached mid-run: challenges get 503 store_unavailable (not a 500,
not a wrong answer) and /healthz turns 503 with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from protocol.signing import SigningClient
from storage_miner.service import MinerService
from storage_miner.store import ShardKey, StoreUnavailable
from tests.storage_miner.helpers import put, shard


async def test_a_challenge_to_an_unreachable_store_says_so(
    client: TestClient[Any, Any],
    signer: SigningClient,
    service: MinerService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, tree = shard(100_000)
    status, _ = await put(signer, client, service.hotkey, data, tree.root.hex())
    assert status == 201
    assert (await client.get("/healthz")).status == 200

    def down(_key: ShardKey, _leaf_size: int, _indices: Sequence[int]) -> list[bytes]:
        raise StoreUnavailable("store unavailable: S3 at 127.0.0.1:8333 unreachable (refused)")

    monkeypatch.setattr(service.store, "read_leaves", down)
    batch = {"challenges": [{"shard_id": tree.root.hex(), "nonce": "a", "indices": [0]}]}
    async with signer.request(
        "POST", client.make_url("/v1/challenges"), signed_for=service.hotkey, json=batch
    ) as response:
        assert response.status == 503
        body = await response.json()
    assert body["error"] == "store_unavailable"
    assert "store unavailable" in body["message"]
    health = await client.get("/healthz")
    assert health.status == 503
    assert "S3 at 127.0.0.1:8333 unreachable" in (await health.json())["store"]
