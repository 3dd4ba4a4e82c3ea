"""Yuma consensus: a worked example by hand, the invariants, and every awkward input."""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from fractions import Fraction as F
from types import MappingProxyType

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chain import YumaInputs, YumaParams, YumaResult, yuma_consensus
from chain.yuma import Weight
from tests.chain.subnets import WORKED_EXAMPLE, permuted, subnets, weight_values


def approx(values: Sequence[F | float]) -> object:
    return pytest.approx([float(v) for v in values], rel=1e-12, abs=1e-15)


def plain(bonds: Mapping[int, Mapping[int, float]]) -> dict[int, dict[int, float]]:
    return {i: dict(row) for i, row in bonds.items()}


def flat(bonds: Mapping[int, Mapping[int, float]]) -> dict[tuple[int, int], float]:
    return {(i, j): b for i, row in bonds.items() for j, b in row.items()}


def all_values(result: YumaResult) -> list[float]:
    vectors = (
        result.consensus,
        result.ranks,
        result.incentive,
        result.dividends,
        result.validator_trust,
    )
    return [x for vector in vectors for x in vector] + [
        b for row in result.bonds.values() for b in row.values()
    ]


def test_worked_example_by_hand() -> None:
    result = yuma_consensus(WORKED_EXAMPLE)
    # Consensus, κ = 1/2: walk each column from the highest vote down, adding stake, and stop
    # at the first vote where the stake so far reaches 1/2.
    #   M3: 2/5 (V1, 7/20 < 1/2), 3/10 (V2, 7/20 + 9/20 = 4/5)  -> 3/10
    #   M4: 3/10 (V1 and V2 tie, 4/5)                           -> 3/10
    #   M5: 3/10 (V2, 9/20 < 1/2), 1/5 (V1, 4/5)                -> 1/5
    #   M6: 1 (V0, 1/5 < 1/2), 1/10 (V1, 1/5 + 7/20 = 11/20)    -> 1/10
    assert result.consensus == approx([0, 0, 0, F(3, 10), F(3, 10), F(1, 5), F(1, 10)])
    # Clipped: V0 (0, 0, 0, 1/10); V1 and V2 both (3/10, 3/10, 1/5, 1/10).
    # Ranks: M3 = M4 = (7/20 + 9/20)·3/10 = 6/25, M5 = 4/5·1/5 = 4/25,
    #        M6 = (1/5 + 7/20 + 9/20)·1/10 = 1/10.      Sum = 37/50.
    assert result.ranks == approx([0, 0, 0, F(6, 25), F(6, 25), F(4, 25), F(1, 10)])
    assert result.incentive == approx([0, 0, 0, F(12, 37), F(12, 37), F(8, 37), F(5, 37)])
    # Trust = row sums of clipped weights: V0 1/10, V1 = V2 = 9/10.
    assert result.validator_trust == approx([F(1, 10), F(9, 10), F(9, 10), 0, 0, 0, 0])
    # Bonds with no history: ΔB_ij = S_i·W̄_ij / R_j.
    #   M3-M5: V1 7/20 / (4/5) = 7/16, V2 9/16.   M6: V0 (1/50)/(1/10) = 1/5, V1 7/20, V2 9/20.
    # B = colnorm(0.1·ΔB + 0.9·0) = ΔB.
    expected_bonds = {
        0: {6: F(1, 5)},
        1: {3: F(7, 16), 4: F(7, 16), 5: F(7, 16), 6: F(7, 20)},
        2: {3: F(9, 16), 4: F(9, 16), 5: F(9, 16), 6: F(9, 20)},
    }
    assert result.bonds.keys() == expected_bonds.keys()
    for i, row in expected_bonds.items():
        assert result.bonds[i].keys() == row.keys()
        assert list(result.bonds[i].values()) == approx(list(row.values()))
    # Dividends D_i = Σ_j B_ij·I_j:  V0 1/5·5/37 = 1/37 = 4/148,
    #   V1 7/16·32/37 + 7/20·5/37 = 63/148,  V2 9/16·32/37 + 9/20·5/37 = 81/148.
    assert result.dividends == approx([F(4, 148), F(63, 148), F(81, 148), 0, 0, 0, 0])


def test_a_minority_colluder_cannot_lift_its_miner_above_the_honest_median() -> None:
    result = yuma_consensus(WORKED_EXAMPLE)
    # V0 put all its weight on miner 6, the honest 80% gave it 1/10. Consensus is the honest
    # 1/10, so V0's vote counts as 1/10 and miner 6's rank is what it would be had V0 voted
    # 1/10 like everyone else: (1/5 + 7/20 + 9/20)·1/10.
    assert result.consensus[6] == pytest.approx(0.1)
    assert result.ranks[6] == pytest.approx(0.1)
    honest_weights = {**WORKED_EXAMPLE.weights, 0: {3: 40, 4: 30, 5: 20, 6: 10}}
    honest_v0 = replace(WORKED_EXAMPLE, weights=honest_weights)
    assert yuma_consensus(honest_v0).ranks[6] == pytest.approx(result.ranks[6])
    # Unclipped, miner 6 would rank (1/5·1 + 4/5·1/10) = 7/25 out of a total 1: 28% of the
    # incentive instead of 5/37 (13.5%), and more than any honest miner.
    assert result.incentive[6] == pytest.approx(5 / 37)
    assert result.incentive[6] < min(result.incentive[3:6])
    # Its colluding validator is paid little: only miner 6's bond pays it.
    assert result.dividends[0] == pytest.approx(1 / 37)


def test_bonds_are_a_moving_average_of_last_epochs() -> None:
    # Last epoch V0 held all of miner 3's bond (given unnormalised: 7 for 1). Column 3 now is
    # colnorm(0.1·(0, 7/16, 9/16) + 0.9·(1, 0, 0)) = (9/10, 7/160, 9/160); the other columns
    # have no history, so they are this epoch's ΔB.
    previous = {0: {3: 7.0}}
    result = yuma_consensus(replace(WORKED_EXAMPLE, bonds=previous))
    assert result.bonds[0][3] == pytest.approx(0.9)
    assert result.bonds[1][3] == pytest.approx(7 / 160)
    assert result.bonds[2][3] == pytest.approx(9 / 160)
    assert result.bonds[1][4] == pytest.approx(7 / 16)
    # D_0 = 9/10·12/37 + 1/5·5/37 = 59/185
    # D_1 = 7/160·12/37 + 7/16·20/37 + 7/20·5/37 = 441/1480
    # D_2 = 9/160·12/37 + 9/16·20/37 + 9/20·5/37 = 567/1480
    assert result.dividends == approx([F(59, 185), F(441, 1480), F(567, 1480), 0, 0, 0, 0])


def test_previous_bonds_lose_dropped_uids_and_validators_without_permit() -> None:
    previous: dict[int, Mapping[int, Weight]] = {
        0: {3: 7.0, 99: 5.0},  # uid 99 left the subnet
        4: {3: 100.0},  # a miner: no permit, so no bonds
        42: {3: 1.0},  # a validator uid the subnet no longer has
    }
    result = yuma_consensus(replace(WORKED_EXAMPLE, bonds=previous))
    expected = yuma_consensus(replace(WORKED_EXAMPLE, bonds={0: {3: 1.0}}))
    assert result == expected
    assert 4 not in result.bonds


def test_repeating_an_epoch_keeps_the_bonds() -> None:
    first = yuma_consensus(WORKED_EXAMPLE)
    second = yuma_consensus(replace(WORKED_EXAMPLE, bonds=first.bonds))
    assert flat(second.bonds) == pytest.approx(flat(first.bonds))
    assert second.dividends == pytest.approx(first.dividends)


def test_exactly_kappa_of_the_stake_decides_and_less_does_not() -> None:
    weights = {0: {2: 8, 3: 2}, 1: {2: 2, 3: 8}}
    tie = yuma_consensus(YumaInputs([5, 5, 0, 0], [True, True, False, False], weights))
    assert tie.consensus == approx([0, 0, F(8, 10), F(8, 10)])
    # With less stake validator 0 no longer holds half of it, and miner 2 drops to 2/10.
    less = yuma_consensus(YumaInputs([4, 5, 0, 0], [True, True, False, False], weights))
    assert less.consensus == approx([0, 0, F(2, 10), F(8, 10)])
    strict = YumaParams(kappa=F(2, 3))
    high = yuma_consensus(YumaInputs([5, 5, 0, 0], [True, True, False, False], weights, {}, strict))
    assert high.consensus == approx([0, 0, F(2, 10), F(2, 10)])


def test_a_single_validator_sets_consensus_alone() -> None:
    result = yuma_consensus(YumaInputs([5, 0, 0], [True, False, False], {0: {1: 3, 2: 1}}))
    assert result.consensus == approx([0, F(3, 4), F(1, 4)])
    assert result.incentive == approx([0, F(3, 4), F(1, 4)])
    assert result.dividends == approx([1, 0, 0])
    assert result.validator_trust == approx([1, 0, 0])
    assert plain(result.bonds) == {0: {1: 1.0, 2: 1.0}}


def test_self_weight_is_ignored() -> None:
    result = yuma_consensus(YumaInputs([5, 5], [True, True], {0: {0: 100, 1: 1}, 1: {1: 9}}))
    # Validator 0's row is (0, 1) once its self-weight goes; validator 1's is all self, so
    # it is empty and validator 0's half of the stake alone sets consensus.
    assert result.consensus == approx([0, 1])
    assert result.validator_trust == approx([1, 0])


def test_empty_subnet() -> None:
    result = yuma_consensus(YumaInputs(stake=[], validator_permit=[], weights={}))
    assert result == YumaResult((), (), (), (), (), MappingProxyType({}))


@pytest.mark.parametrize(
    "inputs",
    [
        YumaInputs([0, 0, 0], [True, True, False], {0: {2: 1}, 1: {2: 1}}),  # no stake
        YumaInputs([1, 2, 0], [True, True, False], {}),  # no weights
        YumaInputs([1, 2, 0], [True, True, False], {0: {2: 0}, 1: [0, 0, 0]}),  # zero weights
        YumaInputs([1, 2, 0], [False, False, False], {0: {2: 1}}),  # no permits
    ],
)
def test_nothing_to_reward_gives_all_zeros(inputs: YumaInputs) -> None:
    result = yuma_consensus(inputs)
    assert not result.bonds
    assert all_values(result) == [0.0] * (5 * inputs.n)


def test_huge_raw_weights_do_not_overflow() -> None:
    result = yuma_consensus(YumaInputs([1, 0, 0], [True, False, False], {0: {1: 1e308, 2: 1e308}}))
    assert result.incentive == approx([0, 0.5, 0.5])


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({0: {7: 1}}, "uid 7 is out of range"),
        ({0: {-1: 1}}, "uid -1 is not a UID"),
        ({0: {"1": 1}}, "uid '1' is not a UID"),
        ({5: {1: 1}}, "uid 5 is out of range"),
        ({0: [1, 1]}, "dense row needs 3 values"),
        ({0: {1: math.nan}}, "weights of uid 0 -> uid 1 is nan"),
        ({0: {1: math.inf}}, "must be finite"),
        ({0: {1: -1}}, "weights of uid 0 -> uid 1 is -1"),
        ({0: [0, -0.5, 1]}, "uid 1 is -0.5"),
        ({2: {1: math.nan}}, "weights of uid 2"),  # checked even without a permit
    ],
)
def test_bad_weights_are_refused(weights: dict[int, Mapping[int, Weight]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        yuma_consensus(YumaInputs([1, 1, 0], [True, True, False], weights))


@pytest.mark.parametrize(
    ("stake", "message"),
    [
        ([1, math.nan, 0], "stake of uid 1 is nan"),
        ([1, -3, 0], "stake of uid 1 is -3"),
        ([1, 1, math.inf], "stake of uid 2 is inf"),
    ],
)
def test_bad_stake_is_refused(stake: list[Weight], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        yuma_consensus(YumaInputs(stake, [True, True, False], {}))


def test_other_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="validator_permit has 2 entries but stake has 3"):
        YumaInputs([1, 1, 0], [True, True], {})
    with pytest.raises(TypeError, match="must be a number"):
        yuma_consensus(YumaInputs([1, 0], [True, False], {0: {1: "1"}}))  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="bonds of uid 0 -> uid 1 is nan"):
        yuma_consensus(YumaInputs([1, 0], [True, False], {}, bonds={0: {1: math.nan}}))
    with pytest.raises(ValueError, match="bonds: uid -2 is not a UID"):
        yuma_consensus(YumaInputs([1, 0], [True, False], {}, bonds={-2: {1: 1.0}}))
    for kappa in (0, 1.5, math.nan):
        with pytest.raises(ValueError, match="kappa"):
            YumaParams(kappa=kappa)
    for alpha in (-0.1, 1.1, math.nan):
        with pytest.raises(ValueError, match="bond_alpha"):
            YumaParams(bond_alpha=alpha)


def test_results_are_read_only() -> None:
    result = yuma_consensus(WORKED_EXAMPLE)
    with pytest.raises(TypeError):
        result.bonds[0][6] = 1.0  # type: ignore[index]


@settings(max_examples=200, deadline=None)
@given(subnets())
def test_invariants_hold_for_any_subnet(inputs: YumaInputs) -> None:
    result = yuma_consensus(inputs)
    n = inputs.n
    assert all(len(v) == n for v in (result.consensus, result.incentive, result.dividends))
    assert all(math.isfinite(x) and x >= 0 for x in all_values(result))
    for vector in (result.incentive, result.dividends):
        assert math.fsum(vector) == pytest.approx(1, abs=1e-9) or not any(vector)
    # Paying miners means some validator holds their bonds, and the other way round.
    assert any(result.incentive) == any(result.dividends)
    assert all(t <= 1 + 1e-12 for t in result.validator_trust)
    column_sums = [math.fsum(row.get(j, 0.0) for row in result.bonds.values()) for j in range(n)]
    assert all(s == 0 or s == pytest.approx(1) for s in column_sums)
    permitted = [i for i in range(n) if inputs.validator_permit[i]]
    assert set(result.bonds) <= set(permitted)
    assert all(result.validator_trust[i] == 0 for i in range(n) if i not in permitted)


@settings(max_examples=150, deadline=None)
@given(subnets(), st.randoms(use_true_random=False))
def test_permuting_uids_permutes_every_output(inputs: YumaInputs, rng: random.Random) -> None:
    perm = list(range(inputs.n))
    rng.shuffle(perm)
    before, after = yuma_consensus(inputs), yuma_consensus(permuted(inputs, perm))
    for name in ("consensus", "ranks", "incentive", "dividends", "validator_trust"):
        old, new = getattr(before, name), getattr(after, name)
        assert [new[perm[i]] for i in range(inputs.n)] == list(old), name
    renamed = {perm[i]: {perm[j]: b for j, b in row.items()} for i, row in before.bonds.items()}
    assert plain(after.bonds) == renamed


def test_sums_are_exact_so_the_order_of_rows_cannot_change_a_result() -> None:
    # Miner 4's rank terms are 1/2, 2^-54 and 2^-54: added left to right each tiny term is a
    # rounding tie that rounds back to 1/2, right to left they make 1/2 + 2^-53. Stakes are
    # exact powers of two (validator 3 takes the rest and votes for miner 5).
    stake = [2**53, 1, 1, 2**53 - 2, 0, 0]
    permit = [True, True, True, True, False, False]
    rows: dict[int, Mapping[int, Weight]] = {0: {4: 1}, 1: {4: 1}, 2: {4: 1}, 3: {5: 1}}
    forwards = yuma_consensus(YumaInputs(stake, permit, rows))
    backwards = yuma_consensus(YumaInputs(stake, permit, dict(reversed(rows.items()))))
    assert forwards.ranks[4] == backwards.ranks[4] == 0.5 + 2**-53
    assert forwards == backwards


@settings(max_examples=150, deadline=None)
@given(subnets(), st.data())
def test_a_validator_without_permit_has_no_effect(inputs: YumaInputs, data: st.DataObject) -> None:
    outsiders = [i for i in range(inputs.n) if not inputs.validator_permit[i]]
    assume(outsiders)
    k = data.draw(st.sampled_from(outsiders))
    uids = st.integers(0, inputs.n - 1)
    stake = list(inputs.stake)
    stake[k] = data.draw(st.integers(0, 10**18))
    weights = {**inputs.weights, k: data.draw(st.dictionaries(uids, weight_values))}
    bonds = {**inputs.bonds, k: data.draw(st.dictionaries(uids, st.floats(0, 1e6)))}
    changed = YumaInputs(stake, inputs.validator_permit, weights, bonds, inputs.params)
    assert yuma_consensus(changed) == yuma_consensus(inputs)


def normalised_row(row: Mapping[int, Weight], own_uid: int) -> dict[int, float]:
    kept = {j: float(w) for j, w in row.items() if j != own_uid and w > 0}
    total = math.fsum(kept.values())
    return {j: w / total for j, w in kept.items()} if total else {}


@settings(max_examples=200, deadline=None)
@given(subnets(max_n=8), st.data())
def test_a_coalition_under_kappa_cannot_lift_consensus_above_the_others_votes(
    inputs: YumaInputs, data: st.DataObject
) -> None:
    n = inputs.n
    permitted = [i for i in range(n) if inputs.validator_permit[i]]
    stake = {i: F(inputs.stake[i]) for i in permitted}
    assume(sum(stake.values()) > 0)
    coalition = data.draw(st.sets(st.sampled_from(permitted)))
    assume(sum(stake[i] for i in coalition) < F(1, 2) * sum(stake.values()))
    # The coalition votes anything at all...
    uids = st.integers(0, n - 1)
    weights = dict(inputs.weights)
    for i in coalition:
        weights[i] = data.draw(st.dictionaries(uids, weight_values, min_size=1))
    result = yuma_consensus(YumaInputs(inputs.stake, inputs.validator_permit, weights))
    # ...yet no column's consensus exceeds the highest vote of the staked validators outside it.
    others = [
        normalised_row(weights[i], i)  # type: ignore[arg-type]
        for i in permitted
        if i not in coalition and stake[i] > 0 and i in weights
    ]
    for j in range(n):
        highest = max((row.get(j, 0.0) for row in others), default=0.0)
        assert result.consensus[j] <= highest * (1 + 1e-12) + 1e-300


@settings(max_examples=60, deadline=None)
@given(subnets(), st.lists(st.integers(0, 20), min_size=10, max_size=10))
def test_scaling_a_row_changes_nothing(inputs: YumaInputs, exponents: list[int]) -> None:
    # Rows are normalised inside, so raw u16 weights and normalised ones are the same vote.
    scaled = {
        i: {j: w * 2.0 ** exponents[i] for j, w in row.items()}  # type: ignore[union-attr]
        for i, row in inputs.weights.items()
    }
    changed = YumaInputs(inputs.stake, inputs.validator_permit, scaled, inputs.bonds)
    assert yuma_consensus(changed) == yuma_consensus(inputs)


def dense_epoch(seed: int) -> YumaInputs:
    rng = random.Random(seed)
    n, validators = 256, 64
    return YumaInputs(
        stake=[rng.uniform(1e3, 1e6) if i < validators else 0.0 for i in range(n)],
        validator_permit=[i < validators for i in range(n)],
        weights={i: [rng.random() for _ in range(n)] for i in range(validators)},
    )


def test_a_full_dense_epoch_is_fast() -> None:
    # The budget is 100 ms (bench/epoch_core.py measures it); this guards against a
    # regression by an order of magnitude without being flaky on a busy machine.
    inputs = dense_epoch(7)
    warm = yuma_consensus(inputs)
    inputs = YumaInputs(inputs.stake, inputs.validator_permit, inputs.weights, warm.bonds)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        result = yuma_consensus(inputs)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.5
    assert math.fsum(result.incentive) == pytest.approx(1)
    assert len(result.bonds) == 64
