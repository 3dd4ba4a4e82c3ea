"""Exact integer splits, and an epoch's credits per hotkey summing to its emission."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import (
    DEFAULT_SPLIT,
    Allocation,
    EmissionSplit,
    YumaInputs,
    YumaResult,
    credit_epoch,
    largest_remainder,
    yuma_consensus,
)
from chain.yuma import Weight
from tests.chain.subnets import WORKED_EXAMPLE, subnets

weights_lists = st.lists(
    st.one_of(
        st.integers(0, 10**6),
        st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
        st.fractions(0, 1000),
    ),
    max_size=30,
)


def test_ties_go_to_the_lower_index() -> None:
    assert largest_remainder(10, [1, 1, 1]) == Allocation(parts=(4, 3, 3), undistributed=0)
    assert largest_remainder(2, [1, 1, 1]) == Allocation(parts=(1, 1, 0), undistributed=0)


def test_largest_remainders_get_the_spare_rao() -> None:
    # Exact shares 100·(1/6, 2/6, 3/6) = 16.67, 33.33, 50: the one spare rao goes to 16.67.
    assert largest_remainder(100, [1, 2, 3]).parts == (17, 33, 50)
    # Floats are taken at their exact binary value: 0.1 and 0.2 share 3 rao as 1 and 2.
    assert largest_remainder(3, [0.1, 0.2]).parts == (1, 2)
    assert largest_remainder(7, [Fraction(1, 3), Fraction(2, 3)]).parts == (2, 5)


def test_zero_weights_get_nothing() -> None:
    assert largest_remainder(5, [0, 1, 1]).parts == (0, 3, 2)
    assert largest_remainder(1, [0.0, 0.0, 1e-300]).parts == (0, 0, 1)


@pytest.mark.parametrize("weights", [[], [0], [0, 0.0, Fraction(0)]])
def test_with_no_positive_weight_everything_is_undistributed(weights: list[Weight]) -> None:
    assert largest_remainder(1234, weights) == Allocation(
        parts=(0,) * len(weights), undistributed=1234
    )


@given(st.integers(0, 10**18), weights_lists)
def test_parts_sum_exactly_and_stay_within_one_rao_of_the_exact_share(
    total: int, weights: list[Weight]
) -> None:
    allocation = largest_remainder(total, weights)
    exact = [Fraction(w) for w in weights]
    denominator = sum(exact)
    if denominator == 0:
        assert allocation.parts == (0,) * len(weights)
        assert allocation.undistributed == total
        return
    assert sum(allocation.parts) == total
    assert allocation.undistributed == 0
    for part, weight in zip(allocation.parts, exact, strict=True):
        share = total * weight / denominator
        assert abs(part - share) < 1
        assert part >= 0
    assert largest_remainder(total, list(weights)) == allocation  # deterministic


@given(st.integers(0, 10**12), weights_lists)
def test_a_larger_weight_never_gets_fewer_rao(total: int, weights: list[Weight]) -> None:
    parts = largest_remainder(total, weights).parts
    for i, wi in enumerate(weights):
        for j, wj in enumerate(weights):
            if wi > wj:
                assert parts[i] >= parts[j]


@pytest.mark.parametrize(
    ("total", "weights", "error", "message"),
    [
        (10, [1, math.nan], ValueError, "weight 1 is nan"),
        (10, [math.inf], ValueError, "weight 0 is inf"),
        (10, [1, -1], ValueError, "weight 1 is -1: weights must be non-negative"),
        (10, [Fraction(-1, 2)], ValueError, "non-negative"),
        (10, ["1"], TypeError, "weight 0 must be a number"),
        (-1, [1], ValueError, "total must be a non-negative int"),
        (1.5, [1], ValueError, "total must be a non-negative int"),
    ],
)
def test_bad_inputs_are_refused(
    total: int, weights: list[Weight], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        largest_remainder(total, weights)


HOTKEYS = ["v0", "v1", "v2", "m3", "m4", "m5", "m6"]


def test_hand_example_is_credited_to_the_rao() -> None:
    credits = credit_epoch(1000, yuma_consensus(WORKED_EXAMPLE), HOTKEYS, owner_hotkey="owner")
    # Owner 180; miners 410 by (12, 12, 8, 5)/37 = 132.97, 132.97, 88.65, 55.41 -> floors
    # 132, 132, 88, 55 leave 3 rao for the three largest remainders.
    assert credits.owner_cut == 180
    assert credits.incentive == (0, 0, 0, 133, 133, 89, 55)
    # Validators 410 by (4, 63, 81)/148 = 11.08, 174.53, 224.39 -> 11, 174, 224 and 1 spare.
    assert credits.dividends == (11, 175, 224, 0, 0, 0, 0)
    assert credits.unclaimed == 0
    assert dict(credits.credits) == {
        "owner": 180,
        "v0": 11,
        "v1": 175,
        "v2": 224,
        "m3": 133,
        "m4": 133,
        "m5": 89,
        "m6": 55,
    }
    assert sum(credits.credits.values()) == credits.emission == 1000


def test_pools_nobody_can_claim_go_to_the_owner() -> None:
    idle = replace(WORKED_EXAMPLE, weights={})  # nobody set weights
    credits = credit_epoch(1000, yuma_consensus(idle), HOTKEYS, owner_hotkey="owner")
    assert dict(credits.credits) == {"owner": 1000}
    assert (credits.owner_cut, credits.unclaimed) == (180, 820)
    assert credits.incentive == credits.dividends == (0,) * 7


def test_an_empty_validator_pool_alone_goes_to_the_owner() -> None:
    result = YumaResult(
        consensus=(0.0, 1.0),
        ranks=(0.0, 1.0),
        incentive=(0.0, 1.0),
        dividends=(0.0, 0.0),
        validator_trust=(0.0, 0.0),
        bonds=MappingProxyType({}),
    )
    credits = credit_epoch(1001, result, ["v", "m"], owner_hotkey="owner")
    # 1001: owner floor(180.18) = 180, rest 821 -> miners 410, validators 411 (unclaimed).
    assert dict(credits.credits) == {"owner": 180 + 411, "m": 410}
    assert credits.unclaimed == 411


def test_an_owner_that_also_holds_a_uid_is_credited_once_with_both() -> None:
    hotkeys = ["owner", *HOTKEYS[1:]]
    credits = credit_epoch(1000, yuma_consensus(WORKED_EXAMPLE), hotkeys, owner_hotkey="owner")
    assert credits.credits["owner"] == 180 + 11
    assert sum(credits.credits.values()) == 1000


def test_credit_epoch_needs_one_hotkey_per_uid() -> None:
    with pytest.raises(ValueError, match="got 6 hotkeys, 7 incentives"):
        credit_epoch(1000, yuma_consensus(WORKED_EXAMPLE), HOTKEYS[:6], owner_hotkey="owner")


@settings(max_examples=150, deadline=None)
@given(
    inputs=subnets(),
    emission=st.integers(0, 10**15),
    owner=st.fractions(0, 1),
    miners=st.fractions(0, 1),
)
def test_credits_sum_exactly_to_the_emission(
    inputs: YumaInputs, emission: int, owner: Fraction, miners: Fraction
) -> None:
    split = EmissionSplit(owner_share=owner, miner_share=miners)
    hotkeys = [f"hotkey-{uid}" for uid in range(inputs.n)]
    credits = credit_epoch(emission, yuma_consensus(inputs), hotkeys, "owner", split)
    assert sum(credits.credits.values()) == emission
    assert all(amount >= 0 for amount in credits.credits.values())
    assert credits.owner_cut == split.split(emission).owner
    assert credits.credits["owner"] == credits.owner_cut + credits.unclaimed
    pools = sum(credits.incentive) + sum(credits.dividends)
    assert credits.owner_cut + credits.unclaimed + pools == emission


def test_default_split_is_used_when_none_is_given() -> None:
    result = yuma_consensus(WORKED_EXAMPLE)
    assert credit_epoch(999, result, HOTKEYS, "owner") == credit_epoch(
        999, result, HOTKEYS, "owner", DEFAULT_SPLIT
    )
