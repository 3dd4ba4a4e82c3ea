"""The validator's miner client against a real miner app, and against miners that lie."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from bittensor_wallet import Keypair

from erasure import MerkleProof, MerkleTree, verify
from protocol.http import SigningClient
from protocol.wire import StorageReceipt
from storage_miner.app import make_app
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.service import MinerService
from storage_miner.settings import MinerSettings
from tests.seaweedfs import free_port
from validator.miner_client import MinerAddress, MinerClient, MinerError

LEAF = 16384
MINER = Keypair.create_from_uri("//ClientTestMiner")
VALIDATOR = Keypair.create_from_uri("//ClientTestValidator")


@pytest.fixture
async def miner(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[MinerAddress]:
    settings = MinerSettings(data_dir=tmp_path, validators=(VALIDATOR.ss58_address,))
    index = ShardIndex(tmp_path / "index.sqlite")
    service = MinerService(settings, MINER, FsShardStore(tmp_path), index)
    server = await aiohttp_server(make_app(service, background=False))
    yield MinerAddress(MINER.ss58_address, "127.0.0.1", server.port)
    index.close()


@pytest.fixture
async def client() -> AsyncIterator[MinerClient]:
    async with aiohttp.ClientSession() as session:
        yield MinerClient(SigningClient(session, VALIDATOR), timeout=10)


def shard(size: int) -> tuple[bytes, MerkleTree]:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    return data, MerkleTree.build(data, LEAF)


async def test_round_trip_push_fetch_challenge_delete(
    miner: MinerAddress, client: MinerClient
) -> None:
    data, tree = shard(3 * LEAF + 5)
    sid = tree.root.hex()
    pieces = [data[:LEAF], data[LEAF:]]  # shards arrive as zfec's stripe pieces
    receipt = await client.put_shard(miner, sid, pieces, len(data), LEAF)
    assert (receipt.miner, receipt.shard_id, receipt.size) == (miner.hotkey, sid, len(data))
    assert await client.get_shard(miner, sid) == data
    assert await client.get_shard(miner, sid, start=10, end=30) == data[10:30]
    answers, blobs = await client.challenge(
        miner, [{"shard_id": sid, "nonce": "n", "indices": [3, 1]}], 2 * LEAF + 1024
    )
    assert answers[0]["status"] == 200
    verify(tree.root, tree.leaf_count, [3, 1], blobs[:2], MerkleProof.from_bytes(blobs[2]))
    await client.delete_shard(miner, sid)
    with pytest.raises(MinerError) as caught:
        await client.get_shard(miner, sid)
    assert caught.value.kind == "refused"


async def test_wrong_hotkey_and_dead_miner_are_reported(
    miner: MinerAddress, client: MinerClient
) -> None:
    data, tree = shard(1000)
    impostor = dataclasses.replace(miner, hotkey=Keypair.create_from_uri("//Other").ss58_address)
    with pytest.raises(MinerError) as caught:
        await client.put_shard(impostor, tree.root.hex(), [data], len(data), LEAF)
    assert caught.value.kind == "refused"  # the miner refuses a request signed for another
    dead = dataclasses.replace(miner, port=free_port())
    with pytest.raises(MinerError) as caught:
        await client.put_shard(dead, tree.root.hex(), [data], len(data), LEAF)
    assert caught.value.kind == "unreachable"


async def lying_miner(aiohttp_server: Any, receipt_of: Any) -> MinerAddress:
    """A miner process stand-in whose receipts lie (behaviour fake, not our code mocked)."""

    async def put(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"receipt": receipt_of(request.match_info["sid"])}, status=201)

    app = web.Application()
    app.router.add_put("/v1/shards/{sid}", put)
    server = await aiohttp_server(app)
    return MinerAddress(MINER.ss58_address, "127.0.0.1", server.port)


@pytest.mark.parametrize("lie", ["other_signer", "other_size", "other_validator", "unsigned"])
async def test_receipts_that_lie_are_refused(
    aiohttp_server: Any, client: MinerClient, lie: str
) -> None:
    data, tree = shard(2000)

    def receipt_of(sid: str) -> dict[str, Any]:
        base = StorageReceipt(MINER.ss58_address, VALIDATOR.ss58_address, sid, len(data), sid, 1.0)
        if lie == "other_size":
            return base.__class__(**{**base.to_dict(), "size": 1}).signed_by(MINER).to_dict()
        if lie == "other_validator":
            other = Keypair.create_from_uri("//Else").ss58_address
            return dataclasses.replace(base, validator=other).signed_by(MINER).to_dict()
        if lie == "unsigned":
            return base.to_dict()
        forger = Keypair.create_from_uri("//Forger")
        signed = dataclasses.replace(base, miner=forger.ss58_address).signed_by(forger)
        return dataclasses.replace(signed, miner=MINER.ss58_address).to_dict()

    address = await lying_miner(aiohttp_server, receipt_of)
    with pytest.raises(MinerError) as caught:
        await client.put_shard(address, tree.root.hex(), [data], len(data), LEAF)
    assert caught.value.kind == "bad_reply"
