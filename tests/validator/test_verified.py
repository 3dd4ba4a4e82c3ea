"""Verified bytes are a running total (validator/verified.py), never summed over the rows in a
normal round. After every step of a sequence of real verdicts (pass, wrong, missing, timeouts
into containment and back out, and beyond it), disqualification, quarantine and repair, each
miner's total must equal a recount of its stored, last-passed placements from the rows."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from aiohttp.test_utils import TestServer
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from storage_miner.app import make_app
from storage_miner.scrubber import scrub_batch
from tests.validator.conftest import VALIDATOR, LiveMiner
from validator.challenger import ChallengePolicy, Challenger
from validator.gateway import Gateway
from validator.log_store import ChallengeLogStore
from validator.miner_client import MinerClient
from validator.models import Miner, Placement, Shard
from validator.repair import Repairer
from validator.uploads import Uploader, UploadOptions

from .test_challenger import shard_file
from .test_repair import PARAMS, on
from .test_uploads import stream

# Never recounted: every figure below comes from the running total alone. Disqualification
# at 0.5, not 0.95: the miner that loses one shard of its five stays in (its other shards
# keep their segments repairable), the one whose every shard is corrupt is out.
POLICY = ChallengePolicy(
    batch=64,
    leaves=8,
    floor=5.0,
    retrieval_every=10**9,
    verified_recount_rounds=0,
    disqualify_below=0.5,
)


def running(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return dict(session.execute(select(Miner.hotkey, Miner.verified_bytes)).all())


def from_rows(sessions: sessionmaker[Session]) -> dict[str, int]:
    """The definition, walked in Python over every placement."""
    with sessions() as session:
        totals = dict.fromkeys(session.scalars(select(Miner.hotkey)), 0)
        rows = session.execute(
            select(Miner.hotkey, Placement.state, Placement.last_verdict, Shard.size)
            .join(Miner, Miner.id == Placement.miner_id)
            .join(Shard, Shard.id == Placement.shard_id)
        )
        for hotkey, state, verdict, size in rows:
            if state == "stored" and verdict == "pass":
                totals[hotkey] += size
    return totals


def assert_exact(sessions: sessionmaker[Session], step: str) -> dict[str, int]:
    totals = running(sessions)
    assert totals == from_rows(sessions), step
    return totals


def disqualified(sessions: sessionmaker[Session], miner: LiveMiner) -> bool:
    with sessions() as session:
        row = session.scalar(select(Miner).where(Miner.hotkey == miner.key.ss58_address))
        assert row is not None
        return row.disqualified_at is not None


async def test_the_running_total_equals_a_recount_after_every_step(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    wrong, missing, back, silent, departed, rotten = live_miners[:6]
    up = Uploader(
        sessions, miner_client, lambda: [m.candidate for m in live_miners], rng=random.Random(1)
    )
    objects = []
    for n in range(2):
        data = random.Random(10 + n).randbytes(700_001)  # 3 segments of 6 shares each
        result = await up.upload(seeded, f"obj{n}", stream(data), UploadOptions(PARAMS))
        objects.append(result.object_id)
    checker = Challenger(sessions, miner_client, ChallengeLogStore(sessions, VALIDATOR), POLICY)

    report = await checker.run_round()
    assert dict(report.verdicts) == {"pass": 36}
    with sessions() as session:
        assert sum(assert_exact(sessions, "all pass").values()) == sum(
            session.scalars(select(Shard.size))
        )

    # A wrong answer (and disqualification), a missing shard, two miners gone silent.
    for placed in on(sessions, wrong):
        path = shard_file(wrong, placed.shard_id)
        data = bytearray(path.read_bytes())
        for offset in range(0, len(data), PARAMS.leaf_size):
            data[offset] ^= 0x01
        path.write_bytes(bytes(data))
    shard_file(missing, on(sessions, missing)[0].shard_id).unlink()
    host, port = back.server.host, back.server.port
    await back.server.close()
    await silent.server.close()
    report = await checker.run_round()
    assert (report.verdicts["wrong"], report.verdicts["missing"]) == (len(on(sessions, wrong)), 1)
    assert report.verdicts["contained"] > 0
    assert disqualified(sessions, wrong)
    totals = assert_exact(sessions, "wrong, missing, contained")
    assert totals[back.key.ss58_address] == totals[silent.key.ss58_address] == 0

    # One comes back: its full retrievals pass and clear containment; the other stays
    # silent through the rechecks until its placements are given up on.
    back.server = TestServer(make_app(back.service, background=False), host=host, port=port)
    await back.server.start_server()
    for round_ in range(POLICY.containment_rechecks):
        await checker.run_round()
        totals = assert_exact(sessions, f"recheck {round_}")
        assert totals[back.key.ss58_address] > 0
    assert {r.state for r in on(sessions, silent)} == {"lost"}

    # A miner leaves the metagraph and a scrubber quarantines a shard: repair marks what it
    # rebuilds lost, with the earlier losses, on the miners still here.
    with sessions.begin() as session:
        row = session.scalar(select(Miner).where(Miner.hotkey == departed.key.ss58_address))
        assert row is not None
        row.active, row.uid, row.deregistered_at = False, None, datetime.now(UTC)
    departed_before = totals[departed.key.ss58_address]
    assert departed_before > 0
    bad = on(sessions, rotten)[0]
    path = shard_file(rotten, bad.shard_id)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    scrubbed = await asyncio.to_thread(scrub_batch, rotten.service.store, rotten.service.index, 100)
    assert scrubbed.quarantined == (bad.shard_id,)
    here = [m for m in live_miners if m not in (silent, departed)]
    fixer = Repairer(
        sessions,
        miner_client,
        lambda: [m.candidate for m in here],
        unseen_after=3600,
        retry_after=0,
        rng=random.Random(3),
    )
    report = await fixer.run_once()
    assert report.quarantined == 1
    assert report.shards_rebuilt > 0
    totals = assert_exact(sessions, "quarantine and repair")
    # (Segments that lost more than m - k shares above are left alone: unrepairable.)
    assert totals[departed.key.ss58_address] < departed_before

    # The rebuilt placements pass their first challenge and start to count.
    before = sum(totals.values())
    await checker.run_round()
    assert sum(assert_exact(sessions, "rebuilt ones pass").values()) > before

    # Deleting an object takes what its placements counted off before they go by cascade.
    before = sum(assert_exact(sessions, "before a delete").values())
    await Gateway(sessions, miner_client).delete(seeded, objects[0])
    assert sum(assert_exact(sessions, "after a delete").values()) < before

    # A total gone wrong behind the writers' backs (here: set by hand) is mended by the
    # challenger's recount, which its first round does.
    with sessions.begin() as session:
        session.execute(update(Miner).values(verified_bytes=Miner.verified_bytes + 12345))
    assert running(sessions) != from_rows(sessions)
    recounting = Challenger(
        sessions,
        miner_client,
        checker.log_store,
        ChallengePolicy(batch=64, leaves=8, floor=5.0, retrieval_every=10**9),
    )
    await recounting.run_round()  # its first round recounts
    assert_exact(sessions, "recount after a drift")
