"""ErasureParams: what describes a valid encoding, and what does not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erasure import ErasureParams, InvalidParamsError
from erasure.params import (
    DEFAULT_K,
    DEFAULT_LEAF_SIZE,
    DEFAULT_M,
    DEFAULT_SEGMENT_SIZE,
    MAX_LEAF_SIZE,
    MAX_SEGMENT_SIZE,
    MAX_SHARES,
    MIN_LEAF_SIZE,
)


def test_defaults() -> None:
    params = ErasureParams()
    assert (params.k, params.m) == (DEFAULT_K, DEFAULT_M) == (4, 8)
    assert params.segment_size == DEFAULT_SEGMENT_SIZE == 16 * 1024 * 1024
    assert params.leaf_size == DEFAULT_LEAF_SIZE == 16 * 1024


@pytest.mark.parametrize(
    ("k", "m", "segment_size", "leaf_size"),
    [
        (1, 1, 1, MIN_LEAF_SIZE),
        (MAX_SHARES, MAX_SHARES, MAX_SEGMENT_SIZE, MAX_LEAF_SIZE),
        (1, MAX_SHARES, 4096, 128),
        (3, 5, 40_000, 1024),
    ],
)
def test_edges_that_are_valid(k: int, m: int, segment_size: int, leaf_size: int) -> None:
    params = ErasureParams(k=k, m=m, segment_size=segment_size, leaf_size=leaf_size)
    assert (params.k, params.m, params.segment_size, params.leaf_size) == (
        k,
        m,
        segment_size,
        leaf_size,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"k": 0},
        {"k": -1},
        {"k": 5, "m": 4},
        {"k": 1, "m": 0},
        {"k": 4, "m": MAX_SHARES + 1},
        {"k": MAX_SHARES + 1, "m": MAX_SHARES + 1},
        {"segment_size": 0},
        {"segment_size": -1},
        {"segment_size": MAX_SEGMENT_SIZE + 1},
        {"leaf_size": 0},
        {"leaf_size": MIN_LEAF_SIZE - 1},
        {"leaf_size": MIN_LEAF_SIZE // 2},
        {"leaf_size": MIN_LEAF_SIZE + 1},
        {"leaf_size": 96},
        {"leaf_size": 1000},
        {"leaf_size": MAX_LEAF_SIZE * 2},
        {"leaf_size": MAX_LEAF_SIZE + 1},
    ],
)
def test_invalid_params_are_refused(fields: dict[str, int]) -> None:
    with pytest.raises(InvalidParamsError) as info:
        ErasureParams(**fields)
    assert isinstance(info.value, ValueError)


@settings(max_examples=100, deadline=None)
@given(st.integers(MIN_LEAF_SIZE, MAX_LEAF_SIZE))
def test_leaf_size_must_be_a_power_of_two(leaf_size: int) -> None:
    if leaf_size & (leaf_size - 1) == 0:
        assert ErasureParams(leaf_size=leaf_size).leaf_size == leaf_size
    else:
        with pytest.raises(InvalidParamsError, match="power of two"):
            ErasureParams(leaf_size=leaf_size)


def test_params_are_frozen_and_hashable() -> None:
    params = ErasureParams(k=2, m=3)
    with pytest.raises(AttributeError):
        params.k = 3  # type: ignore[misc]
    assert hash(params) == hash(ErasureParams(k=2, m=3))
    assert params == ErasureParams(k=2, m=3)
    assert params != ErasureParams(k=2, m=4)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, MAX_SHARES), st.integers(0, 10**9))
def test_shard_size_is_ceiling_division(k: int, segment_bytes: int) -> None:
    params = ErasureParams(k=k, m=MAX_SHARES)
    size = params.shard_size(segment_bytes)
    assert size * k >= segment_bytes
    assert (size - 1) * k < segment_bytes or size == 0


def test_codec_defaults_to_zfec_and_must_be_known() -> None:
    assert ErasureParams().codec == "zfec"
    assert ErasureParams(codec="isal").codec == "isal"
    assert ErasureParams(4, 8, 1024, 64, "isal") != ErasureParams(4, 8, 1024, 64)
    with pytest.raises(InvalidParamsError, match="unknown codec 'reed-solomon'"):
        ErasureParams(codec="reed-solomon")
