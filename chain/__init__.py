"""The local chain's pure reward core: emission schedule, Yuma consensus, epoch accounting.

- :mod:`chain.emission`: Bittensor's halving schedule in integer rao (``EmissionSchedule``)
  and the owner / miners / validators split of an epoch (``EmissionSplit``).
- :mod:`chain.yuma`: one epoch of Yuma consensus (``yuma_consensus``) over frozen inputs.
- :mod:`chain.accounting`: exact integer splits (``largest_remainder``) and an epoch's
  credits per hotkey (``credit_epoch``), which sum to the emission to the rao.

These modules are pure: no I/O, no logging, no clock, no asyncio. The chain service calls
them once per epoch and persists what they return.
"""

from chain.accounting import Allocation, EpochCredits, credit_epoch, largest_remainder
from chain.emission import (
    DEFAULT_SPLIT,
    RAO_PER_TAO,
    TOTAL_SUPPLY,
    EmissionSchedule,
    EmissionSpan,
    EmissionSplit,
    EpochShares,
    EraEmission,
)
from chain.yuma import YumaInputs, YumaParams, YumaResult, yuma_consensus

__all__ = [
    "DEFAULT_SPLIT",
    "RAO_PER_TAO",
    "TOTAL_SUPPLY",
    "Allocation",
    "EmissionSchedule",
    "EmissionSpan",
    "EmissionSplit",
    "EpochCredits",
    "EpochShares",
    "EraEmission",
    "YumaInputs",
    "YumaParams",
    "YumaResult",
    "credit_epoch",
    "largest_remainder",
    "yuma_consensus",
]
