"""Scenario 3: one shard corrupted, one truncated and one deleted on a miner's disk.

Downloads stay byte-identical (every share is hashed against its id; a bad or missing one
means another miner is asked). The damage is found (the miner's scrubber quarantines it, or
a challenge answers wrong or missing) and repaired: each share is rebuilt from k others and
placed on a new miner, with a signed ``repair`` entry in the log, which `subnet audit verify
--url` then checks end to end.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from protocol.signing import SigningClient
from tests.faults.harness import Harness
from validator.miner_client import MinerAddress, MinerClient, MinerError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LEAF = 16 * 1024


async def test_damaged_shards_are_read_around_then_repaired(
    harness: Harness, http: aiohttp.ClientSession
) -> None:
    victim = harness.miners[3]
    hotkey = harness.hotkey(victim)
    # Three shards of new objects: their segments have never been repaired, so miners not
    # holding one of their shares are free to take the rebuilt ones (this net has two).
    start = await harness.log_head(http, "validator0")
    before = harness.shard_files(victim, "validator0")
    fresh: dict[str, Path] = {}
    for i in range(12):
        path, sha256 = harness.make_file(300_000, "disk-damage")
        await harness.upload(http, "validator0", f"disk-damage/{i}.bin", path, sha256)
        # (Not a share some repair moved here meanwhile: its segment may have no spare.)
        moved = await harness.log(http, "validator0", after=start, kind="repair", miner=hotkey)
        files = harness.shard_files(victim, "validator0")
        new = set(files) - set(before) - {e["shard_id"] for e in moved}
        fresh = {sid: files[sid] for sid in sorted(new)}
        if len(fresh) >= 3:
            break
    chosen = list(fresh.items())[:3]
    assert len(chosen) == 3, f"{victim} was given {len(fresh)} shards of 12 new objects"
    after = await harness.log_head(http, "validator0")

    (corrupt, corrupt_path), (short, short_path), (gone, gone_path) = chosen
    data = bytearray(corrupt_path.read_bytes())
    for offset in range(0, len(data), LEAF):
        data[offset] ^= 0xFF  # every leaf: whichever are challenged, all are wrong
    corrupt_path.write_bytes(data)
    harness.fault("shard corrupted on disk")
    with short_path.open("r+b") as shard:
        shard.truncate(short_path.stat().st_size // 2)
    harness.fault("shard truncated on disk")
    gone_path.unlink()
    harness.fault("shard deleted from disk")

    # The truncated shard, asked for directly: the miner cannot send what it promised
    # (its index says the full size), so the reply must end at once, not leave us waiting.
    service = harness.net.service(victim)
    client = MinerClient(SigningClient(http, harness.net.keypair("validator0")), timeout=30)
    started = time.monotonic()
    with pytest.raises(MinerError):
        await client.get_shard(MinerAddress(hotkey, service.host, service.port), short)
    assert time.monotonic() - started < 5, "a truncated shard left the reader hanging"

    # Every object still reads back identical, at once.
    await harness.check_objects(http)

    # Found and repaired: a signed repair entry for each of the three shares.
    async def repaired() -> bool:
        repairs = await harness.log(http, "validator0", after=after, kind="repair")
        return {corrupt, short, gone} <= {e["shard_id"] for e in repairs}

    harness.totals.notes["disk damage found and repaired in, s"] = round(
        await harness.wait_until("the three shards repaired", repaired), 1
    )
    repairs = await harness.log(http, "validator0", after=after, kind="repair")
    for entry in repairs:
        if entry["shard_id"] in {corrupt, short, gone}:
            assert entry["verdict"] == "repaired"
            assert entry["miner"] != hotkey  # placed on another miner
            assert hotkey in entry["reason"]  # lost from the damaged one
    verified = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "subnet", "audit", "verify", "--url", harness.url("validator0")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK"), verified.stdout
    await harness.check_all(http)
