"""The package's shape: its public names, and that the reward core stays pure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import chain

PUBLIC = {
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
}
# Nothing that does I/O, logs, keeps time or runs an event loop, and none of our services.
FORBIDDEN = (
    "asyncio",
    "logging",
    "socket",
    "sqlite3",
    "sqlalchemy",
    "aiohttp",
    "random",
    "erasure",
    "protocol",
    "storage_miner",
    "validator",
    "subnet",
)


def test_all_is_exactly_the_public_api() -> None:
    assert len(chain.__all__) == len(set(chain.__all__))
    assert set(chain.__all__) == PUBLIC
    for name in chain.__all__:
        assert getattr(chain, name) is not None


def test_the_reward_core_imports_nothing_impure() -> None:
    code = (
        "import sys, chain.emission, chain.yuma, chain.accounting\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == ""
