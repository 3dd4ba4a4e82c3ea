"""Time of one epoch of the reward core: ``yuma_consensus`` then ``credit_epoch``.

The subnet is the largest one subtensor allows: 256 UIDs, 64 of them validators with a
permit, each setting a dense row of random weights over all 256 UIDs, with the bonds of a
previous epoch carried in. The baseline, measured in the same run, is one pure-Python pass
that adds up every weight of that matrix, so ``ratio_vs_one_pass`` reads as "an epoch costs
this many passes over the weights" whatever the machine's speed. Figures are medians of
``--runs`` runs.

    python -m bench.epoch_core [--runs 21] [--out bench/results/epoch_core.json]
    python -m bench.epoch_core --smoke --out /tmp/epoch_core.json   # one run of each
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.report import command, emit
from chain import TOTAL_SUPPLY, EmissionSchedule, YumaInputs, credit_epoch, yuma_consensus

UIDS = 256
VALIDATORS = 64
TEMPO = 360
BUDGET_MS = 100.0


def median_ms(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def dense_subnet(seed: int) -> YumaInputs:
    rng = random.Random(seed)
    stake = [rng.uniform(1e3, 1e6) * 1e9 if uid < VALIDATORS else 0.0 for uid in range(UIDS)]
    weights = {uid: [rng.random() for _ in range(UIDS)] for uid in range(VALIDATORS)}
    first = yuma_consensus(YumaInputs(stake, [uid < VALIDATORS for uid in range(UIDS)], weights))
    return YumaInputs(stake, [uid < VALIDATORS for uid in range(UIDS)], weights, first.bonds)


def one_pass(rows: Sequence[Sequence[float]]) -> float:
    total = 0.0
    for row in rows:
        for weight in row:
            total += weight
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/epoch_core.json"))
    parser.add_argument("--smoke", action="store_true", help="one run of each figure")
    args = parser.parse_args()
    if args.smoke:
        args.runs = 1

    inputs = dense_subnet(args.seed)
    hotkeys = [f"hotkey-{uid}" for uid in range(UIDS)]
    emission = EmissionSchedule().emit(TOTAL_SUPPLY // 4, TEMPO).emitted
    result = yuma_consensus(inputs)
    rows = [row for row in inputs.weights.values() if isinstance(row, list)]

    baseline = median_ms(args.runs, lambda: one_pass(rows))
    yuma = median_ms(args.runs, lambda: yuma_consensus(inputs))
    credit = median_ms(args.runs, lambda: credit_epoch(emission, result, hotkeys, "owner"))
    epoch = median_ms(
        args.runs,
        lambda: credit_epoch(emission, yuma_consensus(inputs), hotkeys, "owner"),
    )
    report = {
        "bench": "epoch_core",
        "command": command("bench.epoch_core"),
        "uids": UIDS,
        "validators": VALIDATORS,
        "dense_weights": UIDS * VALIDATORS,
        "runs_per_figure": args.runs,
        "results": {
            "yuma_consensus_ms": round(yuma, 2),
            "credit_epoch_ms": round(credit, 2),
            "epoch_ms": round(epoch, 2),
            "baseline_one_pass_over_weights_ms": round(baseline, 3),
            "ratio_vs_one_pass": round(epoch / baseline, 1),
            "budget_ms": BUDGET_MS,
            "within_budget": epoch < BUDGET_MS,
        },
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
