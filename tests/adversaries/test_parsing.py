"""The behaviour grammar and the predictions tests rely on (pure; no processes)."""

from __future__ import annotations

import pytest

from tests.adversaries import Behaviour, BehaviourError, flipped_leaves, is_dropped
from tests.adversaries.behaviours import _fit
from tests.adversaries.probes import make_shard


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("honest", Behaviour("honest")),
        ("wrongproof", Behaviour("wrongproof")),
        ("replay", Behaviour("replay")),
        ("drop:0.25", Behaviour("drop", fraction=0.25)),
        ("bitflip:1", Behaviour("bitflip", fraction=1.0)),
        ("slow:1.5", Behaviour("slow", seconds=1.5)),
        ("rebuild:4", Behaviour("rebuild", sources=4)),
        ("fakecap:1MiB", Behaviour("fakecap", keep_bytes=2**20)),
        ("fakecap:4096", Behaviour("fakecap", keep_bytes=4096)),
    ],
)
def test_specs_parse(spec: str, expected: Behaviour) -> None:
    assert Behaviour.parse(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lazy", "unknown behaviour"),
        ("drop", "drop:VALUE"),
        ("replay:2", "as replay"),
        ("drop:1.5", "0..1"),
        ("bitflip:x", "bitflip:x"),
        ("slow:-1", "0..600"),
        ("rebuild:0", "1..128"),
        ("rebuild:2.5", "rebuild:2.5"),
        ("fakecap:lots", "not a size"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(BehaviourError, match=message):
        Behaviour.parse(spec)


def test_drop_picks_about_the_fraction_and_is_monotonic() -> None:
    ids = [make_shard(256, seed).id for seed in range(2000)]
    quarter = {i for i in ids if is_dropped(i, 0.25)}
    half = {i for i in ids if is_dropped(i, 0.5)}
    assert 400 < len(quarter) < 600
    assert quarter <= half  # a larger fraction loses a superset
    assert not any(is_dropped(i, 0.0) for i in ids)
    assert all(is_dropped(i, 1.0) for i in ids)


def test_bitflip_picks_about_the_fraction_of_leaves() -> None:
    shard_id = make_shard(256, 1).id
    assert flipped_leaves(shard_id, 4000, 0.0) == frozenset()
    assert flipped_leaves(shard_id, 4000, 1.0) == frozenset(range(4000))
    assert 900 < len(flipped_leaves(shard_id, 4000, 0.25)) < 1100
    assert flipped_leaves(shard_id, 4000, 0.25) != flipped_leaves(make_shard(256, 2).id, 4000, 0.25)


@pytest.mark.parametrize(
    ("indices", "leaf_count", "expected"),
    [
        ([1, 5, 9], 16, [1, 5, 9]),
        ([3, 19], 16, [3, 0]),  # 19 % 16 == 3 again: padded with the first free leaf
        ([0, 1, 2, 3], 2, [0, 1]),  # a smaller shard gives what it has
    ],
)
def test_wrongproof_fits_the_challenge_to_the_other_shard(
    indices: list[int], leaf_count: int, expected: list[int]
) -> None:
    assert _fit(indices, leaf_count) == expected
