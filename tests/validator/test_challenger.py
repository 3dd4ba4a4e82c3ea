"""The challenger against eight real miner servers: verdicts, containment, the signed log."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from storage_miner.fs_store import FsShardStore
from storage_miner.store import ShardKey
from tests.validator.conftest import VALIDATOR, LiveMiner
from validator import log_store
from validator.app import make_app
from validator.audit_log import verify_log
from validator.challenger import ChallengePolicy, Challenger, Plan, Target
from validator.gateway import Gateway
from validator.log_store import ChallengeLogStore, LogFilter
from validator.miner_client import Answered, MinerAddress, MinerClient
from validator.models import Miner, Placement, RepairItem, Shard, StoredObject
from validator.scoring import SUSPEND_BELOW, weights
from validator.settings import ValidatorSettings
from validator.uploads import Uploader, UploadOptions

from .test_uploads import PARAMS, stream

# A roomy deadline (CI is busy); scheduled retrievals (each round a 1 in retrieval_every
# chance per miner) practically never, so each round's entries are exactly its Merkle ones.
POLICY = ChallengePolicy(batch=64, leaves=8, floor=5.0, retrieval_every=10**9)


@pytest.fixture
async def stored(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> str:
    """A committed 3-segment object: 24 shards, 3 on each miner."""
    up = Uploader(
        sessions, miner_client, lambda: [m.candidate for m in live_miners], rng=random.Random(1)
    )
    data = random.Random(2).randbytes(700_001)
    result = await up.upload(seeded, "a.bin", stream(data), UploadOptions(PARAMS))
    return result.object_id


def challenger(
    sessions: sessionmaker[Session], client: MinerClient, policy: ChallengePolicy = POLICY
) -> Challenger:
    return Challenger(sessions, client, ChallengeLogStore(sessions, VALIDATOR), policy)


def shards_on(sessions: sessionmaker[Session], miner: LiveMiner) -> list[tuple[int, str]]:
    """(placement id, shard id) of the placements on ``miner``."""
    with sessions() as session:
        return [
            (pid, sid)
            for pid, sid in session.execute(
                select(Placement.id, Shard.shard_id)
                .join(Shard, Shard.id == Placement.shard_id)
                .join(Miner, Miner.id == Placement.miner_id)
                .where(Miner.hotkey == miner.key.ss58_address)
                .order_by(Placement.id)
            )
        ]


def shard_file(miner: LiveMiner, shard_id: str) -> Any:
    store = miner.service.store
    assert isinstance(store, FsShardStore)
    return store.path(ShardKey(VALIDATOR.ss58_address, shard_id))


def placement(sessions: sessionmaker[Session], pid: int) -> Placement:
    with sessions() as session:
        row = session.get(Placement, pid)
        assert row is not None
        return row


async def test_honest_miners_pass_and_the_log_verifies(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    stored: str,
    live_miners: list[LiveMiner],
) -> None:
    checker = challenger(sessions, miner_client)
    report = await checker.run_round()
    assert report.miners == 8
    assert dict(report.verdicts) == {"pass": 24}
    assert report.leaves_verified == 24 * 8
    entries = list(checker.log_store.iterate())
    assert [e.seq for e in entries] == list(range(24))
    assert verify_log(entries, VALIDATOR.ss58_address) is None
    with sessions() as session:
        verified = dict(session.execute(select(Miner.hotkey, Miner.verified_bytes)).all())
        sizes = session.scalars(select(Shard.size)).all()
    assert sum(verified.values()) == sum(sizes)
    shares = weights(checker.standings())
    assert all(0.1 < w < 0.15 for w in shares.values()), shares
    # A second round carries on the same chain: 48 entries, still whole.
    await checker.run_round()
    assert verify_log(list(checker.log_store.iterate())) is None


async def test_a_corrupt_shard_is_wrong_and_queued_for_repair(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    stored: str,
    live_miners: list[LiveMiner],
) -> None:
    victim = live_miners[0]
    (pid, shard_id), (lost_pid, lost_id), *_ = shards_on(sessions, victim)
    path = shard_file(victim, shard_id)
    data = bytearray(path.read_bytes())
    for offset in range(0, len(data), PARAMS.leaf_size):
        data[offset] ^= 0x01  # every leaf: whichever are challenged, all are wrong
    path.write_bytes(bytes(data))
    shard_file(victim, lost_id).unlink()
    checker = challenger(sessions, miner_client)
    report = await checker.run_round()
    assert report.verdicts["wrong"] == 1
    assert report.verdicts["missing"] == 1
    assert report.verdicts["pass"] == 22
    assert (placement(sessions, pid).state, placement(sessions, pid).last_verdict) == (
        "lost",
        "wrong",
    )
    assert placement(sessions, lost_pid).state == "lost"
    with sessions() as session:
        queued = session.scalars(select(RepairItem.reason)).all()
        miner = session.scalar(select(Miner).where(Miner.hotkey == victim.key.ss58_address))
        assert miner is not None
        assert miner.wrong_beta > 0  # two failures, counted in bytes
        assert miner.timeout_beta == 0.0  # it answered: not a timeout
        assert miner.disqualified_at is not None  # 2 of its 3 shards failed: far below 0.95
    assert len(queued) == 2
    wrong = checker.log_store.read(LogFilter(verdict="wrong"))
    assert [e.shard_id for e in wrong] == [shard_id]
    assert "root" in wrong[0].reason
    # The log proves it: anyone re-running the recorded proof finds it does not verify.
    assert verify_log(list(checker.log_store.iterate())) is None
    # Lost placements are not challenged again; honest ones keep passing.
    again = await checker.run_round()
    assert dict(again.verdicts) == {"pass": 22}


async def test_a_shard_deleted_while_it_is_asked_about_costs_its_miner_nothing(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    stored: str,
    live_miners: list[LiveMiner],
) -> None:
    checker = challenger(sessions, miner_client)
    plans = checker._plan()  # the round picks its shards...
    with sessions() as session:
        owner = session.get(StoredObject, stored)
        assert owner is not None
    await Gateway(sessions, miner_client).delete(owner.owner_id, stored)  # ...then they go
    outcomes = [o for plan in plans for o in await checker._challenge(plan)]
    assert {o.entry.verdict for o in outcomes} == {"missing"}  # the miners dropped them
    report = checker._record(outcomes)
    assert report.verdicts["missing"] == len(outcomes)
    assert len(checker.log_store.read(LogFilter(verdict="missing"))) == len(outcomes)
    with sessions() as session:
        for miner in session.scalars(select(Miner)):
            assert (miner.wrong_beta, miner.disqualified_at) == (0.0, None), miner.hotkey


async def test_a_silent_miner_is_contained_before_it_counts(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    stored: str,
    live_miners: list[LiveMiner],
) -> None:
    silent = live_miners[3]
    await silent.server.close()
    placements = [pid for pid, _ in shards_on(sessions, silent)]
    checker = challenger(sessions, miner_client)
    # One Merkle timeout, then three Merkle rechecks that time out: contained.
    # (Only the silent miner is asserted on: on a loaded machine an honest one may miss a
    # deadline too, and containment is there for exactly that.)
    for expected in (1, 2, 3):
        await checker.run_round()
        assert {placement(sessions, p).containment for p in placements} == {expected}
        assert {placement(sessions, p).state for p in placements} == {"stored"}
        with sessions() as session:
            miner = session.scalar(select(Miner).where(Miner.hotkey == silent.key.ss58_address))
            assert miner is not None
            assert miner.timeout_beta == 0.0  # not a failure yet
        assert miner.suspended_at is None
        assert {placement(sessions, p).last_verdict for p in placements} == {"contained"}
        # In containment nothing of it counts as verified: a late answer earns nothing.
        assert miner.verified_bytes == 0
    kinds = {e.kind for e in checker.log_store.read(LogFilter(miner=silent.key.ss58_address))}
    assert kinds == {"merkle"}  # rechecked the way it failed
    await checker.run_round()
    assert {placement(sessions, p).state for p in placements} == {"lost"}
    standings = checker.standings()
    silent_standing = standings[silent.key.ss58_address]
    assert silent_standing.timeouts.score < SUSPEND_BELOW
    assert silent_standing.suspended  # offline too long: suspended, as Storj does
    assert not silent_standing.disqualified  # offline is not lying
    assert weights(standings)[silent.key.ss58_address] == 0.0


async def test_a_retrieval_that_comes_back_clears_containment(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    stored: str,
    live_miners: list[LiveMiner],
) -> None:
    pid = shards_on(sessions, live_miners[5])[0][0]
    with sessions.begin() as session:
        row = session.get(Placement, pid)
        assert row is not None
        row.containment = 2  # as if two reads of it had timed out
        row.last_verdict = "contained-read"
    checker = challenger(sessions, miner_client)
    report = await checker.run_round()
    assert report.verdicts["pass"] == 24
    assert (placement(sessions, pid).containment, placement(sessions, pid).last_verdict) == (
        0,
        "pass",
    )
    retrieval = checker.log_store.read(LogFilter(kind="retrieval"))
    assert len(retrieval) == 1
    assert "MB/s" in retrieval[0].reason


async def test_a_read_does_not_launder_a_late_merkle_answer(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    stored: str,
    live_miners: list[LiveMiner],
) -> None:
    """A placement contained by a Merkle timeout counts again only after a Merkle answer in
    time; a whole-shard read that arrives proves it is not lost, nothing more."""
    miner = live_miners[5]
    pid = shards_on(sessions, miner)[0][0]
    with sessions.begin() as session:
        row = session.get(Placement, pid)
        assert row is not None
        row.containment, row.last_verdict = 1, "contained"
    checker = challenger(sessions, miner_client)
    target = next(t for p in checker._plan() for t in p.merkle if t.placement_id == pid)
    plan = next(p for p in checker._plan() if p.address.hotkey == miner.key.ss58_address)
    read = await checker._retrieve_alone(plan, target)
    assert read.entry.verdict == "pass"
    checker._record([read])
    assert placement(sessions, pid).last_verdict == "contained"  # still owes a Merkle answer
    await checker.run_round()  # the Merkle recheck, first in the batch, answered in time
    assert (placement(sessions, pid).containment, placement(sessions, pid).last_verdict) == (
        0,
        "pass",
    )


@pytest.fixture
async def audit_api(
    sessions: sessionmaker[Session], miner_client: MinerClient, stored: str
) -> AsyncIterator[tuple[TestClient[Any, Any], Challenger]]:
    checker = challenger(sessions, miner_client)
    app = make_app(
        Gateway(sessions, miner_client),
        ValidatorSettings(),
        VALIDATOR.ss58_address,
        challenger=checker,
        background=False,
    )
    async with TestClient(TestServer(app)) as client:
        yield client, checker


async def test_the_audit_api_pages_filters_and_summarises(
    audit_api: tuple[TestClient[Any, Any], Challenger], live_miners: list[LiveMiner]
) -> None:
    client, checker = audit_api
    await checker.run_round()
    await checker.run_round()
    seen = []
    after = -1
    while True:
        page = await (
            await client.get("/v1/audit/log", params={"after": after, "limit": 10})
        ).json()
        seen.extend(page["entries"])
        if page["next"] is None:
            break
        after = page["next"]
    assert [e["seq"] for e in seen] == list(range(48))
    hotkey = live_miners[2].key.ss58_address
    mine = await (await client.get("/v1/audit/log", params={"miner": hotkey})).json()
    assert {e["miner"] for e in mine["entries"]} == {hotkey}
    assert len(mine["entries"]) == 6
    summary = await (await client.get("/v1/audit/summary")).json()
    rows = {r["miner"]: r for r in summary["miners"]}
    assert rows[hotkey]["challenges"] == 6
    assert rows[hotkey]["pass_rate"] == 1.0
    assert 0 < rows[hotkey]["p50_ms"] <= rows[hotkey]["p99_ms"]
    assert rows[hotkey]["verified_bytes"] > 0
    assert abs(sum(r["weight"] for r in rows.values()) - 1.0) < 1e-9
    metrics = await (await client.get("/metrics")).text()
    assert 'validator_challenges_total{kind="merkle",verdict="pass"} 48.0' in metrics
    assert "validator_challenge_latency_seconds_count" in metrics


async def test_a_filtered_log_page_looks_through_a_bounded_stretch(
    audit_api: tuple[TestClient[Any, Any], Challenger],
    live_miners: list[LiveMiner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A filter that matches rarely cannot make one request read the whole log: each page
    looks through at most SCAN seqs and says where to go on from, even when it found none."""
    client, checker = audit_api
    await checker.run_round()
    await checker.run_round()
    hotkey = live_miners[2].key.ss58_address
    whole = await (await client.get("/v1/audit/log", params={"miner": hotkey})).json()
    monkeypatch.setattr(log_store, "SCAN", 7)
    found, after, requests, short = [], -1, 0, 0
    while True:
        page = await (
            await client.get("/v1/audit/log", params={"miner": hotkey, "after": after})
        ).json()
        requests += 1
        assert all(after < e["seq"] <= after + 7 for e in page["entries"])
        found.extend(page["entries"])
        if page["next"] is None:
            break
        short += len(page["entries"]) < 1000
        after = page["next"]
    assert found == whole["entries"] and len(found) == 6
    assert requests >= 48 // 7 and short > 0


@pytest.mark.parametrize(
    "query",
    [
        {"after": "x"},
        {"limit": "0"},
        {"limit": "100000"},
        {"verdict": "maybe"},
        {"kind": "psychic"},
        {"since": "nan"},
    ],
)
async def test_bad_audit_queries_get_a_clear_400(
    audit_api: tuple[TestClient[Any, Any], Challenger], query: dict[str, str]
) -> None:
    client, _ = audit_api
    response = await client.get("/v1/audit/log", params=query)
    assert response.status == 400
    assert (await response.json())["error"] == "bad_query"


_SCALAR = st.none() | st.booleans() | st.integers(-5, 300) | st.text(max_size=8)
_JSONISH = (
    _SCALAR
    | st.lists(_SCALAR, max_size=3)
    | st.dictionaries(st.text(max_size=8), _SCALAR | st.lists(_SCALAR, max_size=2), max_size=4)
)
_ANSWER = st.one_of(
    _JSONISH,
    st.fixed_dictionaries(
        {"status": st.sampled_from([200, 404, 500, "200", None]), "leaves": _JSONISH},
        optional={"shard_id": st.text(max_size=4), "nonce": st.text(max_size=4)},
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(_ANSWER, max_size=5),
    st.lists(
        st.builds(
            Answered,
            st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple),
            st.binary(max_size=64),
        ),
        max_size=6,
    ),
)
def test_any_answer_gets_a_verdict_for_every_shard_asked(
    answers: list[Any], answered: list[Answered]
) -> None:
    """Whatever a hostile miner sends back (nulls, wrong types, short or long lists, leaves
    and proofs that are not what was asked), every challenged shard gets its own verdict and
    none is a pass."""
    checker = Challenger(
        cast(sessionmaker[Session], None),
        cast(MinerClient, None),
        ChallengeLogStore(cast(sessionmaker[Session], None), VALIDATOR),
        POLICY,
    )
    targets = [Target(i, f"{i:064x}", 64 * 1024, 16 * 1024, 0) for i in range(3)]
    plan = Plan(1, MinerAddress("miner", "127.0.0.1", 1), targets, [])
    nonces = [bytes([i]) * 16 for i in range(3)]
    indices = [(0, 1), (2, 3), (1, 2)]
    outcomes = checker._judge_batch(
        plan, targets, nonces, indices, answers, answered, time.time(), 0.01, 5.0
    )
    assert [o.target.placement_id for o in outcomes] == [0, 1, 2]
    assert {o.entry.verdict for o in outcomes} <= {"wrong", "missing"}


async def test_a_long_suspension_ends_in_probation(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    stored: str,
    live_miners: list[LiveMiner],
) -> None:
    """A miner suspended longer than ``suspend_seconds`` starts over, even one that holds
    nothing more to be asked about: clean timeout and serving scores, not suspended."""
    hotkey = live_miners[1].key.ss58_address
    with sessions.begin() as session:
        miner = session.scalar(select(Miner).where(Miner.hotkey == hotkey))
        assert miner is not None
        miner.suspended_at = datetime.now(UTC) - timedelta(hours=2)
        miner.serving_alpha, miner.serving_beta = 0.1, 5.0
        session.execute(delete(Placement).where(Placement.miner_id == miner.id))
    await challenger(sessions, miner_client).run_round()
    with sessions() as session:
        miner = session.scalar(select(Miner).where(Miner.hotkey == hotkey))
        assert miner is not None
        assert miner.suspended_at is None
        assert (miner.serving_alpha, miner.serving_beta) == (1.0, 0.0)


async def test_an_offline_miner_back_with_nothing_left_is_on_probation_at_once(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    stored: str,
    live_miners: list[LiveMiner],
) -> None:
    """Suspended for timeouts, its shares lost to containment and repair, then seen again:
    nothing could lift the suspension, so it starts over rather than wait an hour."""
    hotkey = live_miners[2].key.ss58_address
    now = datetime.now(UTC)
    with sessions.begin() as session:
        miner = session.scalar(select(Miner).where(Miner.hotkey == hotkey))
        assert miner is not None
        miner.suspended_at, miner.suspended_for = now - timedelta(minutes=5), "timeouts"
        miner.timeout_alpha, miner.timeout_beta = 0.1, 5.0
        miner.last_seen = now
        session.execute(delete(Placement).where(Placement.miner_id == miner.id))
    await challenger(sessions, miner_client).run_round()
    with sessions() as session:
        miner = session.scalar(select(Miner).where(Miner.hotkey == hotkey))
        assert miner is not None
        assert (miner.suspended_at, miner.suspended_for) == (None, None)
        assert (miner.timeout_alpha, miner.timeout_beta) == (1.0, 0.0)
