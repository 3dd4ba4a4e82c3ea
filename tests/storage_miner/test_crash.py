"""A miner SIGKILLed with 50 uploads in flight loses nothing it acknowledged.

Real processes: ``python -m subnet miner run`` is started, loaded, killed and restarted.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
from bittensor_wallet import Keypair

from protocol.signing import SigningClient
from protocol.wallet import create_wallet
from subnet.processes import free_port, running, start_subnet_command, wait_healthy
from tests.storage_miner.helpers import LEAF, shard

UPLOADS = 50
SHARD_SIZE = 1024 * 1024


@contextmanager
def miner_process(
    wallets: Path, data_dir: Path, port: int, validator: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    log = data_dir.parent / "miner.log"
    args = [
        "miner", "run", "--wallet-name", "crash", "--wallet-path", str(wallets),
        "--port", str(port), "--data-dir", str(data_dir), "--validators", validator,
    ]  # fmt: skip
    with running(start_subnet_command(args, log)) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)
        yield url, proc


async def slow(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 64 * 1024):
        await asyncio.sleep(0.02)
        yield data[i : i + 64 * 1024]


async def test_sigkill_during_50_uploads_keeps_every_acknowledged_shard(
    tmp_path: Path, validator_key: Keypair
) -> None:
    wallets, data_dir = tmp_path / "wallets", tmp_path / "miner"
    miner = create_wallet("crash", "default", wallets).ss58_address
    port = free_port()
    shards = [shard(SHARD_SIZE, seed=100 + i) for i in range(UPLOADS)]
    acknowledged: set[str] = set()

    with miner_process(wallets, data_dir, port, validator_key.ss58_address) as (url, proc):
        enough = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            signer = SigningClient(session, validator_key)

            async def upload(data: bytes, shard_id: str) -> None:
                async with signer.request_stream(
                    "PUT", f"{url}/v1/shards/{shard_id}?leaf_size={LEAF}", signed_for=miner,
                    content_hash=shard_id, body=slow(data),
                    headers={"Content-Length": str(len(data))},
                ) as response:  # fmt: skip
                    if response.status == 201:
                        acknowledged.add(shard_id)
                        if len(acknowledged) >= 5:
                            enough.set()

            tasks = [asyncio.create_task(upload(d, t.root.hex())) for d, t in shards]
            await asyncio.wait_for(enough.wait(), timeout=60)
            proc.send_signal(signal.SIGKILL)
            results = await asyncio.gather(*tasks, return_exceptions=True)
    assert 5 <= len(acknowledged) < UPLOADS, "the kill must land mid-flight"
    assert any(isinstance(r, Exception) for r in results)

    with miner_process(wallets, data_dir, port, validator_key.ss58_address) as (url, _):
        assert not list((data_dir / "incoming").iterdir()), "partial writes must be cleaned"
        async with aiohttp.ClientSession() as session:
            signer = SigningClient(session, validator_key)
            held = 0
            for data, tree in shards:
                sid = tree.root.hex()
                async with signer.request(
                    "GET", f"{url}/v1/shards/{sid}", signed_for=miner
                ) as response:
                    if sid in acknowledged:
                        assert response.status == 200, f"acknowledged shard {sid} was lost"
                    if response.status == 200:
                        assert await response.read() == data  # whole, never partial
                        held += len(data)
                    else:
                        assert response.status == 404
            async with session.get(f"{url}/v1/info") as response:
                info = await response.json()
    assert info["used"] == held  # nothing partial is counted
