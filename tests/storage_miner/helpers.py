from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from erasure import MerkleTree
from protocol.signing import SigningClient

LEAF = 16384


def shard(size: int, seed: int = 0) -> tuple[bytes, MerkleTree]:
    data = random.Random(seed).randbytes(size)
    return data, MerkleTree.build(data, LEAF)


async def chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def put(
    signer: SigningClient,
    client: TestClient[Any, Any],
    miner: str,
    data: bytes,
    shard_id: str,
    *,
    leaf_size: int = LEAF,
) -> tuple[int, dict[str, Any]]:
    async with signer.request_stream(
        "PUT",
        client.make_url(f"/v1/shards/{shard_id}?leaf_size={leaf_size}"),
        signed_for=miner,
        content_hash=shard_id,
        body=chunks(data),
        headers={"Content-Length": str(len(data))},
    ) as response:
        return response.status, await response.json()


async def error_of(response: ClientResponse) -> str:
    body = await response.json()
    return str(body["error"])
