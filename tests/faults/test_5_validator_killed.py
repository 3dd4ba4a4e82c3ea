"""Scenario 5: the validator SIGKILLed in the middle of an upload, then restarted.

The client sees the connection drop; the object was ``pending`` and is never listed. At
start the validator abandons uploads a killed process left pending (``Uploader.recover``:
their rows go, and their miners are asked to drop the shards), which frees the name: a retry
of the same name succeeds. Everything committed before still reads back identical.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from subnet.gateway_client import GatewayError
from tests.faults.harness import Harness, MiB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_validator_killed_mid_upload(harness: Harness, http: aiohttp.ClientSession) -> None:
    size = 40 * MiB  # three segments: the first is usually recorded, with placements, by then
    path, sha256 = harness.make_file(size, "validator-killed")
    name = "validator-killed-mid-upload.bin"
    sent = 0
    killed = asyncio.Event()

    def on_bytes(count: int) -> None:
        nonlocal sent
        sent += count
        if sent >= 0.6 * size and not killed.is_set():
            harness.kill("validator0")
            killed.set()

    seen_listed: list[set[str]] = []

    async def watch() -> None:
        """List objects while the upload runs: the pending object must never show."""
        while not killed.is_set():
            with contextlib.suppress(aiohttp.ClientError, GatewayError):
                seen_listed.append(set(await harness.listed(http, "validator0")))
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    with pytest.raises((aiohttp.ClientError, GatewayError)) as failed:
        await harness.upload(http, "validator0", name, path, sha256, on_bytes=on_bytes)
    await watcher
    assert killed.is_set()
    harness.totals.notes["client saw, when the validator died"] = type(failed.value).__name__
    assert seen_listed, "the object list was never read during the upload"
    assert not [names for names in seen_listed if name in names]

    log_offset = harness.log_size("validator0")
    await harness.restart("validator0")
    assert "abandoned uploads interrupted by a restart" in harness.log_since(
        "validator0", log_offset
    )
    assert name not in await harness.listed(http, "validator0")
    await harness.check_objects(http)

    # The name is free again: the same upload, retried, commits.
    await harness.upload(http, "validator0", name, path, sha256)
    await harness.check_all(http)
