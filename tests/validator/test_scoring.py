"""Scoring properties: no NaN, nothing verified earns nothing, failures cost, newcomers rise."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from validator.scoring import (
    DISQUALIFY_BELOW,
    SERVING_LAMBDA,
    MinerStanding,
    Reputation,
    capacity,
    suspends,
    time_weighted,
    update,
    update_bytes,
    weights,
)

CLEAN = Reputation()

standing = st.builds(
    MinerStanding,
    st.integers(0, 10**15),
    st.builds(Reputation, st.floats(0, 1e6), st.floats(0, 1e6)),
    st.builds(Reputation, st.floats(0, 1e6), st.floats(0, 1e6)),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=5), standing, max_size=10))
def test_weights_are_never_nan_and_sum_to_one_or_zero(miners: dict[str, MinerStanding]) -> None:
    result = weights(miners)
    assert all(math.isfinite(w) and w >= 0 for w in result.values())
    total = sum(result.values())
    assert total == 0 or math.isclose(total, 1.0)


def test_nothing_verified_gets_zero() -> None:
    result = weights({"a": MinerStanding(0, CLEAN, CLEAN), "b": MinerStanding(10, CLEAN, CLEAN)})
    assert result == {"a": 0.0, "b": 1.0}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**12), st.integers(1, 10**12), st.integers(1, 10**12))
def test_more_verified_bytes_never_lowers_a_weight(mine: int, more: int, other: int) -> None:
    before = weights(
        {"a": MinerStanding(mine, CLEAN, CLEAN), "b": MinerStanding(other, CLEAN, CLEAN)}
    )
    after = weights({"a": MinerStanding(mine + more, CLEAN, CLEAN),
                     "b": MinerStanding(other, CLEAN, CLEAN)})  # fmt: skip
    assert after["a"] >= before["a"]


def test_failures_lower_weight_and_enough_of_them_disqualify() -> None:
    honest = MinerStanding(100, update(CLEAN, 50, 0), CLEAN)
    lying = MinerStanding(100, update(CLEAN, 50, 5), CLEAN)
    result = weights({"honest": honest, "lying": lying})
    assert result["lying"] < result["honest"]
    caught = MinerStanding(100, update(CLEAN, 50, 60), CLEAN)
    assert weights({"honest": honest, "caught": caught})["caught"] == 0.0


def test_timeouts_and_wrong_answers_are_kept_apart() -> None:
    offline = update(CLEAN, 0, 3)
    assert update(CLEAN, 0, 3).score == offline.score
    s = MinerStanding(100, CLEAN, offline)
    assert s.wrong.score == 1.0  # being offline says nothing about lying


def test_a_clean_newcomer_reaches_a_fair_share_quickly() -> None:
    veteran = MinerStanding(1000, update(CLEAN, 5000, 0), CLEAN)
    newcomer = MinerStanding(1000, CLEAN, CLEAN)
    for _ in range(3):  # three clean rounds
        newcomer = MinerStanding(1000, update(newcomer.wrong, 1, 0), newcomer.timeouts)
    result = weights({"veteran": veteran, "newcomer": newcomer})
    assert math.isclose(result["newcomer"], 0.5, rel_tol=0.01)


def test_time_weighted_capacity() -> None:
    samples = [(0.0, 100), (50.0, 300)]
    assert time_weighted(samples, now=100.0, window=100.0) == 200.0
    assert time_weighted(samples, now=100.0, window=50.0) == 300.0
    assert time_weighted([], now=1.0, window=1.0) == 0.0


def test_disqualification_sticks_even_after_clean_answers() -> None:
    recovered = update(update(CLEAN, 2, 3), 100, 0)
    assert recovered.score > 0.9  # clean again...
    out = MinerStanding(100, recovered, CLEAN, disqualified=True)
    result = weights({"out": out, "honest": MinerStanding(100, CLEAN, CLEAN)})
    assert result == {"out": 0.0, "honest": 1.0}  # ...but once out, out


MiB = 2**20


def test_integrity_is_the_share_of_its_own_data_that_failed_whatever_its_size() -> None:
    """Byte-weighted, forgetting over what the miner holds: a miner that lost half its
    data falls to about half, at any size; one rotten shard of many barely moves it."""
    for shards in (4, 64, 4096):
        held = shards * 4 * MiB
        clean = update_bytes(CLEAN, [4 * MiB] * shards, [], held=held)
        half = update_bytes(clean, [4 * MiB] * (shards // 2), [4 * MiB] * (shards // 2), held=held)
        assert half.score < DISQUALIFY_BELOW, shards
        assert 0.4 < half.score < 0.7, (shards, half.score)
    big = update_bytes(CLEAN, [4 * MiB] * 1024, [], held=4096 * MiB)
    assert update_bytes(big, [4 * MiB] * 63, [4 * MiB], held=4096 * MiB).score > 0.99
    # The only shard a miner holds, lost: out.
    one = update_bytes(update_bytes(CLEAN, [MiB] * 5, [], held=MiB), [], [MiB], held=MiB)
    assert one.score < 0.5


def test_a_loss_of_five_percent_disqualifies_and_two_percent_does_not() -> None:
    held = 1000 * MiB
    clean = update_bytes(CLEAN, [MiB] * 1000, [], held=held)
    assert update_bytes(clean, [MiB] * 940, [MiB] * 60, held=held).score < DISQUALIFY_BELOW
    assert update_bytes(clean, [MiB] * 980, [MiB] * 20, held=held).score > DISQUALIFY_BELOW


def test_suspension_follows_timeouts_or_serving_and_costs_all_weight() -> None:
    never_served = update(CLEAN, 0, 1, forgetting=SERVING_LAMBDA)
    assert suspends(CLEAN, never_served)
    served = update(CLEAN, 20, 0, forgetting=SERVING_LAMBDA)
    assert not suspends(CLEAN, update(served, 0, 2, forgetting=SERVING_LAMBDA))
    assert suspends(CLEAN, update(served, 0, 3, forgetting=SERVING_LAMBDA))  # 3 in a row
    out = MinerStanding(100, CLEAN, CLEAN, serving=never_served, suspended=True)
    result = weights({"out": out, "honest": MinerStanding(100, CLEAN, CLEAN)})
    assert result == {"out": 0.0, "honest": 1.0}


def test_capacity_counts_a_loss_at_once_and_a_gain_over_the_window() -> None:
    assert capacity([(0.0, 100), (50.0, 40)], now=60.0, window=3600.0) == 40  # lost: now
    assert capacity([(0.0, 0), (50.0, 100)], now=100.0, window=100.0) == 50  # gained: slowly
    assert capacity([], now=1.0, window=1.0) == 0.0


def test_capacity_is_never_a_negative_figure() -> None:
    # A running total that lags below zero until its recount must not become a figure the
    # chain refuses (with every other miner's weights in the same request).
    assert capacity([(0.0, 100), (50.0, -424_277)], now=60.0, window=3600.0) == 0.0
