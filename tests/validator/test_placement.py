"""Placement: distinct IPs always, distinct networks when possible, weighted by room and trust."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from validator.placement import (
    FREE_CAP,
    Candidate,
    credible_free,
    hard_network,
    network_of,
    pick,
    rank,
)

GiB = 2**30


def miner(i: int, host: str, free: int = 100 * GiB, reputation: float = 1.0) -> Candidate:
    return Candidate(f"hk{i}", host, 9000 + i, free, reputation)


candidates_strategy = st.lists(
    st.builds(
        miner,
        st.integers(0, 10**6),
        st.sampled_from([f"10.0.{n}.{h}" for n in range(3) for h in range(1, 4)]),
        st.integers(0, 10 * GiB),
        st.floats(0, 1),
    ),
    max_size=30,
    unique_by=lambda c: c.hotkey,
)


@settings(max_examples=200, deadline=None)
@given(candidates_strategy, st.integers(1, 12), st.integers(1, GiB), st.integers(0, 2**32))
def test_never_two_shards_behind_one_ip_and_only_eligible_miners(
    candidates: list[Candidate], count: int, shard: int, seed: int
) -> None:
    chosen = pick(rank(candidates, shard, random.Random(seed)), count)
    assert len({c.host for c in chosen}) == len(chosen)
    assert len({c.hotkey for c in chosen}) == len(chosen)
    assert all(c.free_bytes >= shard and c.reputation > 0 for c in chosen)
    eligible_hosts = {c.host for c in candidates if c.free_bytes >= shard and c.weight > 0}
    assert len(chosen) == min(count, len(eligible_hosts))


def test_distinct_networks_are_preferred_then_relaxed() -> None:
    pool = [miner(i, f"10.0.{i // 2}.{i % 2 + 1}") for i in range(8)]  # 4 networks, 2 each
    chosen = pick(rank(pool, 1, random.Random(1)), 4)
    assert len({network_of(c.host) for c in chosen}) == 4
    chosen = pick(rank(pool, 1, random.Random(1)), 6)
    assert len({c.host for c in chosen}) == 6  # then a second host per network


def test_replacements_avoid_hosts_and_miners_already_used() -> None:
    pool = [miner(i, f"127.0.0.{i + 1}") for i in range(10)]
    ranked = rank(pool, 1, random.Random(2))
    first = pick(ranked, 8)
    failed = first[0]
    spare = pick(ranked, 1, taken_hosts=[c.host for c in first[1:]], exclude=[failed.hotkey])
    assert len(spare) == 1
    assert spare[0].hotkey not in {c.hotkey for c in first}


def test_more_room_and_trust_means_more_shards() -> None:
    pool = [
        miner(0, "10.1.0.1", free=FREE_CAP, reputation=1.0),
        miner(1, "10.2.0.1", free=FREE_CAP // 4, reputation=1.0),
        miner(2, "10.3.0.1", free=FREE_CAP, reputation=0.25),
        miner(3, "10.4.0.1", free=FREE_CAP, reputation=0.0),
    ]
    rng = random.Random(3)
    firsts = Counter(rank(pool, 1, rng)[0].hotkey for _ in range(4000))
    assert firsts["hk3"] == 0
    assert firsts["hk0"] > 2 * firsts["hk1"]
    assert firsts["hk0"] > 2 * firsts["hk2"]
    assert abs(firsts["hk1"] - firsts["hk2"]) < 0.3 * firsts["hk1"]  # equal weights


def test_ranking_is_reproducible_for_a_seed() -> None:
    pool = [miner(i, f"10.9.{i}.1", free=(i + 1) * GiB) for i in range(20)]
    first = [c.hotkey for c in rank(pool, 1, random.Random(7))]
    assert first == [c.hotkey for c in rank(pool, 1, random.Random(7))]
    assert first != [c.hotkey for c in rank(pool, 1, random.Random(8))]


def test_small_weights_are_still_random() -> None:
    """Miners with little room (256 MiB free is 1/4096 of FREE_CAP) are ordered at random by
    their weights, not tied and taken in hotkey order (u ** (1 / weight) underflowed to 0)."""
    pool = [miner(i, f"10.8.{i}.1", free=256 * 2**20) for i in range(6)]
    rng = random.Random(4)
    firsts = Counter(rank(pool, 1, rng)[0].hotkey for _ in range(6000))
    assert all(700 < firsts[c.hotkey] < 1300 for c in pool), firsts


@settings(max_examples=200, deadline=None)
@given(candidates_strategy, st.integers(1, 12), st.integers(0, 2**32), st.sampled_from([16, 24]))
def test_the_network_rule_never_puts_two_shares_in_one_network(
    candidates: list[Candidate], count: int, seed: int, prefix: int
) -> None:
    """Three hotkeys on one machine's /24 got up to 3 of a segment's 8 shares before: with
    the rule on, one network holds at most one share, replacements included."""
    ranked = rank(candidates, 1, random.Random(seed))
    chosen = pick(ranked, count, network_prefix=prefix)
    networks = [hard_network(c.host, prefix) for c in chosen]
    assert len(set(networks)) == len(networks)
    spare = pick(ranked, 1, taken_hosts={c.host for c in chosen}, network_prefix=prefix)
    assert not spare or hard_network(spare[0].host, prefix) not in networks
    # Off (0), it is the soft preference again: as many shares as distinct hosts allow.
    assert len(pick(ranked, count)) >= len(chosen)


def test_the_network_rule_exempts_loopback_and_names() -> None:
    assert hard_network("10.1.2.3", 24) == "10.1.2.0/24"
    assert hard_network("2001:db8::1", 24) == "2001:db8::/48"
    assert hard_network("127.0.0.5", 24) is None  # a local net
    assert hard_network("miner.example", 24) is None
    assert hard_network("10.1.2.3", 0) is None
    local = [miner(i, f"127.0.0.{i + 2}") for i in range(8)]
    assert len(pick(local, 8, network_prefix=24)) == 8


def test_claimed_space_counts_only_up_to_what_was_proven() -> None:
    allowance = 64 * GiB
    assert credible_free(2**50, 0, allowance) == allowance  # fakecap: 1 PiB claimed
    assert credible_free(2**50, 10 * GiB, allowance) == 74 * GiB
    assert credible_free(5 * GiB, 10 * GiB, allowance) == 5 * GiB  # never more than claimed
    honest = miner(1, "10.0.0.1", credible_free(200 * GiB, 150 * GiB, allowance))
    bragging = miner(2, "10.0.1.1", credible_free(2**50, 0, allowance))
    assert honest.weight > bragging.weight
