"""Subnets for the chain tests: the worked example, and random ones for Hypothesis."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import strategies as st

from chain import YumaInputs
from chain.yuma import Matrix, Weight

stakes = st.one_of(
    st.integers(0, 10**15),
    st.floats(0, 1e7, allow_nan=False, allow_infinity=False),
    st.fractions(0, 1000),
)
weight_values = st.one_of(
    st.just(0),
    st.integers(0, 65_535),  # subtensor's u16 weights
    st.floats(0, 1e3, allow_nan=False, allow_infinity=False),
)
bond_values = st.floats(0, 1, allow_nan=False)

# UIDs 0-2 are validators, 3-6 miners. Validator 0 holds 20% of the stake and colludes with
# miner 6; validators 1 and 2 are honest. Rows come raw and in both shapes, to be normalised:
#   V0 {6: 5}                      -> (0,    0,    0,    1)
#   V1 {3: 40, 4: 30, 5: 20, 6: 10} -> (2/5,  3/10, 1/5,  1/10)
#   V2 dense (.., 30, 30, 30, 10)   -> (3/10, 3/10, 3/10, 1/10)
# Stake 20, 35, 45 normalises to S = (1/5, 7/20, 9/20).
WORKED_EXAMPLE = YumaInputs(
    stake=[20, 35, 45, 0, 0, 0, 0],
    validator_permit=[True, True, True, False, False, False, False],
    weights={
        0: {6: 5},
        1: {3: 40, 4: 30, 5: 20, 6: 10},
        2: [0, 0, 0, 30, 30, 30, 10],
    },
)


@st.composite
def subnets(draw: st.DrawFn, max_n: int = 10) -> YumaInputs:
    n = draw(st.integers(0, max_n))
    stake = draw(st.lists(stakes, min_size=n, max_size=n))
    permit = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    weights: dict[int, Mapping[int, Weight]] = {}
    bonds: dict[int, Mapping[int, Weight]] = {}
    if n:
        uids = st.integers(0, n - 1)
        for i in draw(st.sets(uids)):
            weights[i] = draw(st.dictionaries(uids, weight_values, max_size=n))
        for i in draw(st.sets(uids)):
            bonds[i] = draw(st.dictionaries(uids, bond_values, max_size=n))
    return YumaInputs(stake=stake, validator_permit=permit, weights=weights, bonds=bonds)


def permuted(inputs: YumaInputs, perm: list[int]) -> YumaInputs:
    """The same subnet with UID i renamed ``perm[i]``."""
    n = inputs.n
    stake: list[Weight] = [0] * n
    permit = [False] * n
    for i in range(n):
        stake[perm[i]] = inputs.stake[i]
        permit[perm[i]] = inputs.validator_permit[i]

    def rename(matrix: Matrix) -> dict[int, Mapping[int, Weight]]:
        renamed: dict[int, Mapping[int, Weight]] = {}
        for i, row in matrix.items():
            assert isinstance(row, Mapping)  # subnets() draws sparse rows
            renamed[perm[i]] = {perm[j]: w for j, w in row.items()}
        return renamed

    return YumaInputs(
        stake=stake,
        validator_permit=permit,
        weights=rename(inputs.weights),
        bonds=rename(inputs.bonds),
        params=inputs.params,
    )
