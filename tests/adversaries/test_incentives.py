"""Issue 13's cheating miners, each a real miner process, earn nothing; an honest but slow
one earns what an honest one does; nothing is placed or rebuilt on a miner that is out.

Ten miners on 127.0.0.2..11: three honest, one honest but slow (within its deadline), and
one of each class that earned credit before:

- ``nulls``: holds nothing, answers every batch with ``null`` entries (an answer that could
  not be judged left the old verdicts standing);
- ``noserve`` and ``burst``: prove everything, serve no read, or serve only right after a
  challenge batch (serving was checked only then, and a refusal was a timeout);
- ``hide``: loses half and lets those challenges time out (never punished);
- ``turn``: honest for a few seconds, then drops half (capacity averaged over an hour);
- ``late``: answers every batch after its deadline (containment laundered it).

Rounds run every ``GAP`` seconds with every miner's retrieval at a random moment between
them, the production schedule at a quicker pace.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aiohttp
import pytest
from bittensor_wallet import Keypair
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from erasure import ErasureParams
from protocol.signing import SigningClient
from tests.adversaries.process import MinerProcess, running_miners
from validator.challenger import ChallengePolicy, Challenger
from validator.gateway import Gateway
from validator.log_store import ChallengeLogStore
from validator.miner_client import MinerClient
from validator.models import Miner, Placement, Shard, User
from validator.repair import Repairer
from validator.scoring import weights
from validator.uploads import UploadOptions

VALIDATOR = Keypair.create_from_uri("//IncentiveAuditor")
PARAMS = ErasureParams(k=4, m=8, segment_size=2**20, leaf_size=16 * 2**10)
SEGMENTS = 12  # 96 shards of 256 KiB: about 10 on each miner
GAP = 1.5  # seconds between rounds; retrievals land at random within it
FLOOR = 1.0  # the answer deadline's floor: ``late`` answers after it, ``slow`` within it
POLICY = ChallengePolicy(
    batch=16,
    leaves=8,
    floor=FLOOR,
    min_rate=100e6,
    retrieval_every=1,
    retrieval_spread=GAP,
    containment_rechecks=3,
    capacity_window=60.0,
)
HONEST = ["honest", "honest", "honest"]
SLOW_BUT_HONEST = "slow:0.25"
CHEATERS = ["nulls", "noserve", "burst:0.3", "hide:0.5", "turn:0.5@4", "late:1.5"]
ROUNDS = 12


@pytest.fixture(scope="module")
def miners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[MinerProcess]]:
    behaviours = [*HONEST, SLOW_BUT_HONEST, *CHEATERS]
    hosts = [f"127.0.0.{i + 2}" for i in range(len(behaviours))]
    with running_miners(
        behaviours, tmp_path_factory.mktemp("cheaters"), [VALIDATOR.ss58_address], hosts=hosts
    ) as started:
        yield started


@pytest.fixture
async def client() -> AsyncIterator[MinerClient]:
    async with aiohttp.ClientSession() as session:
        yield MinerClient(SigningClient(session, VALIDATOR), timeout=30)


def acknowledged(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Bytes each miner signed a receipt for (stored or since lost), by hotkey."""
    with sessions() as session:
        rows = session.execute(
            select(Miner.hotkey, func.sum(Shard.size))
            .join(Placement, Placement.miner_id == Miner.id)
            .join(Shard, Shard.id == Placement.shard_id)
            .group_by(Miner.hotkey)
        ).all()
    return {hotkey: int(total) for hotkey, total in rows}


async def test_cheaters_earn_nothing_and_get_nothing_placed(
    miners: list[MinerProcess], sessions: sessionmaker[Session], client: MinerClient
) -> None:
    with sessions.begin() as session:
        user = User(name="owner", created_at=datetime.now(UTC))
        session.add(user)
        for m in miners:
            session.add(Miner(hotkey=m.hotkey, host=m.host, port=m.port, free_bytes=2**40))
        session.flush()
        owner = user.id
    gateway = Gateway(sessions, client)
    gateway.uploader.rng = random.Random(7)
    await gateway.refresh_miners()
    data = random.Random(8).randbytes(SEGMENTS * PARAMS.segment_size)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 2**20):
            yield data[i : i + 2**20]

    await gateway.uploader.upload(owner, "bait", body(), UploadOptions(PARAMS, encrypt=False))
    acked = acknowledged(sessions)
    assert all(acked.get(m.hotkey, 0) > 0 for m in miners), acked

    checker = Challenger(
        sessions, client, ChallengeLogStore(sessions, VALIDATOR), POLICY, rng=random.Random(9)
    )
    gateway.downloader.reads = checker.observe_read
    try:
        for _ in range(ROUNDS):
            await checker.run_round()
            await asyncio.sleep(GAP)
        await checker.run_round()  # records the last retrievals
    finally:
        await checker.close()

    by_behaviour = {m.behaviour: m.hotkey for m in miners}
    standings = checker.standings()
    shares = weights(standings, disqualify_below=POLICY.disqualify_below)
    honest = [m.hotkey for m in miners if m.behaviour == "honest"]
    per_byte = {h: shares[h] / acked[h] for h in acked}
    honest_rate = sum(per_byte[h] for h in honest) / len(honest)
    assert honest_rate > 0
    report = {
        m.behaviour: (
            round(per_byte[m.hotkey] / honest_rate, 3),
            standings[m.hotkey].disqualified,
            standings[m.hotkey].suspended,
        )
        for m in miners
    }
    for behaviour in CHEATERS:
        hotkey = by_behaviour[behaviour]
        # The aim: at most 5% of honest credit per byte acknowledged; here, all of it gone.
        assert per_byte[hotkey] <= 0.05 * honest_rate, (behaviour, report)
        assert standings[hotkey].disqualified or standings[hotkey].suspended, (behaviour, report)
    slow = by_behaviour[SLOW_BUT_HONEST]
    assert per_byte[slow] >= 0.95 * honest_rate, report
    for hotkey in [*honest, slow]:
        assert not standings[hotkey].disqualified and not standings[hotkey].suspended, report

    # Nothing new goes to a miner that is out: not a fresh upload, not a rebuilt share.
    out = {h for h, s in standings.items() if s.disqualified or s.suspended}
    await gateway.refresh_miners()
    assert {c.hotkey for c in gateway.candidates()}.isdisjoint(out)
    with sessions() as session:
        before = set(session.scalars(select(Placement.id)))
    second = random.Random(10).randbytes(4 * PARAMS.segment_size)

    async def again() -> AsyncIterator[bytes]:
        yield second

    fixer = Repairer(sessions, client, gateway.candidates, reads=checker.observe_read)
    await fixer.run_once()
    # Four miners are left (the honest ones): a 2-of-4 code fits on them.
    narrow = ErasureParams(k=2, m=4, segment_size=PARAMS.segment_size, leaf_size=PARAMS.leaf_size)
    await gateway.uploader.upload(owner, "after", again(), UploadOptions(narrow, encrypt=False))
    with sessions() as session:
        new = session.execute(
            select(Miner.hotkey)
            .join(Placement, Placement.miner_id == Miner.id)
            .where(Placement.id.not_in(before), Placement.state == "stored")
        ).all()
    assert new, "the repair and the upload placed shares"
    assert {hotkey for (hotkey,) in new}.isdisjoint(out)
