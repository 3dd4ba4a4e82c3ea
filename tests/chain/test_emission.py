"""The halving schedule in integer rao, and the owner / miners / validators split."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import (
    DEFAULT_SPLIT,
    RAO_PER_TAO,
    TOTAL_SUPPLY,
    EmissionSchedule,
    EmissionSplit,
    EraEmission,
)

TAO = RAO_PER_TAO
MAINNET = EmissionSchedule()


def step(schedule: EmissionSchedule, issuance: int, blocks: int) -> tuple[int, list[EraEmission]]:
    """The reference: one block at a time, the rate read before each block."""
    eras: list[EraEmission] = []
    for _ in range(blocks):
        era, emitted = schedule.era(issuance), schedule.block_emission(issuance)
        if eras and eras[-1].era == era:
            eras[-1] = EraEmission(era, eras[-1].blocks + 1, eras[-1].emitted + emitted)
        else:
            eras.append(EraEmission(era, 1, emitted))
        issuance += emitted
    return issuance, eras


def test_mainnet_constants() -> None:
    assert TOTAL_SUPPLY == 21_000_000_000_000_000
    assert MAINNET.block_emission(0) == 1_000_000_000
    assert MAINNET.era(0) == 0


@pytest.mark.parametrize(
    ("era", "threshold_tao", "rate_before", "rate_after"),
    [
        (1, 10_500_000, 1_000_000_000, 500_000_000),
        (2, 15_750_000, 500_000_000, 250_000_000),
        (3, 18_375_000, 250_000_000, 125_000_000),
    ],
)
def test_block_emission_halves_at_exactly_the_threshold(
    era: int, threshold_tao: int, rate_before: int, rate_after: int
) -> None:
    threshold = threshold_tao * TAO
    assert MAINNET.era_threshold(era) == threshold
    assert MAINNET.era(threshold - 1) == era - 1
    assert MAINNET.block_emission(threshold - 1) == rate_before
    assert MAINNET.era(threshold) == era
    assert MAINNET.block_emission(threshold) == rate_after
    assert MAINNET.block_emission(threshold + 1) == rate_after


def test_era_thresholds_round_up_past_two_to_the_fifteen() -> None:
    # 21M TAO in rao is 21·5^15·2^15, so from era 16 on C·(1 - 2^-h) is not a whole rao and
    # the era starts at the next whole rao.
    threshold = MAINNET.era_threshold(16)
    assert Fraction(threshold - 1) < Fraction(TOTAL_SUPPLY) * (1 - Fraction(1, 2**16))
    assert Fraction(threshold) >= Fraction(TOTAL_SUPPLY) * (1 - Fraction(1, 2**16))
    assert MAINNET.era(threshold - 1) == 15
    assert MAINNET.era(threshold) == 16


@settings(max_examples=300)
@given(era=st.integers(0, 25), position=st.floats(1e-6, 1 - 1e-6))
def test_era_matches_subtensors_float_formula_away_from_thresholds(
    era: int, position: float
) -> None:
    # Floats blur the boundary itself, so stay a millionth of the era's span away from it.
    low, high = MAINNET.era_threshold(era), MAINNET.era_threshold(era + 1)
    issuance = low + int((high - low) * position)
    assert math.floor(math.log2(1 / (1 - issuance / TOTAL_SUPPLY))) == era
    assert MAINNET.era(issuance) == era
    assert MAINNET.block_emission(issuance) == TAO >> era


def test_a_span_across_the_first_halving_pays_the_old_rate_until_it_is_crossed() -> None:
    genesis = 10_500_000 * TAO - 5 * TAO // 2  # 2.5 TAO below the halving
    span = MAINNET.emit(genesis, 5)
    # Blocks 1-3 pay 1 TAO: the third starts at 10.5M - 0.5 TAO and ends 0.5 TAO past the
    # threshold. Blocks 4 and 5 pay 0.5 TAO each.
    assert span.eras == (EraEmission(0, 3, 3 * TAO), EraEmission(1, 2, TAO))
    assert span.emitted == 4 * TAO
    assert span.end_issuance == 10_500_000 * TAO + 3 * TAO // 2
    schedule = EmissionSchedule(genesis_issuance=genesis)
    assert schedule.issuance_at(5) == span.end_issuance
    assert schedule.issuance_at(0) == genesis


def test_one_mainnet_era_is_ten_and_a_half_million_blocks() -> None:
    span = MAINNET.emit(0, 10_500_001)
    assert span.eras == (
        EraEmission(0, 10_500_000, 10_500_000 * TAO),
        EraEmission(1, 1, TAO // 2),
    )


def test_mainnet_issuance_converges_below_the_cap_and_then_stops() -> None:
    span = MAINNET.emit(0, 10**15)
    assert span.blocks == sum(era.blocks for era in span.eras) == 10**15
    assert span.emitted == sum(era.emitted for era in span.eras)
    # 1 TAO >> 30 is 0 rao: issuance stops in era 30, within C/2^30 rao of the cap.
    assert [era.era for era in span.eras] == list(range(31))
    assert span.eras[-1].emitted == 0
    assert MAINNET.era_threshold(30) <= span.end_issuance < TOTAL_SUPPLY
    assert TOTAL_SUPPLY - span.end_issuance <= TOTAL_SUPPLY >> 30
    assert MAINNET.block_emission(span.end_issuance) == 0
    assert MAINNET.emit(span.end_issuance, 10**6).emitted == 0


def test_sixty_and_more_eras_never_pass_the_cap() -> None:
    # A rate of 2^64 halves exactly 64 times before it floors to 0, so the run visits 65
    # eras that issue something; the cap is 21·2^70 so every threshold is a whole number.
    schedule = EmissionSchedule(supply_cap=21 * 2**70, base_block_emission=2**64)
    issuance, paying = 0, 0
    for _ in range(200):  # jump in big spans, checking the invariants between them
        span = schedule.emit(issuance, 10**9)
        assert span.end_issuance <= schedule.supply_cap
        assert span.end_issuance >= issuance
        paying += sum(1 for era in span.eras if era.emitted)
        issuance = span.end_issuance
    assert schedule.era(issuance) == 65
    assert schedule.block_emission(issuance) == 0
    assert schedule.supply_cap - issuance <= schedule.supply_cap >> 65
    assert paying >= 65


def test_the_last_block_is_clamped_to_the_remaining_supply() -> None:
    schedule = EmissionSchedule(supply_cap=1000, base_block_emission=2000)
    assert schedule.block_emission(0) == 1000
    assert schedule.block_emission(999) == 1
    span = schedule.emit(0, 5)
    assert span.end_issuance == 1000
    # At the cap the era is the first one that starts there: 1000 needs 10 bits.
    assert span.eras == (EraEmission(0, 1, 1000), EraEmission(10, 4, 0))
    assert schedule.era(1000) == 10
    assert schedule.era_threshold(10) == 1000
    assert schedule.block_emission(1000) == 0


def test_an_era_summed_block_by_block_matches_emit_and_the_issuance_delta() -> None:
    schedule = EmissionSchedule(supply_cap=21_000, base_block_emission=16)
    start, end = schedule.era_threshold(1), schedule.era_threshold(2)  # 10_500, 15_750
    issuance, blocks = 0, 0
    while issuance < start:  # walk up to era 1
        issuance += schedule.block_emission(issuance)
        blocks += 1
    entered, era_blocks, era_sum = issuance, 0, 0
    while schedule.era(issuance) == 1:
        rate = schedule.block_emission(issuance)
        assert rate == 8
        era_sum += rate
        era_blocks += 1
        issuance += rate
    assert era_sum == issuance - entered
    # Neither threshold is a multiple of the rate, so the crossing blocks overshoot them:
    # 657 blocks of 16 reach 10_512, then 655 blocks of 8 reach 15_752.
    assert (entered, issuance) == (start + 12, end + 2) == (10_512, 15_752)
    assert (blocks, era_blocks) == (657, 655)
    span = schedule.emit(0, blocks + era_blocks)
    assert span.eras[1] == EraEmission(1, era_blocks, era_sum)
    assert span.end_issuance == issuance


@settings(max_examples=60, deadline=None)
@given(
    era=st.integers(1, 5),
    below=st.integers(0, 3_000 * TAO),
    blocks=st.integers(0, 3_000),
)
def test_emit_equals_stepping_across_a_mainnet_halving(era: int, below: int, blocks: int) -> None:
    genesis = MAINNET.era_threshold(era) - below
    end, eras = step(MAINNET, genesis, blocks)
    span = MAINNET.emit(genesis, blocks)
    assert (span.end_issuance, list(span.eras)) == (end, eras)


@settings(max_examples=150, deadline=None)
@given(
    cap=st.integers(1, 10**6),
    rate=st.integers(0, 10**4),
    start=st.floats(0, 1),
    blocks=st.integers(0, 2_000),
)
def test_emit_equals_stepping_on_scaled_schedules(
    cap: int, rate: int, start: float, blocks: int
) -> None:
    schedule = EmissionSchedule(supply_cap=cap, base_block_emission=rate)
    genesis = min(cap, int(cap * start))
    end, eras = step(schedule, genesis, blocks)
    span = schedule.emit(genesis, blocks)
    assert (span.end_issuance, list(span.eras)) == (end, eras)
    assert span.end_issuance <= cap


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: MAINNET.era(-1), ValueError),
        (lambda: MAINNET.era(TOTAL_SUPPLY + 1), ValueError),
        (lambda: MAINNET.block_emission(TOTAL_SUPPLY + 1), ValueError),
        (lambda: MAINNET.emit(0, -1), ValueError),
        (lambda: MAINNET.era_threshold(-1), ValueError),
        (lambda: MAINNET.era(1.5), TypeError),  # type: ignore[arg-type]
        (lambda: EmissionSchedule(supply_cap=0), ValueError),
        (lambda: EmissionSchedule(base_block_emission=-1), ValueError),
        (lambda: EmissionSchedule(genesis_issuance=TOTAL_SUPPLY + 1), ValueError),
    ],
)
def test_out_of_range_arguments_are_refused(call: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        call()  # type: ignore[operator]


def test_default_split_is_eighteen_percent_then_halves() -> None:
    shares = DEFAULT_SPLIT.split(1_000_000_000)
    assert (shares.owner, shares.miners, shares.validators) == (
        180_000_000,
        410_000_000,
        410_000_000,
    )
    # 101 rao: owner floor(18.18) = 18, miners floor(83/2) = 41, validators the other 42.
    odd = DEFAULT_SPLIT.split(101)
    assert (odd.owner, odd.miners, odd.validators) == (18, 41, 42)
    assert DEFAULT_SPLIT.split(0).total == 0


@given(
    total=st.integers(0, 10**20),
    owner=st.fractions(0, 1),
    miners=st.fractions(0, 1),
)
def test_split_always_adds_up_to_the_total(total: int, owner: Fraction, miners: Fraction) -> None:
    shares = EmissionSplit(owner_share=owner, miner_share=miners).split(total)
    assert shares.owner + shares.miners + shares.validators == shares.total == total
    assert min(shares.owner, shares.miners, shares.validators) >= 0
    assert shares.owner == math.floor(total * owner)
    assert abs(shares.miners - (total - shares.owner) * miners) < 1


def test_split_shares_must_be_exact_fractions_in_range() -> None:
    assert EmissionSplit(owner_share=Fraction("0.18")) == DEFAULT_SPLIT
    with pytest.raises(TypeError):
        EmissionSplit(owner_share=0.18)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="owner_share"):
        EmissionSplit(owner_share=Fraction(3, 2))
    with pytest.raises(ValueError, match="miner_share"):
        EmissionSplit(miner_share=Fraction(-1, 2))
    with pytest.raises(ValueError, match="non-negative"):
        DEFAULT_SPLIT.split(-1)
