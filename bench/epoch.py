"""Time of closing one epoch of the local chain: Yuma, the ledger write, the neurons' outputs
and bonds, in one database transaction (``LocalChain.close_epoch``).

The subnet is the largest subtensor allows: 256 UIDs, 64 validators with a permit, each
with a dense row of random weights over all 256 UIDs and bonds from earlier epochs. Runs on
SQLite (a file, WAL, synchronous=FULL) and on PostgreSQL at 127.0.0.1:5432 when reachable.
Same-run baselines: the pure core alone (``yuma_consensus`` + ``credit_epoch`` in memory),
and a transaction inserting as many ledger rows as a close writes. Medians of ``--runs``.

    python -m bench.epoch [--runs 15] [--out bench/results/epoch.json]
    python -m bench.epoch --smoke --out /tmp/epoch.json   # seconds: one run of each
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import delete, insert, update

from bench.report import command, emit
from chain import RAO_PER_TAO, EmissionSchedule, YumaInputs, credit_epoch, yuma_consensus
from chain.db import make_engine, upgrade
from chain.genesis import Genesis
from chain.models import ChainStateRow, EpochRow, LedgerRow
from chain.state import ChainParams, LocalChain

UIDS = 256
VALIDATORS = 64
TEMPO = 360
BUDGET_MS = 200.0
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def median_ms(times: list[float]) -> float:
    return round(statistics.median(times) * 1e3, 2)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build(url: str, seed: int) -> LocalChain:
    rng = random.Random(seed)
    hotkeys = [f"hotkey-{uid:03d}" for uid in range(UIDS)]
    stakes = {h: rng.randrange(1_000, 1_000_000) * RAO_PER_TAO for h in hotkeys[:VALIDATORS]}
    upgrade(url)
    chain = LocalChain(
        make_engine(url), ChainParams(max_validators=VALIDATORS, weights_rate_limit=0)
    )
    chain.initialise(Genesis("owner", stakes=stakes, tempo=TEMPO))
    for hotkey in hotkeys:
        chain.register(hotkey)
    for hotkey in hotkeys[:VALIDATORS]:
        chain.set_weights(hotkey, list(range(UIDS)), [rng.random() for _ in range(UIDS)], 0)
    return chain


def close_next(chain: LocalChain) -> float:
    """Produce an epoch's blocks without closing it, then time the close alone."""
    with chain.sessions.begin() as s:
        s.execute(update(ChainStateRow).values(block=ChainStateRow.block + TEMPO))
    number = chain.block() // TEMPO
    return timed(lambda: chain.close_epoch(number))


def ledger_insert_only(chain: LocalChain, rows: int) -> float:
    """One transaction inserting ``rows`` ledger rows (under a throwaway epoch), then undone."""
    number = 10**9
    payload: list[dict[str, Any]] = [
        {
            "epoch": number, "era": 0, "hotkey": f"hotkey-{i:03d}", "uid": i, "amount": 1,
            "incentive": 1, "dividends": 0, "owner": 0, "capacity_bytes": None,
            "availability": None,
        }
        for i in range(rows)
    ]  # fmt: skip

    def write() -> None:
        with chain.sessions.begin() as s:
            s.add(
                EpochRow(
                    number=number, end_block=0, start_issuance=0, end_issuance=0, emission=0,
                    first_era=0, last_era=0, unclaimed=0, neurons=0,
                )
            )  # fmt: skip
            s.flush()
            s.execute(insert(LedgerRow), payload)

    took = timed(write)
    with chain.sessions.begin() as s:
        s.execute(delete(LedgerRow).where(LedgerRow.epoch == number))
        s.execute(delete(EpochRow).where(EpochRow.number == number))
    return took


def measure(url: str, runs: int, seed: int) -> dict[str, Any]:
    chain = build(url, seed)
    try:
        close_next(chain)  # the first close has no bonds; warm up past it
        closes = [close_next(chain) for _ in range(runs)]
        rows = len(chain.ledger(epoch=chain.block() // TEMPO))
        inserts = [ledger_insert_only(chain, rows) for _ in range(runs)]
    finally:
        chain.engine.dispose()
    return {
        "epoch_close_ms": median_ms(closes),
        "ledger_rows_per_epoch": rows,
        "baseline_ledger_insert_only_ms": median_ms(inserts),
        "within_budget": median_ms(closes) < BUDGET_MS,
    }


def pure_core_ms(runs: int, seed: int) -> float:
    rng = random.Random(seed)
    stake = [
        rng.randrange(1_000, 1_000_000) * RAO_PER_TAO if u < VALIDATORS else 0 for u in range(UIDS)
    ]
    permit = [u < VALIDATORS for u in range(UIDS)]
    weights = {u: [rng.random() for _ in range(UIDS)] for u in range(VALIDATORS)}
    bonds = yuma_consensus(YumaInputs(stake, permit, weights)).bonds
    inputs = YumaInputs(stake, permit, weights, bonds)
    hotkeys = [f"hotkey-{u}" for u in range(UIDS)]
    emission = EmissionSchedule().emit(0, TEMPO).emitted
    return median_ms(
        [
            timed(lambda: credit_epoch(emission, yuma_consensus(inputs), hotkeys, "owner"))
            for _ in range(runs)
        ]
    )


@contextmanager
def postgres() -> Iterator[str | None]:
    name = f"bench_epoch_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/epoch.json"))
    parser.add_argument("--smoke", action="store_true", help="one run of each figure")
    args = parser.parse_args()
    if args.smoke:
        args.runs = 1

    results: dict[str, Any] = {"pure_core_yuma_plus_credit_ms": pure_core_ms(args.runs, args.seed)}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(f"sqlite:///{tmp}/chain.sqlite", args.runs, args.seed)
    with postgres() as url:
        results["postgresql"] = (
            measure(url, args.runs, args.seed) if url else "unreachable at 127.0.0.1:5432"
        )
    emit(
        {
            "bench": "epoch",
            "command": command("bench.epoch"),
            "uids": UIDS,
            "validators": VALIDATORS,
            "dense_weights": UIDS * VALIDATORS,
            "runs_per_figure": args.runs,
            "budget_ms": BUDGET_MS,
            "results": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
