"""The miner under hostile input from a permitted validator (issue 14): what used to reach
``int()``, ``request.json()`` or a database unchecked is a 4xx JSON error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from protocol.signing import SigningClient
from storage_miner.service import MinerService
from tests.storage_miner.helpers import LEAF, error_of, put, shard

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"challenges": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", None, 400, "bad_challenge"),
        (b'{"challenges": []}', "application/json; charset=klingon", 415, "unsupported_charset"),
        (b'{"challenges": [NaN]}', None, 400, "bad_challenge"),
        (b"\xff\xfe", None, 400, "bad_challenge"),
        (
            json.dumps(
                {"challenges": [{"shard_id": "\ud800", "nonce": "n", "indices": [0]}]}
            ).encode(),
            None,
            400,
            "bad_challenge",
        ),
    ],
)
async def test_challenge_bodies_outside_json_are_a_4xx(
    client: Client,
    signer: SigningClient,
    service: MinerService,
    body: bytes,
    content_type: str | None,
    status: int,
    code: str,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    async with signer.request(
        "POST", client.make_url("/v1/challenges"), signed_for=service.hotkey, body=body,
        headers=headers,
    ) as r:  # fmt: skip
        assert (r.status, await error_of(r)) == (status, code)


async def test_a_huge_leaf_size_is_a_400_and_the_shard_can_still_be_stored(
    client: Client, signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(40_000, seed=3)
    for leaf_size in (10**30, -LEAF, 2**40):
        status, body = await put(signer, client, service.hotkey, data, tree.root.hex(),
                                 leaf_size=leaf_size)  # fmt: skip
        assert (status, body["error"]) == (400, "bad_upload")
    assert (await put(signer, client, service.hotkey, data, tree.root.hex()))[0] == 201
