"""The miner dashboard's challenge history survives a restart of a real miner process
(``python -m subnet miner run``, stopped with SIGTERM and started again on its data)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from bittensor_wallet import Keypair

from protocol.signing import SigningClient
from protocol.wallet import create_wallet
from subnet.processes import free_port
from tests.dashboard.figures import figures
from tests.storage_miner.helpers import LEAF, shard
from tests.storage_miner.test_crash import miner_process


async def challenge_history(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    async with http.get(f"{url}/dashboard/challenges", params={"window": "7d"}) as response:
        assert response.status == 200
        return figures(await response.text())


async def test_the_challenge_history_survives_a_restart(
    tmp_path: Path, validator_key: Keypair
) -> None:
    wallets, data_dir = tmp_path / "wallets", tmp_path / "miner"
    miner = create_wallet("crash", "default", wallets).ss58_address
    port = free_port()
    data, tree = shard(4 * LEAF, seed=7)
    root = tree.root.hex()
    async with aiohttp.ClientSession() as http:
        signer = SigningClient(http, validator_key)
        with miner_process(wallets, data_dir, port, validator_key.ss58_address) as (url, _):
            async with signer.request_stream(
                "PUT",
                f"{url}/v1/shards/{root}?leaf_size={LEAF}",
                signed_for=miner,
                content_hash=root,
                body=data,
                headers={"Content-Length": str(len(data))},
            ) as response:
                assert response.status == 201
            for nonce in ("a", "b", "c"):  # two proven, one unknown shard: 3 batches of 2
                batch = {
                    "challenges": [
                        {"shard_id": root, "nonce": nonce, "indices": [0, 1]},
                        {"shard_id": "ab" * 32, "nonce": nonce, "indices": [0]},
                    ]
                }
                async with signer.request(
                    "POST", f"{url}/v1/challenges", signed_for=miner, json=batch
                ) as response:
                    assert response.status == 200
            before = await challenge_history(http, url)
        assert (before["answered"], before["asked"]) == ("3", "6")

        with miner_process(wallets, data_dir, port, validator_key.ss58_address) as (url, _):
            after = await challenge_history(http, url)
            assert (after["answered"], after["asked"]) == ("3", "6")
            async with signer.request(
                "POST",
                f"{url}/v1/challenges",
                signed_for=miner,
                json={"challenges": [{"shard_id": root, "nonce": "d", "indices": [2]}]},
            ) as response:
                assert response.status == 200
            grown = await challenge_history(http, url)
        assert (grown["answered"], grown["asked"]) == ("4", "7")  # added to, not replaced

        with miner_process(wallets, data_dir, port, validator_key.ss58_address) as (url, _):
            again = await challenge_history(http, url)
        assert (again["answered"], again["asked"]) == ("4", "7")
