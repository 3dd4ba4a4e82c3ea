"""Scenario 1: m - k miners SIGKILLed at once, at rest and then with an upload in flight.

A segment stored whole has its m shares on m different miners, so any m - k of them may die
and every object still reads. An upload in flight when they die either commits (a failed
push moves to a replacement miner; a segment needs k + r receipts) or fails cleanly,
leaving nothing listed.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from subnet.gateway_client import GatewayError
from tests.faults.harness import Harness, MiB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_m_minus_k_miners_killed_at_rest(
    harness: Harness, http: aiohttp.ClientSession
) -> None:
    k, m, _ = harness.net.config.erasure
    victims = harness.miners[: m - k]
    harness.kill(*victims)
    # Read everything while they are dead: each segment still has at least k shares.
    await harness.check_objects(http)
    await harness.restart(*victims)
    await harness.check_all(http)


async def test_m_minus_k_miners_killed_mid_upload(
    harness: Harness, http: aiohttp.ClientSession
) -> None:
    k, m, _ = harness.net.config.erasure
    victims = harness.miners[-(m - k) :]
    before = set(harness.expected["validator0"])
    size = 40 * MiB  # three 16 MiB segments: some are pushed before the kill, some after
    path, sha256 = harness.make_file(size, "mid-upload")
    name = "miners-killed-mid-upload.bin"
    sent = 0

    def on_bytes(count: int) -> None:
        nonlocal sent
        sent += count
        if sent >= 0.4 * size and not killed.is_set():
            harness.kill(*victims)
            killed.set()

    killed = asyncio.Event()
    try:
        await harness.upload(http, "validator0", name, path, sha256, on_bytes=on_bytes)
        outcome = "committed"
    except GatewayError as exc:
        # A clean failure: a status and a reason, and no object left behind.
        assert exc.status == 503, exc
        assert exc.code in {"not_enough_receipts", "not_enough_miners"}, exc
        outcome = f"failed cleanly ({exc.code})"
    assert killed.is_set()
    harness.totals.notes["upload in flight when m - k miners died"] = outcome
    listed = await harness.listed(http, "validator0")
    assert (name in listed) == (outcome == "committed")

    # While they are still dead, everything committed before reads back. (The new object is
    # read after the restart: its receipts may come from miners that died just after.)
    await harness.check_objects(http, only=before)
    await harness.restart(*victims)
    await harness.check_all(http)
