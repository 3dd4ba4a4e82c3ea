"""The miner's dashboard against a real miner on loopback: the page's figures are the API's."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from protocol.signing import SigningClient
from storage_miner.service import MinerService
from tests.dashboard.figures import figures
from tests.storage_miner.helpers import put, shard


async def test_page_shows_what_info_says(
    client: TestClient[Any, Any], signer: SigningClient, service: MinerService
) -> None:
    data, tree = shard(100_000)
    status, _ = await put(signer, client, service.hotkey, data, tree.root.hex())
    assert status == 201
    batch = {
        "challenges": [
            {"shard_id": tree.root.hex(), "nonce": "a", "indices": [0, 1]},
            {"shard_id": "ab" * 32, "nonce": "b", "indices": [0]},
        ]
    }
    async with signer.request(
        "POST", client.make_url("/v1/challenges"), signed_for=service.hotkey, json=batch
    ) as response:
        assert response.status == 200

    page = await client.get("/")
    assert page.status == 200
    assert float(page.headers["X-Render-Ms"]) >= 0  # reported; bench.dashboard measures it
    html = await page.text()
    info = await (await client.get("/v1/info")).json()
    shown = figures(html)
    for key in ("capacity", "used", "free", "shards", "quarantined", "trashed"):
        assert shown[key] == str(info[key]), key
    assert shown["answered"] == "1"
    assert shown["asked"] == "2"
    assert shown["bytes_proven"] == str(2 * 16384)
    assert shown["store_ok"] == "1"
    assert signer.hotkey[:6] in html  # the validator that called is listed
    assert "failing challenges: 1 of 2" in html
    assert "not on a chain" in html

    for panel in ("space", "challenges", "validators", "quarantine", "earnings", "alerts"):
        part = await client.get(f"/dashboard/{panel}?window=24h")
        assert part.status == 200, panel
    assert figures(await (await client.get("/dashboard/space")).text())["used"] == str(info["used"])
    assert (await client.get("/dashboard/nope")).status == 404
    js = await client.get("/static/dashboard/uPlot.iife.min.js")
    assert js.status == 200
    assert js.content_type == "text/javascript"
