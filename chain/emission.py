"""Bittensor's emission schedule and the per-epoch split, in exact integer rao.

Block emission for a given issuance I (rao), with cap C = 21M TAO and base rate E0 = 1 TAO::

    era(I)            = floor(log2(C / (C - I)))        the halving index h
    block_emission(I) = min(floor(E0 / 2^era(I)), C - I)

``era(I)`` is the largest h with ``I >= C * (1 - 2^-h)``, so era h starts at
``era_threshold(h) = ceil(C * (1 - 2^-h)) = C - floor(C / 2^h)``: 0, 10.5M, 15.75M, 18.375M
TAO and so on. This is subtensor's formula computed without floats, so the era changes at
exactly the threshold rao. The rate comes from the issuance before each block: the block that
crosses a threshold still pays the old era's rate. Once the rate floors to 0 rao (era 30 on
mainnet) nothing more is ever issued, and no block takes issuance past the cap.

At the cap itself every later threshold equals C, so ``era(C)`` is defined as the first era
that starts at C (``C.bit_length()``); its emission is 0.

The split of an epoch's emission E: owner ``floor(E * owner_share)``, miners
``floor(rest * miner_share)``, validators the remainder, so the three always sum to E.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

RAO_PER_TAO: Final = 10**9
TOTAL_SUPPLY: Final = 21_000_000 * RAO_PER_TAO
"""Subtensor's supply cap, in rao."""


@dataclass(frozen=True, slots=True)
class EraEmission:
    """The blocks of one span that fell in one halving era, and the rao they issued."""

    era: int
    blocks: int
    emitted: int


@dataclass(frozen=True, slots=True)
class EmissionSpan:
    """What ``EmissionSchedule.emit`` issued over a run of blocks, broken down by era.

    ``eras`` is in block order; its ``blocks`` add up to ``blocks`` and its ``emitted`` to
    ``emitted``. Blocks after the rate reached 0 rao are counted in the last era, issuing 0.
    """

    start_issuance: int
    end_issuance: int
    blocks: int
    eras: tuple[EraEmission, ...]

    @property
    def emitted(self) -> int:
        return self.end_issuance - self.start_issuance


@dataclass(frozen=True, slots=True)
class EmissionSchedule:
    """The halving schedule. Defaults are mainnet's; a scaled cap or rate suits small tests.

    ``genesis_issuance`` is the issuance at block 0, so a local net can start just below a
    halving and watch it happen.
    """

    supply_cap: int = TOTAL_SUPPLY
    base_block_emission: int = RAO_PER_TAO
    genesis_issuance: int = 0

    def __post_init__(self) -> None:
        if self.supply_cap <= 0:
            raise ValueError(f"supply_cap must be positive, got {self.supply_cap}")
        if self.base_block_emission < 0:
            raise ValueError(
                f"base_block_emission must be non-negative, got {self.base_block_emission}"
            )
        self._check_issuance(self.genesis_issuance)

    def era(self, issuance: int) -> int:
        """The halving era that ``issuance`` (rao) is in: 0 below half the cap, 1 below 3/4..."""
        self._check_issuance(issuance)
        remaining = self.supply_cap - issuance
        if remaining == 0:
            return self.supply_cap.bit_length()
        # 2^h <= C/(C-I) holds exactly when 2^h <= floor(C/(C-I)), a plain integer.
        return (self.supply_cap // remaining).bit_length() - 1

    def era_threshold(self, era: int) -> int:
        """The issuance (rao) at which ``era`` starts: ``ceil(C * (1 - 2^-era))``."""
        if era < 0:
            raise ValueError(f"era must be non-negative, got {era}")
        return self.supply_cap - (self.supply_cap >> era)

    def block_emission(self, issuance: int) -> int:
        """Rao issued by the next block when ``issuance`` rao exist."""
        rate = self.base_block_emission >> self.era(issuance)
        return min(rate, self.supply_cap - issuance)

    def emit(self, issuance: int, blocks: int) -> EmissionSpan:
        """Issue ``blocks`` blocks starting from ``issuance``: equal to stepping block by block,
        but one step per era, so a span of any length costs at most one step per halving."""
        self._check_issuance(issuance)
        if blocks < 0:
            raise ValueError(f"blocks must be non-negative, got {blocks}")
        eras: list[EraEmission] = []
        current, left = issuance, blocks
        while left > 0:
            era = self.era(current)
            rate = self.base_block_emission >> era
            if min(rate, self.supply_cap - current) == 0:
                _record(eras, era, left, 0)
                break
            # Blocks at this rate until issuance reaches the next threshold (ceiling division);
            # the last of them may pass it, as the rate is set before each block.
            to_next = -((current - self.era_threshold(era + 1)) // rate)
            count = min(left, to_next)
            # All but the last of these blocks stay below the next threshold, hence below the
            # cap, so only the last one can need clamping.
            before_last = current + (count - 1) * rate
            emitted = (count - 1) * rate + min(rate, self.supply_cap - before_last)
            _record(eras, era, count, emitted)
            current += emitted
            left -= count
        return EmissionSpan(issuance, current, blocks, tuple(eras))

    def issuance_at(self, height: int) -> int:
        """Issuance after ``height`` blocks from genesis (with nothing burnt or recycled)."""
        return self.emit(self.genesis_issuance, height).end_issuance

    def _check_issuance(self, issuance: int) -> None:
        if not isinstance(issuance, int):
            raise TypeError(f"issuance must be an int of rao, got {type(issuance).__name__}")
        if not 0 <= issuance <= self.supply_cap:
            raise ValueError(f"issuance must be within [0, {self.supply_cap}] rao, got {issuance}")


def _record(eras: list[EraEmission], era: int, blocks: int, emitted: int) -> None:
    if eras and eras[-1].era == era:
        last = eras.pop()
        blocks, emitted = last.blocks + blocks, last.emitted + emitted
    eras.append(EraEmission(era, blocks, emitted))


@dataclass(frozen=True, slots=True)
class EpochShares:
    """One epoch's emission cut into the owner's, the miners' and the validators' pools."""

    owner: int
    miners: int
    validators: int

    @property
    def total(self) -> int:
        return self.owner + self.miners + self.validators


@dataclass(frozen=True, slots=True)
class EmissionSplit:
    """How an epoch's emission is shared: ``owner_share`` first, then ``miner_share`` of the
    rest to miners (incentive) and the remainder to validators (dividends).

    Shares are exact ``Fraction``s, never floats (``Fraction("0.18")`` reads a setting).
    """

    owner_share: Fraction = Fraction(18, 100)
    miner_share: Fraction = Fraction(1, 2)

    def __post_init__(self) -> None:
        for name in ("owner_share", "miner_share"):
            value = getattr(self, name)
            if not isinstance(value, Fraction):
                raise TypeError(f"{name} must be a Fraction, got {type(value).__name__}")
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be within [0, 1], got {value}")

    def split(self, total: int) -> EpochShares:
        """Cut ``total`` rao; the rounding rao go to the validators, so nothing is lost."""
        if total < 0:
            raise ValueError(f"total must be non-negative, got {total}")
        owner = total * self.owner_share.numerator // self.owner_share.denominator
        rest = total - owner
        miners = rest * self.miner_share.numerator // self.miner_share.denominator
        return EpochShares(owner=owner, miners=miners, validators=rest - miners)


DEFAULT_SPLIT: Final = EmissionSplit()
"""Subtensor's: 18% to the owner, then half of the rest to miners and half to validators."""
