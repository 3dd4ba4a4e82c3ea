"""What a miner earns per epoch, worked out the way the chain credits it, and when the next
halving comes: pure functions over the metagraph's Yuma incentive and the issuance.

The chain credits an epoch's miner pool by ``largest_remainder`` over every UID's incentive
(``accounting.credit_epoch``), era by era when the epoch spans a halving. Applying the same
rule to the last epoch's incentive gives that epoch's ledger to the rao, and applied to the
next epoch's emission (``EmissionSchedule.emit`` from the current issuance, which knows where
the halving falls) it is the estimate: exact if the incentive stays as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chain.accounting import largest_remainder
from chain.emission import DEFAULT_SPLIT, EmissionSchedule, EmissionSplit


@dataclass(frozen=True, slots=True)
class EraCredit:
    """One era's part of an epoch: its blocks, emission, miners' pool and one UID's credit."""

    era: int
    blocks: int
    emitted: int
    miners_pool: int
    credit: int


def epoch_credit(
    schedule: EmissionSchedule,
    issuance: int,
    tempo: int,
    incentive: Sequence[float],
    uid: int,
    split: EmissionSplit = DEFAULT_SPLIT,
) -> tuple[EraCredit, ...]:
    """``uid``'s incentive credit for an epoch of ``tempo`` blocks that starts at
    ``issuance``, era by era, if every UID's incentive is ``incentive``."""
    span = schedule.emit(issuance, tempo)
    parts = []
    for era in span.eras:
        pool = split.split(era.emitted).miners
        share = largest_remainder(pool, incentive).parts[uid] if incentive else 0
        parts.append(EraCredit(era.era, era.blocks, era.emitted, pool, share))
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class Halving:
    """The next halving: the era it starts, the issuance it starts at, the block whose
    emission crosses it (counted from the open epoch's first block), and the blocks left."""

    era: int
    threshold: int
    block: int | None  # None: emission has stopped, no halving comes
    blocks_left: int | None


def next_halving(schedule: EmissionSchedule, issuance: int, block: int, tempo: int) -> Halving:
    """When issuance (``issuance`` at the start of the open epoch: the chain adds an epoch's
    emission when it closes) crosses the next era's threshold, at today's block reward."""
    era = schedule.era(issuance)
    threshold = schedule.era_threshold(era + 1)
    rate = schedule.block_emission(issuance)
    if rate == 0:
        return Halving(era + 1, threshold, None, None)
    epoch_start = block - block % tempo
    at = epoch_start + -(-(threshold - issuance) // rate)
    return Halving(era + 1, threshold, at, max(0, at - block))
