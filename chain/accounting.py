"""Turning an epoch's emission into integer rao credits that sum exactly to it.

``largest_remainder`` (Hamilton's method) gives part i ``floor(T·w_i / W)`` and then one more
rao to each of the ``T - sum(floors)`` largest remainders ``T·w_i mod W``, lower index first
on ties. Weights are taken as exact rationals (a float is its exact binary value), so each
part is within 1 rao of its exact share and the result is deterministic. With no positive
weight nothing can be shared: every part is 0 and the whole total is ``undistributed``.

``credit_epoch`` splits the emission with an ``EmissionSplit`` (owner, miners, validators),
shares the miners' pool by Yuma incentive and the validators' pool by dividends, and credits
any pool nobody can claim (no incentive or no dividends anywhere) to the subnet owner.
Subtensor recycles such emission instead; crediting the owner keeps this ledger's rule that
credits add up to exactly the emission, with issuance a pure function of block height.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType

from chain.emission import DEFAULT_SPLIT, EmissionSplit
from chain.yuma import Weight, YumaResult


@dataclass(frozen=True, slots=True)
class Allocation:
    """``parts[i]`` for weight i; ``undistributed`` is what no weight could claim (the whole
    total when all weights are 0, else 0). ``sum(parts) + undistributed`` is the total."""

    parts: tuple[int, ...]
    undistributed: int


def largest_remainder(total: int, weights: Sequence[Weight]) -> Allocation:
    """Split ``total`` rao in proportion to non-negative, finite ``weights``, exactly."""
    if not isinstance(total, int) or total < 0:
        raise ValueError(f"total must be a non-negative int of rao, got {total!r}")
    numerators = _exact_numerators(weights)
    denominator = sum(numerators)
    if denominator == 0:
        return Allocation(parts=(0,) * len(numerators), undistributed=total)
    parts = []
    remainders = []
    for numerator in numerators:
        part, remainder = divmod(total * numerator, denominator)
        parts.append(part)
        remainders.append(remainder)
    short = total - sum(parts)  # < number of positive remainders, so zero weights get nothing
    for i in sorted(range(len(parts)), key=lambda i: (-remainders[i], i))[:short]:
        parts[i] += 1
    return Allocation(parts=tuple(parts), undistributed=0)


def _exact_numerators(weights: Sequence[Weight]) -> list[int]:
    """The weights as integers over one common denominator (exact; order kept)."""
    exact = []
    for index, weight in enumerate(weights):
        if not isinstance(weight, int | float | Fraction):
            raise TypeError(f"weight {index} must be a number, got {type(weight).__name__}")
        if isinstance(weight, float) and not math.isfinite(weight):
            raise ValueError(f"weight {index} is {weight!r}: weights must be finite")
        if weight < 0:
            raise ValueError(f"weight {index} is {weight!r}: weights must be non-negative")
        exact.append(Fraction(weight))
    scale = math.lcm(*(x.denominator for x in exact))
    return [x.numerator * (scale // x.denominator) for x in exact]


@dataclass(frozen=True, slots=True)
class EpochCredits:
    """Who is credited what (rao) for one epoch.

    ``incentive`` and ``dividends`` are per UID. ``owner_cut`` is the owner's configured
    share and ``unclaimed`` the pools nobody could claim, both credited to ``owner_hotkey``.
    ``credits`` totals everything per hotkey (the owner first, then by UID, zeros left out
    except the owner's) and sums to ``emission`` exactly.
    """

    emission: int
    owner_hotkey: str
    owner_cut: int
    unclaimed: int
    incentive: tuple[int, ...]
    dividends: tuple[int, ...]
    credits: Mapping[str, int]


def credit_epoch(
    emission: int,
    result: YumaResult,
    hotkeys: Sequence[str],
    owner_hotkey: str,
    split: EmissionSplit = DEFAULT_SPLIT,
) -> EpochCredits:
    """Credit ``emission`` rao: the owner's cut, miners by ``result.incentive``, validators by
    ``result.dividends``. ``hotkeys[uid]`` is the hotkey of each UID.

    An epoch that spans a halving can be credited era by era (one call per
    ``EraEmission``), so each era's credits stay separate.
    """
    n = len(result.incentive)
    if len(hotkeys) != n or len(result.dividends) != n:
        raise ValueError(
            f"need one hotkey, incentive and dividend per UID: got {len(hotkeys)} hotkeys, "
            f"{n} incentives and {len(result.dividends)} dividends"
        )
    shares = split.split(emission)
    miners = largest_remainder(shares.miners, result.incentive)
    validators = largest_remainder(shares.validators, result.dividends)
    unclaimed = miners.undistributed + validators.undistributed

    credits = {owner_hotkey: shares.owner + unclaimed}
    for uid, hotkey in enumerate(hotkeys):
        amount = miners.parts[uid] + validators.parts[uid]
        if amount:
            credits[hotkey] = credits.get(hotkey, 0) + amount
    return EpochCredits(
        emission=emission,
        owner_hotkey=owner_hotkey,
        owner_cut=shares.owner,
        unclaimed=unclaimed,
        incentive=miners.parts,
        dividends=validators.parts,
        credits=MappingProxyType(credits),
    )
