"""Each adversary, a real miner process, is caught by the real challenger within the rounds
that ``1 - (1 - f) ** c`` predicts, its weight falls to 0, and honest miners keep theirs.

Ten miners on 127.0.0.2..11: three honest and one of each behaviour. An object of 10 default
segments (16 MiB, k=4, m=8) puts ~8 shards of 4 MiB on each miner. Every round challenges
up to ``BATCH`` shards per miner, ``LEAVES`` leaves each, within max(0.25 s, bytes / 100
MB/s). An honest batch answers in 5-40 ms here even with ten miners on two cores;
rebuilding one 4 MiB shard from 4 others takes ~80 ms, a batch of 8 about 0.6 s, and the
full-retrieval rechecks of its contained shards (all at once, one deadline for their total
size) need k times the bandwidth an honest miner needs.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aiohttp
import pytest
from bittensor_wallet import Keypair
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from erasure import ErasureParams
from protocol.signing import SigningClient
from tests.adversaries.process import MinerProcess, running_miners
from validator.challenger import ChallengePolicy, Challenger
from validator.challenges import rounds_to_detect
from validator.log_store import ChallengeLogStore
from validator.miner_client import MinerClient
from validator.models import Miner, Placement, User
from validator.placement import Candidate
from validator.scoring import availability, weights
from validator.uploads import Uploader, UploadOptions

VALIDATOR = Keypair.create_from_uri("//AdversaryHunter")
PARAMS = ErasureParams()  # production defaults: 4 of 8, 16 MiB segments, 16 KiB leaves
SHARD = PARAMS.segment_size // PARAMS.k
BATCH, LEAVES, RECHECKS = 8, 8, 3
POLICY = ChallengePolicy(
    batch=BATCH,
    leaves=LEAVES,
    floor=0.25,
    min_rate=100e6,
    retrieval_every=10**6,
    containment_rechecks=RECHECKS,
    capacity_window=60.0,
)
DROP, BITFLIP = 0.5, 0.25
HONEST = ["honest", "honest", "honest"]
ADVERSARIES = [
    f"drop:{DROP}",
    f"bitflip:{BITFLIP}",
    "wrongproof",
    "replay",
    "slow:1",
    "rebuild:4",
    f"fakecap:{2 * SHARD}",
]
CONFIDENCE = 0.999
MAX_ROUNDS = 8


@pytest.fixture(scope="module")
def miners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[MinerProcess]]:
    behaviours = HONEST + ADVERSARIES
    hosts = [f"127.0.0.{i + 2}" for i in range(len(behaviours))]
    with running_miners(
        behaviours, tmp_path_factory.mktemp("adversaries"), [VALIDATOR.ss58_address], hosts=hosts
    ) as started:
        yield started


@pytest.fixture
async def client() -> AsyncIterator[MinerClient]:
    async with aiohttp.ClientSession() as session:
        yield MinerClient(SigningClient(session, VALIDATOR), timeout=30)


def expected_rounds(behaviour: str, shards_held: int) -> int:
    """The round by which ``behaviour`` must show its first failure, with margins stated."""
    name, _, arg = behaviour.partition(":")
    if name == "drop":  # each of c = BATCH challenged shards was dropped with probability f
        return rounds_to_detect(float(arg), min(BATCH, shards_held), CONFIDENCE)
    if name == "bitflip":  # each of c = LEAVES challenged leaves was flipped with probability f
        return rounds_to_detect(float(arg), LEAVES, CONFIDENCE)
    if name == "replay":  # its first answer per shard is honest; a shard comes round again
        return math.ceil(shards_held / BATCH) + 1  # after the batch rotation
    return 1  # wrong proofs, lost capacity, slow or rebuilt answers show at once


async def test_every_adversary_is_caught_and_honest_weights_hold(
    miners: list[MinerProcess], sessions: sessionmaker[Session], client: MinerClient
) -> None:
    with sessions.begin() as session:
        user = User(name="owner", created_at=datetime.now(UTC))
        session.add(user)
        for m in miners:
            session.add(Miner(hotkey=m.hotkey, host=m.host, port=m.port, free_bytes=2**40))
        session.flush()
        owner = user.id
    candidates = [Candidate(m.hotkey, m.host, m.port, 2**40, 1.0) for m in miners]
    uploader = Uploader(sessions, client, lambda: candidates, rng=random.Random(7))
    data = random.Random(8).randbytes(10 * PARAMS.segment_size)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 2**20):
            yield data[i : i + 2**20]

    await uploader.upload(owner, "bait", body(), UploadOptions(PARAMS, encrypt=False))
    by_hotkey = {m.hotkey: m for m in miners}
    with sessions() as session:
        held: dict[str, int] = dict.fromkeys(by_hotkey, 0)
        for hotkey in session.scalars(
            select(Miner.hotkey).join(Placement, Placement.miner_id == Miner.id)
        ):
            held[hotkey] += 1
    assert all(held[m.hotkey] > 0 for m in miners), held

    checker = Challenger(sessions, client, ChallengeLogStore(sessions, VALIDATOR), POLICY)
    first_failure: dict[str, int] = {}
    for round_number in range(1, MAX_ROUNDS + 1):
        await checker.run_round()
        for entry in checker.log_store.iterate():
            behaviour = by_hotkey[entry.miner].behaviour
            # Timing adversaries show as timeouts; the rest as wrong or missing answers (a
            # busy machine can make anyone miss a deadline once: that is not their tell).
            tell = (
                {"timeout"} if behaviour.startswith(("slow", "rebuild")) else {"wrong", "missing"}
            )
            if entry.verdict in tell:
                first_failure.setdefault(behaviour, round_number)
        await asyncio.sleep(0)

    for behaviour in ADVERSARIES:
        hotkey = next(m.hotkey for m in miners if m.behaviour == behaviour)
        bound = expected_rounds(behaviour, held[hotkey])
        assert behaviour in first_failure, f"{behaviour} was never caught"
        assert first_failure[behaviour] <= bound, (behaviour, first_failure[behaviour], bound)

    standings = checker.standings()
    shares = weights(standings, disqualify_below=POLICY.disqualify_below)
    for m in miners:
        if m.behaviour == "honest":
            assert "honest" not in first_failure or _only_contained(checker, m.hotkey)
            assert availability(standings[m.hotkey]) == pytest.approx(1.0, abs=0.01)
            assert not standings[m.hotkey].disqualified
        else:
            assert shares[m.hotkey] < 0.01, (m.behaviour, shares[m.hotkey])
    honest = [m.hotkey for m in miners if m.behaviour == "honest"]
    assert sum(shares[h] for h in honest) > 0.97
    verified = {h: standings[h].verified_bytes for h in honest}
    total = sum(verified.values())
    for h in honest:  # honest miners split the weight by what they proved, nothing else
        assert shares[h] == pytest.approx(verified[h] / total, rel=0.05)
    with sessions() as session:
        honest_lost = session.scalar(
            select(Placement.id)
            .join(Miner, Miner.id == Placement.miner_id)
            .where(Miner.hotkey.in_(honest), Placement.state == "lost")
        )
    assert honest_lost is None


def _only_contained(checker: Challenger, hotkey: str) -> bool:
    """An honest miner may miss a deadline on a busy machine; containment absorbs it."""
    entries = [e for e in checker.log_store.iterate() if e.miner == hotkey]
    return all(e.verdict in {"pass", "timeout"} for e in entries)
