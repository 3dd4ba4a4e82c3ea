"""The validator's miner client against a real miner app, and against miners that lie."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from bittensor_wallet import Keypair

from erasure import MerkleProof, MerkleTree, hash_leaf
from erasure.merkle import verify_leaf_hashes
from protocol.signing import SigningClient
from protocol.wire import StorageReceipt, encode_frame
from storage_miner.app import make_app
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.service import MinerService
from storage_miner.settings import MinerSettings
from tests.seaweedfs import free_port
from validator.miner_client import Answered, MinerAddress, MinerClient, MinerError

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
    answers, [answered] = await client.challenge(
        miner, [{"shard_id": sid, "nonce": "n", "indices": [3, 1]}], 2 * LEAF + 1024
    )
    assert answers[0]["status"] == 200
    proof = MerkleProof.from_bytes(answered.proof)
    verify_leaf_hashes(tree.root, tree.leaf_count, [3, 1], list(answered.leaf_hashes), proof)
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


async def replying_miner(
    aiohttp_server: Any, body: bytes, *, chunked: bool = False
) -> MinerAddress:
    """A miner stand-in that answers every challenge batch with ``body`` (behaviour fake):
    with a Content-Length, or chunked, sent 64 KiB at a time."""

    async def challenges(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        if not chunked:
            response.content_length = len(body)
        await response.prepare(request)
        view = memoryview(body)
        for start in range(0, len(body), 65536):
            await response.write(view[start : start + 65536])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/challenges", challenges)
    server = await aiohttp_server(app)
    return MinerAddress(MINER.ss58_address, "127.0.0.1", server.port)


ASKED = [{"shard_id": f"{i:064x}", "nonce": "n", "indices": [0, 1]} for i in range(3)]
LEAVES = [bytes([i]) * LEAF for i in range(4)]
WELL_FORMED = encode_frame(
    {
        "answers": [
            {"status": 200, "leaves": 2},
            {"status": 404},
            {"status": 200, "leaves": 2},
        ]
    },
    [LEAVES[0], LEAVES[1], b"proof-0", LEAVES[2], LEAVES[3], b"proof-2"],
)


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_challenge_reply_is_read_as_it_arrives_leaves_kept_as_hashes(
    aiohttp_server: Any, client: MinerClient, chunked: bool
) -> None:
    address = await replying_miner(aiohttp_server, WELL_FORMED, chunked=chunked)
    answers, answered = await client.challenge(address, ASKED, 4 * LEAF + 1024)
    assert [a["status"] for a in answers] == [200, 404, 200]
    assert answered == [
        Answered((hash_leaf(LEAVES[0]), hash_leaf(LEAVES[1])), b"proof-0"),
        Answered((hash_leaf(LEAVES[2]), hash_leaf(LEAVES[3])), b"proof-2"),
    ]


async def test_evidence_stops_where_a_count_cannot_be_trusted(
    aiohttp_server: Any, client: MinerClient
) -> None:
    """After an answer with no usable count, where later answers' leaves start is unknown:
    nothing more is taken as evidence (the judge fails those answers)."""
    body = encode_frame(
        {
            "answers": [
                {"status": 200, "leaves": 1},
                {"status": 200, "leaves": "2"},
                {"status": 200, "leaves": 1},
            ]
        },
        [LEAVES[0], b"p0", LEAVES[1], LEAVES[2], b"p2"],
    )
    address = await replying_miner(aiohttp_server, body)
    _, answered = await client.challenge(address, ASKED, 4 * LEAF + 1024)
    assert answered == [Answered((hash_leaf(LEAVES[0]),), b"p0")]


def _frames_that_lie() -> dict[str, bytes]:
    meta = b'{"answers":[{"status":200,"leaves":2},{"status":404},{"status":404}],"blobs":[5]}'
    header = b"SNF1" + len(meta).to_bytes(4, "big")
    return {
        "empty": b"",
        "short_header": b"SNF1\x00",
        "not_a_frame": b"HTTP" + bytes(200),
        "metadata_past_the_end": b"SNF1" + (10**6).to_bytes(4, "big") + b"{}",
        "metadata_over_any_bound": b"SNF1" + (2**31).to_bytes(4, "big"),
        "metadata_not_json": b"SNF1" + (3).to_bytes(4, "big") + b"{{{",
        "no_blob_lengths": encode_frame({"answers": [{}, {}, {}]}, [])[:8] + b"{}",
        "blobs_cut_short": header + meta + b"abc",
        "bytes_after_the_blobs": header + meta + b"abcde" + b"more",
        "wrong_answer_count": encode_frame({"answers": [{"status": 404}]}, []),
        "blobs_over_the_limit": encode_frame(
            {"answers": [{"status": 200, "leaves": 40}, {}, {}]}, [LEAVES[0]] * 40 + [b"p"]
        ),
    }


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("lie", sorted(_frames_that_lie()))
async def test_challenge_replies_that_lie_are_bad_replies(
    aiohttp_server: Any, client: MinerClient, lie: str, chunked: bool
) -> None:
    body = _frames_that_lie()[lie]
    if lie == "no_blob_lengths":
        body = b"SNF1" + (2).to_bytes(4, "big") + b"{}"
    address = await replying_miner(aiohttp_server, body, chunked=chunked)
    with pytest.raises(MinerError) as caught:
        await client.challenge(address, ASKED, 4 * LEAF + 1024)
    assert caught.value.kind == "bad_reply", caught.value


async def test_a_big_challenge_reply_is_never_held_whole(
    aiohttp_server: Any, client: MinerClient
) -> None:
    """A round challenges many miners at once, each batch's reply ~8 MiB of leaves at the
    defaults: the validator keeps each leaf only as its hash, so what a reply costs it is a
    few chunks in flight, not the reply (it was held three times over: issue 20)."""
    count = 512
    body = encode_frame(
        {"answers": [{"status": 200, "leaves": count}]}, [LEAVES[1]] * count + [b"proof"]
    )
    address = await replying_miner(aiohttp_server, body)
    asked = [{"shard_id": "00" * 32, "nonce": "n", "indices": list(range(count))}]
    tracemalloc.start()
    try:
        _, [answered] = await client.challenge(address, asked, count * LEAF + 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answered.leaf_hashes == (hash_leaf(LEAVES[1]),) * count
    assert len(body) > 8 * 2**20
    assert peak < 2 * 2**20, f"{peak} bytes traced at the peak for a {len(body)}-byte reply"
