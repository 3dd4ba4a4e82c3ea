"""The miner's HTTP API on a real loopback server, driven by signed validator requests."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from bittensor_wallet import Keypair
from yarl import URL

from erasure import MerkleProof, verify
from protocol.epistula import sign_headers
from protocol.signing import SigningClient, wall_clock_ms
from protocol.wire import StorageReceipt, decode_frame
from storage_miner.scrubber import scrub_batch
from storage_miner.service import MinerService
from tests.storage_miner.helpers import LEAF, error_of, put, shard

Client = TestClient[Any, Any]


def leftovers(service: MinerService) -> list[Path]:
    root = service.settings.data_dir
    return list((root / "incoming").iterdir()) + [
        p for p in (root / "shards").rglob("*") if p.is_file()
    ]


async def test_store_returns_a_signed_receipt_and_is_idempotent(
    client: Client, signer: SigningClient, service: MinerService, validator_key: Keypair
) -> None:
    data, tree = shard(3 * LEAF + 11)
    status, body = await put(signer, client, service.hotkey, data, tree.root.hex())
    assert status == 201
    assert body["created"] is True
    receipt = StorageReceipt.from_dict(body["receipt"])
    receipt.verify()
    assert receipt.miner == service.hotkey
    assert receipt.validator == validator_key.ss58_address
    assert (receipt.shard_id, receipt.root, receipt.size) == (tree.root.hex(),) * 2 + (len(data),)
    assert service.index.used_bytes == len(data)

    status, again = await put(signer, client, service.hotkey, data, tree.root.hex())
    assert status == 200
    assert again["created"] is False
    assert service.index.used_bytes == len(data)


async def test_a_shard_lost_behind_the_index_reads_as_404_not_a_cut_body(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(100_000, seed=9)
    await put(signer, client, service.hotkey, data, tree.root.hex())
    for path in (service.settings.data_dir / "shards").rglob(tree.root.hex()):
        path.unlink()  # the disk lost it; the index still lists it
    url = client.make_url(f"/v1/shards/{tree.root.hex()}")
    async with signer.request("GET", url, signed_for=service.hotkey) as r:
        assert r.status == 404
        assert await error_of(r) == "not_found"


async def test_read_whole_range_suffix_and_head(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(100_000, seed=1)
    await put(signer, client, service.hotkey, data, tree.root.hex())
    url = client.make_url(f"/v1/shards/{tree.root.hex()}")
    async with signer.request("GET", url, signed_for=service.hotkey) as r:
        assert r.status == 200
        assert await r.read() == data
    async with signer.request(
        "GET", url, signed_for=service.hotkey, headers={"Range": "bytes=10-99"}
    ) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 10-99/{len(data)}"
        assert await r.read() == data[10:100]
    async with signer.request(
        "GET", url, signed_for=service.hotkey, headers={"Range": "bytes=-500"}
    ) as r:
        assert r.status == 206
        assert await r.read() == data[-500:]
    async with signer.request(
        "GET", url, signed_for=service.hotkey, headers={"Range": "bytes=200000-"}
    ) as r:
        assert r.status == 416
    async with signer.request("HEAD", url, signed_for=service.hotkey) as r:
        assert r.status == 200
        assert r.content_length == len(data)


async def test_challenge_answers_verify_against_the_validators_own_root(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(20 * LEAF + 3, seed=2)
    await put(signer, client, service.hotkey, data, tree.root.hex())
    missing = "ee" * 32
    request = {
        "challenges": [
            {"shard_id": tree.root.hex(), "nonce": "n1", "indices": [20, 0, 7]},
            {"shard_id": missing, "nonce": "n2", "indices": [0]},
            {"shard_id": tree.root.hex(), "nonce": "n3", "indices": [21]},
        ]
    }
    async with signer.request(
        "POST", client.make_url("/v1/challenges"), signed_for=service.hotkey, json=request
    ) as r:
        assert r.status == 200
        meta, blobs = decode_frame(await r.read())
    first, lost, out_of_range = meta["answers"]
    assert first["status"] == 200
    assert first["leaves"] == 3
    leaves, proof = blobs[:3], MerkleProof.from_bytes(blobs[3])
    verify(tree.root, tree.leaf_count, [20, 0, 7], leaves, proof)
    assert (lost["status"], lost["error"]) == (404, "not_found")
    assert out_of_range["status"] == 400
    assert "out of range" in out_of_range["error"]


async def test_delete_trashes_and_a_restore_within_grace_revives(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(5000, seed=3)
    await put(signer, client, service.hotkey, data, tree.root.hex())
    url = client.make_url(f"/v1/shards/{tree.root.hex()}")
    async with signer.request("DELETE", url, signed_for=service.hotkey) as r:
        assert r.status == 202
    async with signer.request("GET", url, signed_for=service.hotkey) as r:
        assert r.status == 404
    assert service.index.used_bytes == len(data)  # held until the grace period ends
    status, body = await put(signer, client, service.hotkey, data, tree.root.hex())
    assert (status, body["created"]) == (201, True)
    async with signer.request("GET", url, signed_for=service.hotkey) as r:
        assert await r.read() == data


async def test_trash_is_purged_after_the_grace_period(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(5000, seed=4)
    await put(signer, client, service.hotkey, data, tree.root.hex())
    async with signer.request(
        "DELETE", client.make_url(f"/v1/shards/{tree.root.hex()}"), signed_for=service.hotkey
    ) as r:
        assert r.status == 202
    assert await service.purge_expired() == 0  # still in grace
    service.clock = lambda: 10**10
    assert await service.purge_expired() == 1
    assert service.index.used_bytes == 0
    assert not list((service.settings.data_dir / "trash").rglob("*.tree"))


async def test_another_validator_gets_403_on_every_route(
    client: Client, signer: SigningClient, other_signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(4000, seed=5)
    await put(signer, client, service.hotkey, data, tree.root.hex())
    url = client.make_url(f"/v1/shards/{tree.root.hex()}")
    for method in ("GET", "DELETE"):
        async with other_signer.request(method, url, signed_for=service.hotkey) as r:
            assert r.status == 403
            assert await error_of(r) == "not_your_shard"
    challenge = {"challenges": [{"shard_id": tree.root.hex(), "nonce": "x", "indices": [0]}]}
    async with other_signer.request(
        "POST", client.make_url("/v1/challenges"), signed_for=service.hotkey, json=challenge
    ) as r:
        meta, _ = decode_frame(await r.read())
    assert meta["answers"][0]["status"] == 403


async def test_unsigned_unknown_stale_and_replayed_requests_are_refused(
    client: Client, service: MinerService, validator_key: Keypair
) -> None:
    url = f"/v1/shards/{'ab' * 32}"
    async with client.get(url) as r:
        assert (r.status, await error_of(r)) == (401, "missing_header")
    stranger = SigningClient(client.session, Keypair.create_from_uri("//Stranger"))
    async with stranger.request("GET", client.make_url(url), signed_for=service.hotkey) as r:
        assert (r.status, await error_of(r)) == (403, "unknown_hotkey")
    stale = sign_headers(
        validator_key, body_hash=hashlib.sha256(b"").hexdigest(),
        signed_for=service.hotkey, now_ms=wall_clock_ms() - 60_000,
    )  # fmt: skip
    async with client.get(url, headers=stale) as r:
        assert (r.status, await error_of(r)) == (401, "stale_timestamp")
    fresh = sign_headers(
        validator_key, body_hash=hashlib.sha256(b"").hexdigest(),
        signed_for=service.hotkey, now_ms=wall_clock_ms(),
    )  # fmt: skip
    async with client.get(url, headers=fresh) as r:
        assert r.status == 404
    async with client.get(url, headers=fresh) as r:
        assert (r.status, await error_of(r)) == (401, "replayed_uuid")
    forged = sign_headers(
        Keypair.create_from_uri("//Forger"), body_hash=hashlib.sha256(b"").hexdigest(),
        signed_for=service.hotkey, now_ms=wall_clock_ms(),
    )  # fmt: skip
    forged["Epistula-Signed-By"] = validator_key.ss58_address  # claims to be the validator
    async with client.get(url, headers=forged) as r:
        assert (r.status, await error_of(r)) == (401, "bad_signature")


@pytest.mark.parametrize("bad_id", ["..%2F..%2Fetc%2Fpasswd", "AB" * 32, "ab" * 31, "zz" * 32])
async def test_ids_that_are_not_hashes_get_400(
    client: Client, signer: SigningClient, service: MinerService, bad_id: str
) -> None:
    url = URL(f"{client.make_url('/')}v1/shards/{bad_id}", encoded=True)
    async with signer.request("GET", url, signed_for=service.hotkey) as r:
        assert (r.status, await error_of(r)) == (400, "invalid_shard_id")


async def test_forged_body_leaves_nothing_behind(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(3 * LEAF, seed=6)
    forged = bytes([data[0] ^ 1]) + data[1:]
    status, body = await put(signer, client, service.hotkey, forged, tree.root.hex())
    assert (status, body["error"]) == (401, "body_mismatch")
    assert leftovers(service) == []
    assert service.index.used_bytes == 0


async def test_declared_hash_must_be_the_shard_id(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(1000, seed=7)
    status, _ = await put(signer, client, service.hotkey, data, tree.root.hex())
    assert status == 201
    other, other_tree = shard(1000, seed=8)
    async with signer.request_stream(
        "PUT", client.make_url(f"/v1/shards/{other_tree.root.hex()}?leaf_size={LEAF}"),
        signed_for=service.hotkey, content_hash=tree.root.hex(), body=other,
    ) as r:  # fmt: skip
        assert (r.status, await error_of(r)) == (400, "hash_mismatch")


async def test_oversized_and_over_capacity_uploads_are_refused_cleanly(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    big, big_tree = shard(9 * 2**20, seed=9)  # max_shard_size is 8 MiB
    status, body = await put(signer, client, service.hotkey, big, big_tree.root.hex())
    assert (status, body["error"]) == (413, "shard_too_large")
    fits = [shard(7 * 2**20, seed=10 + i) for i in range(9)]  # capacity is 64 MiB
    statuses = []
    for data, tree in fits:
        status, body = await put(signer, client, service.hotkey, data, tree.root.hex())
        statuses.append(status)
    assert statuses == [201] * 9
    data, tree = shard(2 * 2**20, seed=30)
    status, body = await put(signer, client, service.hotkey, data, tree.root.hex())
    assert (status, body["error"]) == (507, "insufficient_storage")
    assert "free" in body["message"]
    assert service.index.used_bytes == 9 * 7 * 2**20
    assert not list((service.settings.data_dir / "incoming").iterdir())


async def test_truncated_body_is_refused(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(50_000, seed=11)
    async with signer.request_stream(
        "PUT", client.make_url(f"/v1/shards/{tree.root.hex()}?leaf_size={LEAF}"),
        signed_for=service.hotkey, content_hash=tree.root.hex(), body=data[:20_000],
        headers={"Content-Length": "20000"},
    ) as r:  # fmt: skip
        assert r.status == 401  # 20 000 bytes hash to another root
    for query in ("", "?leaf_size=1000", "?leaf_size=abc"):
        async with signer.request_stream(
            "PUT", client.make_url(f"/v1/shards/{tree.root.hex()}{query}"),
            signed_for=service.hotkey, content_hash=tree.root.hex(), body=data,
        ) as r:  # fmt: skip
            assert (r.status, await error_of(r)) == (400, "bad_upload")
    assert service.index.used_bytes == 0


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"challenges": []}',
        b'{"challenges": [{"shard_id": 1, "nonce": "n", "indices": [0]}]}',
        b'{"challenges": [{"shard_id": "x", "nonce": "n", "indices": ["0"]}]}',
        b'{"challenges": [{"shard_id": "x", "nonce": "n"}]}',
        b'{"wrong": 1}',
    ],
)
async def test_malformed_challenge_json_gets_400(
    client: Client, signer: SigningClient, service: MinerService, payload: bytes
) -> None:
    async with signer.request(
        "POST", client.make_url("/v1/challenges"), signed_for=service.hotkey, body=payload
    ) as r:
        assert (r.status, await error_of(r)) == (400, "bad_challenge")


async def test_info_health_and_metrics_are_public(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(1234, seed=12)
    await put(signer, client, service.hotkey, data, tree.root.hex())
    async with client.get("/v1/info") as r:
        info = await r.json()
    assert info["hotkey"] == service.hotkey
    assert (info["used"], info["shards"], info["capacity"]) == (1234, 1, 64 * 2**20)
    assert info["free"] == 64 * 2**20 - 1234
    assert isinstance(info["disk_free"], int)  # the disk under data_dir, beside capacity
    async with client.get("/healthz") as r:
        assert r.status == 200
    async with client.get("/metrics") as r:
        text = await r.text()
    assert "miner_bytes_stored 1234.0" in text
    assert 'miner_requests_total{method="PUT",route="/v1/shards/{shard_id}",status="201"}' in text


async def test_quarantined_shards_are_listed_for_their_validator_only(
    client: Client, signer: SigningClient, other_signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(3 * LEAF, seed=13)
    await put(signer, client, service.hotkey, data, tree.root.hex())
    path = service.settings.data_dir / "shards"
    (shard_file,) = [p for p in path.rglob("*") if p.is_file() and not p.suffix]
    shard_file.write_bytes(b"rotten" + shard_file.read_bytes()[6:])
    result = await asyncio.to_thread(scrub_batch, service.store, service.index, 10)
    assert result.quarantined == (tree.root.hex(),)
    async with signer.request(
        "GET", client.make_url("/v1/quarantine"), signed_for=service.hotkey
    ) as r:
        listed = (await r.json())["quarantined"]
    assert [q["shard_id"] for q in listed] == [tree.root.hex()]
    async with other_signer.request(
        "GET", client.make_url("/v1/quarantine"), signed_for=service.hotkey
    ) as r:
        assert (await r.json())["quarantined"] == []
    async with signer.request(
        "GET", client.make_url(f"/v1/shards/{tree.root.hex()}"), signed_for=service.hotkey
    ) as r:
        assert r.status == 404  # never served as good
