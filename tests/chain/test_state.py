"""The chain's rules on a real database (SQLite and PostgreSQL): registration, permits,
weights, and closing epochs exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from chain.db import VERSION_TABLE, make_engine, upgrade
from chain.emission import RAO_PER_TAO, TOTAL_SUPPLY, EmissionSchedule
from chain.genesis import Genesis
from chain.models import Base, LedgerRow
from chain.state import (
    BadFigures,
    BadVersion,
    BadWeights,
    ChainParams,
    DuplicateUid,
    EpochNotDue,
    LocalChain,
    MinerFigures,
    NoPermit,
    NotRegistered,
    RateLimited,
    SubnetFull,
    UnknownUid,
    validator_permits,
)
from tests.chain.conftest import OWNER, open_chain

TAO = RAO_PER_TAO
VALIDATORS = {"v0": 600 * TAO, "v1": 300 * TAO, "v2": 100 * TAO}


@contextmanager
def chain_on(url: str, genesis: Genesis, params: ChainParams | None = None) -> Iterator[LocalChain]:
    yield from open_chain(url, genesis, params)


def genesis(tempo: int = 10, issuance: int = 0) -> Genesis:
    return Genesis(OWNER, stakes=VALIDATORS, issuance=issuance, tempo=tempo, block_interval=0.1)


def populate(chain: LocalChain, miners: int = 4) -> None:
    for hotkey in [*VALIDATORS, *(f"m{i}" for i in range(miners))]:
        chain.register(hotkey)
    for v in VALIDATORS:
        chain.set_weights(
            v,
            [3, 4, 5, 6],
            [1, 2, 3, 4],
            0,
            {3: MinerFigures(1000, 0.5), 4: MinerFigures(2000, 1.0)},
        )


def test_migrations_match_the_models(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)  # a second run finds nothing to do
    engine = make_engine(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_registration_assigns_uids_in_order_and_is_idempotent(db_url: str) -> None:
    with chain_on(db_url, genesis()) as chain:
        assert [chain.register(h).uid for h in ("a", "b", "c")] == [0, 1, 2]
        again = chain.register("b")
        assert (again.uid, again.created) == (1, False)
        assert [n.hotkey for n in chain.metagraph().neurons] == ["a", "b", "c"]


def test_full_subnet_prunes_the_lowest_score_outside_immunity(db_url: str) -> None:
    params = ChainParams(max_uids=4, immunity_period=5)
    with chain_on(db_url, genesis(tempo=3), params) as chain:
        for h in ("v0", "m1", "m2"):
            chain.register(h)
        chain.advance(2)
        chain.register("m3")  # registered later than the others
        with pytest.raises(SubnetFull):
            chain.register("late")  # everyone is still immune
        chain.set_weights("v0", [1, 2, 3], [1, 0, 0], 0)  # m1 earns; m2 and m3 do not
        chain.advance(5)  # block 7: epochs 1 and 2 closed; m3 (at block 2) is immune to 7
        assert chain.metagraph().neurons[1].incentive == 1.0
        reg = chain.register("new")
        # m2 and m3 both score 0; m3 is immune until block 7 - no: 7 - 2 >= 5, both mature,
        # so the older registration (m2, block 0) goes.
        assert (reg.uid, reg.replaced) == (2, "m2")
        graph = chain.metagraph()
        assert [n.hotkey for n in graph.neurons] == ["v0", "m1", "new", "m3"]
        assert graph.neurons[2].registered_at == 7
        assert graph.neurons[2].last_update is None
        # v0's weight on the replaced UID is gone with it.
        chain.advance(2)  # epoch 3 closes: the newcomer gets nothing from old weights
        assert chain.metagraph().neurons[2].incentive == 0.0


def test_pruning_never_takes_an_immune_uid(db_url: str) -> None:
    params = ChainParams(max_uids=2, immunity_period=10)
    with chain_on(db_url, genesis(tempo=100), params) as chain:
        chain.register("old")
        chain.advance(10)
        chain.register("young")  # block 10, immune until 20
        assert chain.register("third").replaced == "old"
        with pytest.raises(SubnetFull):
            chain.register("fourth")


def test_permits_go_to_the_top_stakers() -> None:
    assert validator_permits([5, 0, 9, 5, 1], 2) == [True, False, True, False, False]
    assert validator_permits([0, 0], 5) == [False, False]
    assert validator_permits([3, 3, 3], 2) == [True, True, False]


def test_permits_in_the_metagraph(db_url: str) -> None:
    with chain_on(db_url, genesis(), ChainParams(max_validators=2)) as chain:
        for hotkey in [*VALIDATORS, "m0"]:
            chain.register(hotkey)
        graph = chain.metagraph()
        assert [n.validator_permit for n in graph.neurons] == [True, True, False, False]
        assert [n.stake for n in graph.neurons] == [600 * TAO, 300 * TAO, 100 * TAO, 0]
        with pytest.raises(NoPermit):
            chain.set_weights("v2", [3], [1.0], 0)


def test_set_weights_checks(db_url: str) -> None:
    with chain_on(db_url, genesis(tempo=1000), ChainParams(version_key=7)) as chain:
        for h in ("v0", "m0"):
            chain.register(h)
        with pytest.raises(NotRegistered):
            chain.set_weights("stranger", [1], [1.0], 7)
        with pytest.raises(BadVersion):
            chain.set_weights("v0", [1], [1.0], 6)
        with pytest.raises(BadWeights):
            chain.set_weights("v0", [1], [1.0, 2.0], 7)
        with pytest.raises(DuplicateUid):
            chain.set_weights("v0", [1, 1], [1.0, 2.0], 7)
        with pytest.raises(UnknownUid):
            chain.set_weights("v0", [1, 2], [1.0, 2.0], 7)
        with pytest.raises(NoPermit):
            chain.set_weights("m0", [0], [1.0], 7)
        for bad in ([-1.0], [float("nan")], [0.0]):
            with pytest.raises(BadWeights):
                chain.set_weights("v0", [1], bad, 7)
        with pytest.raises(BadFigures):
            chain.set_weights("v0", [1], [1.0], 7, {0: MinerFigures(1, 0.5)})
        with pytest.raises(BadFigures):
            chain.set_weights("v0", [1], [1.0], 7, {1: MinerFigures(1, 1.5)})
        assert chain.set_weights("v0", [0, 1], [1.0, 3.0], 7) == 0
        with pytest.raises(RateLimited):
            chain.set_weights("v0", [1], [1.0], 7)
        chain.advance(99)
        with pytest.raises(RateLimited):
            chain.set_weights("v0", [1], [1.0], 7)
        chain.advance(1)
        assert chain.set_weights("v0", [1], [1.0], 7) == 100


def ledger_by_epoch(chain: LocalChain) -> dict[int, int]:
    sums: dict[int, int] = {}
    for credit in chain.ledger():
        sums[credit.epoch] = sums.get(credit.epoch, 0) + credit.amount
    return sums


def test_epoch_credits_sum_exactly_to_its_emission(db_url: str) -> None:
    with chain_on(db_url, genesis(tempo=10)) as chain:
        populate(chain)
        closed = chain.advance(30)
        assert [e.number for e in closed] == [1, 2, 3]
        schedule = EmissionSchedule()
        assert all(e.emission == schedule.emit(e.start_issuance, 10).emitted for e in closed)
        assert ledger_by_epoch(chain) == {e.number: e.emission for e in closed}
        assert chain.chain_info()["issuance"] == 30 * TAO
        credits = {c.hotkey: c for c in chain.ledger(epoch=1)}
        assert credits[OWNER].amount == 18 * TAO // 10  # 18% of 10 TAO
        assert credits["m3"].incentive > credits["m0"].incentive > 0
        assert (credits["m0"].capacity_bytes, credits["m0"].availability) == (1000, 0.5)
        assert credits["m2"].capacity_bytes is None
        assert sum(c.dividends for c in credits.values()) == 41 * TAO // 10
        balances = chain.balances()
        assert sum(sum(eras.values()) for eras in balances.values()) == 30 * TAO
        assert chain.balances("m3") == {"m3": {0: 3 * credits["m3"].amount}}


def test_closing_an_epoch_twice_credits_once(db_url: str) -> None:
    with chain_on(db_url, genesis(tempo=10)) as chain:
        populate(chain)
        chain.advance(10)
        rows = len(chain.ledger())
        assert chain.close_epoch(1) is None
        assert chain.close_due_epochs() == []
        assert len(chain.ledger()) == rows
        assert chain.chain_info()["issuance"] == 10 * TAO
        with pytest.raises(EpochNotDue):
            chain.close_epoch(2)


def snapshot(chain: LocalChain) -> tuple[Any, ...]:
    graph = chain.metagraph()
    return (
        [c.to_dict() for c in chain.ledger()],
        [e.to_dict() for e in chain.epochs()],
        [(n.incentive, n.dividends, n.trust) for n in graph.neurons],
        chain.chain_info(),
    )


def test_a_crash_mid_close_credits_nothing_and_a_retry_matches_a_clean_close(
    db_url: str, sqlite_url: str
) -> None:
    with chain_on(sqlite_url, genesis(tempo=10)) as clean:
        populate(clean)
        clean.advance(20)
        expected = snapshot(clean)

    with chain_on(db_url, genesis(tempo=10)) as chain:
        populate(chain)
        chain.advance(10)

        before = len(chain.ledger())

        def crash(session: Session) -> None:
            # Only the closing transaction: by its commit every credit is written (flushed).
            if (session.scalar(select(func.count()).select_from(LedgerRow)) or 0) > before:
                raise RuntimeError("power cut")

        event.listen(chain.sessions, "before_commit", crash)
        with pytest.raises(RuntimeError, match="power cut"):
            chain.advance(10)
        event.remove(chain.sessions, "before_commit", crash)
        assert chain.block() == 20  # the block was produced; its epoch close was not
        assert [e.number for e in chain.epochs()] == [1]
        assert chain.chain_info()["issuance"] == 10 * TAO
        assert [e.number for e in chain.close_due_epochs()] == [2]
        assert snapshot(chain) == expected


def test_a_halving_inside_an_epoch_credits_each_era_separately(db_url: str) -> None:
    half = TOTAL_SUPPLY // 2
    start = half - 3 * TAO  # three blocks at 1 TAO, then seven at 0.5 TAO
    with chain_on(db_url, genesis(tempo=10, issuance=start)) as chain:
        populate(chain)
        (epoch,) = chain.advance(10)
        assert (epoch.first_era, epoch.last_era) == (0, 1)
        assert epoch.emission == 3 * TAO + 7 * TAO // 2
        by_era: dict[int, int] = {}
        for credit in chain.ledger(epoch=1):
            by_era[credit.era] = by_era.get(credit.era, 0) + credit.amount
        assert by_era == {0: 3 * TAO, 1: 7 * TAO // 2}
        assert {c.hotkey for c in chain.ledger(era=1)} >= {OWNER, "m3", "v0"}
        assert chain.chain_info()["era"] == 1


def test_an_empty_subnet_credits_the_owner(db_url: str) -> None:
    with chain_on(db_url, genesis(tempo=5)) as chain:
        (epoch,) = chain.advance(5)
        assert epoch.unclaimed == epoch.emission - epoch.emission * 18 // 100
        assert [(c.hotkey, c.amount) for c in chain.ledger()] == [(OWNER, 5 * TAO)]
