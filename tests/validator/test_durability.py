"""The durability model against hand-computed cases and Backblaze's published table, and the
simulator against the model within its 95% interval (seeded, a few seconds)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bench.durability import Scenario, poisson_interval, simulate
from validator.durability import (
    DAY,
    HOUR,
    YEAR,
    DurabilityInputs,
    backblaze_annual_loss,
    binomial_tail,
    durability,
    nines,
    parse_rate,
    poisson_tail,
)


def test_rates_parse_as_the_chance_of_failing_within_the_period() -> None:
    assert parse_rate("5%/day") == pytest.approx(-math.log(0.95) / DAY)
    assert parse_rate("2%/year") == pytest.approx(-math.log(0.98) / YEAR)
    assert parse_rate("3/year") == pytest.approx(3 / YEAR)
    assert parse_rate("0.1%/hour") == pytest.approx(-math.log(0.999) / HOUR)
    for bad in ("5%", "fast", "100%/day", "-1/day", "5%/fortnight"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_tails_match_hand_computed_sums() -> None:
    # P(X >= 2), X ~ Binomial(3, 0.1): 3 * 0.01 * 0.9 + 0.001
    assert binomial_tail(3, 2, 0.1) == pytest.approx(0.028)
    assert binomial_tail(6, 0, 0.3) == 1.0
    assert binomial_tail(6, 7, 0.3) == 0.0
    # Wikipedia's binomial table, as Backblaze's own tests use it: P(X <= 2) = 0.744310.
    assert 1 - binomial_tail(6, 3, 0.3) == pytest.approx(0.744310, abs=1e-6)
    # P(X >= 2), X ~ Poisson(0.5): 1 - e^-0.5 (1 + 0.5)
    assert poisson_tail(0.5, 2) == pytest.approx(1 - math.exp(-0.5) * 1.5)
    assert poisson_tail(1e-4, 5) == pytest.approx(1e-20 / 120, rel=1e-3)  # no cancellation


@pytest.mark.parametrize(
    ("parity", "period_loss", "annual"),
    [(2, 4.109e-10, 1.500e-07), (1, 1.125e-06, 4.105e-04), (3, 8.443e-14, 3.082e-11)],
)
def test_backblaze_published_table(parity: int, period_loss: float, annual: float) -> None:
    """`python durability.py 4 2 0.10 1` in Backblaze/erasure-coding-durability: losing
    parity + 1 of 6 shards in a day, and in a year. Our code, their published figures."""
    assert binomial_tail(6, parity + 1, 0.10 / 365) == pytest.approx(period_loss, rel=1e-3)
    # Their year is 4 data shards and 2 parity; "failure threshold" rows vary the parity.
    assert backblaze_annual_loss(6 - parity, parity, 0.10, 1.0) == pytest.approx(annual, rel=1e-3)
    assert math.floor(nines(1.500e-07)) == 6  # their "--> 6 nines" row


def test_renewal_form_matches_its_leading_term_by_hand() -> None:
    """Repair at the first loss, a fixed window (no rounds, no queue): the loss rate is
    m λ · C(m-1, m-k) (λ w)^(m-k) to leading order."""
    rate, window = 1e-6, 1000.0
    inputs = DurabilityInputs(
        k=2, m=4, failure_rate=rate, challenge_seconds=1e-9, containment_rechecks=0,
        repair_seconds=1e-9, rebuild_bytes_per_second=1.0, miner_bytes=1e-9,
        unseen_after=window,
    )  # fmt: skip
    # The detection cap (unseen_after) makes the window exactly `window`.
    inputs = replace(inputs, challenge_seconds=window, containment_rechecks=1)
    result = durability(inputs)
    assert result.window_seconds == pytest.approx(window)
    leading = 4 * rate * 3 * (rate * window) ** 2 * YEAR
    assert result.segment_losses_per_year == pytest.approx(leading, rel=0.01)
    assert result.segment_loss_per_year == pytest.approx(1 - math.exp(-leading), rel=0.01)
    # Backblaze's fixed periods see C(4,3) (λw)^3 per period: m - k + 1 = 3 orderings fewer.
    assert result.segment_losses_per_year / result.backblaze_segment_loss_per_year == (
        pytest.approx(3, rel=0.05)
    )


def test_more_parity_faster_repair_and_lazy_repair_move_the_nines_the_right_way() -> None:
    base = DurabilityInputs(k=4, m=8, failure_rate=parse_rate("5%/day"))
    nines_of = lambda i: durability(i).segment_nines  # noqa: E731
    assert nines_of(replace(base, m=10)) > nines_of(base)
    assert nines_of(replace(base, rebuild_bytes_per_second=80e6)) > nines_of(base)
    assert nines_of(replace(base, challenge_seconds=300)) < nines_of(base)
    lazy = durability(replace(base, repair_threshold=2))
    assert lazy.segment_nines < nines_of(base)
    assert lazy.repair_bytes_per_stored_byte_per_year < (
        durability(base).repair_bytes_per_stored_byte_per_year
    )
    # Outages shorter than detection cost nothing.
    brief = durability(replace(base, outage_seconds=1.0))
    assert brief.share_loss_rate < 1e-30
    assert brief.segment_loss_per_year < 1e-100


def test_an_object_is_as_safe_as_its_segments_together() -> None:
    result = durability(DurabilityInputs(k=2, m=4, failure_rate=parse_rate("20%/day")))
    p = result.segment_loss_per_year
    assert result.object_loss_per_year == pytest.approx(1 - (1 - p) ** 64)
    assert result.object_nines < result.segment_nines


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="k <= m"):
        DurabilityInputs(k=9, m=8, failure_rate=0.0)
    with pytest.raises(ValueError, match="repair_threshold"):
        DurabilityInputs(k=4, m=8, failure_rate=0.0, repair_threshold=5)


STRESSED = DurabilityInputs(
    k=2, m=4, failure_rate=parse_rate("20%/day"), challenge_seconds=HOUR, repair_seconds=600.0
)


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario("independent", STRESSED, segments=400, years=0.5, seed=11),
        Scenario(
            "outages", replace(STRESSED, outage_seconds=6 * HOUR), segments=400, years=1.0,
            seed=12,
        ),
    ],
    ids=["independent", "outages"],
)  # fmt: skip
def test_simulator_agrees_with_the_model_where_it_applies(scenario: Scenario) -> None:
    result = simulate(scenario).to_dict()
    assert result["segments_lost"] >= 20  # enough to measure a rate
    low, high = result["segment_losses_per_year_95"]
    assert low <= result["model_segment_losses_per_year"] <= high, result
    assert result["fraction_below_threshold"] == pytest.approx(
        result["model_fraction_below_threshold"], rel=0.35
    )
    assert result["repair_bytes_per_stored_byte_per_year"] == pytest.approx(
        result["model_repair_bytes_per_stored_byte_per_year"], rel=0.2
    )


def test_simulator_is_seeded() -> None:
    scenario = Scenario("x", STRESSED, segments=100, years=0.1, seed=3)
    first, second = simulate(scenario).to_dict(), simulate(scenario).to_dict()
    del first["cpu_seconds"], second["cpu_seconds"]
    assert first == second


def test_an_operator_leaving_loses_what_the_model_cannot_see() -> None:
    """40% of the hotkeys on one operator: segments with 5 or more of 8 shares on it (about
    17% by the binomial) go at once, where the independent model says 1e-16 a year."""
    policy = DurabilityInputs(k=4, m=8, failure_rate=parse_rate("1%/day"))
    scenario = Scenario("operator", policy, segments=400, years=0.05, operator_fraction=0.4)
    result = simulate(scenario).to_dict()
    expected = 400 * binomial_tail(8, 5, 0.4)
    assert result["segments_lost"] == pytest.approx(expected, rel=0.5)
    assert result["model_segment_loss_per_year"] < 1e-9
    assert not result["model_within_95"]


def test_a_dark_network_costs_each_segment_one_share() -> None:
    """The /24 rule: 8 miners per network go dark together, yet no segment loses more than
    one share to it, so nothing is lost; repair traffic rises instead."""
    policy = DurabilityInputs(k=4, m=8, failure_rate=parse_rate("1%/day"))
    quiet = Scenario("quiet", policy, miners=128, segments=300, years=0.05, miners_per_network=8)
    dark = replace(quiet, network_outages_per_year=50.0)
    calm, stormy = simulate(quiet).to_dict(), simulate(dark).to_dict()
    assert stormy["segments_lost"] == 0
    assert stormy["repair_bytes_per_stored_byte_per_year"] > (
        2 * calm["repair_bytes_per_stored_byte_per_year"]
    )


def test_poisson_interval_covers_the_count() -> None:
    assert poisson_interval(0) == (0.0, pytest.approx(3.69, abs=0.05))
    low, high = poisson_interval(100)
    assert 80 < low < 82 and 121 < high < 123  # exact: 81.4, 121.6
