"""The whole miner API with the S3 backend, against a real SeaweedFS."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from bittensor_wallet import Keypair

from erasure import MerkleProof, verify
from protocol.signing import SigningClient
from protocol.wire import decode_frame
from storage_miner.app import make_app
from storage_miner.index import ShardIndex
from storage_miner.runner import build_store
from storage_miner.service import MinerService
from storage_miner.settings import MinerSettings
from tests.storage_miner.helpers import LEAF, put, shard


async def test_store_read_challenge_delete_through_s3(
    aiohttp_client: Any,
    settings: MinerSettings,
    miner_key: Keypair,
    validator_key: Keypair,
    s3_endpoint: str,
) -> None:
    s3 = replace(
        settings,
        backend="s3",
        s3_endpoint=s3_endpoint,
        s3_bucket=f"miner-{secrets.token_hex(4)}",
        s3_access_key="any",
        s3_secret_key="any",
    )
    index = ShardIndex(s3.data_dir / "index.sqlite")
    service = MinerService(s3, miner_key, build_store(s3), index)
    client = await aiohttp_client(make_app(service, background=False))
    signer = SigningClient(client.session, validator_key)
    data, tree = shard(5 * LEAF + 77, seed=42)
    sid = tree.root.hex()

    status, _ = await put(signer, client, service.hotkey, data, sid)
    assert status == 201
    assert not list((s3.data_dir / "incoming").iterdir())  # staging cleaned after the PUT
    url = client.make_url(f"/v1/shards/{sid}")
    async with signer.request(
        "GET", url, signed_for=service.hotkey, headers={"Range": "bytes=100-20000"}
    ) as r:
        assert (r.status, await r.read()) == (206, data[100:20001])
    challenge = {"challenges": [{"shard_id": sid, "nonce": "s3", "indices": [5, 1]}]}
    async with signer.request(
        "POST", client.make_url("/v1/challenges"), signed_for=service.hotkey, json=challenge
    ) as r:
        meta, blobs = decode_frame(await r.read())
    assert meta["answers"][0]["status"] == 200
    verify(tree.root, tree.leaf_count, [5, 1], blobs[:2], MerkleProof.from_bytes(blobs[2]))
    async with signer.request("DELETE", url, signed_for=service.hotkey) as r:
        assert r.status == 202
    async with signer.request("GET", url, signed_for=service.hotkey) as r:
        assert r.status == 404
    index.close()
