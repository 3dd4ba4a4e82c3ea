"""The genesis file of a local net: who holds stake, who owns the subnet, and its clock.

TOML (or JSON with the same keys)::

    owner = "5F...owner hotkey"
    issuance_tao = 0          # or issuance_rao: start just below a halving to watch one
    tempo = 360               # blocks per epoch
    block_interval = 12.0     # seconds per block

    [stake]                   # TAO per hotkey (decimal strings are exact)
    "5G...validator" = 1000
    [stake_rao]               # or rao, exactly
    "5H...validator" = 2500000000000

Stake is fixed for the life of the local net: credits accrue in the ledger, not to stake.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

from chain.emission import RAO_PER_TAO, TOTAL_SUPPLY


class GenesisError(ValueError):
    """A genesis file that cannot be read; the message names the key."""


@dataclass(frozen=True, slots=True)
class Genesis:
    owner_hotkey: str
    stakes: Mapping[str, int] = field(default_factory=dict)  # rao
    issuance: int = 0  # rao
    tempo: int = 360
    block_interval: float = 12.0

    def __post_init__(self) -> None:
        if not self.owner_hotkey:
            raise GenesisError("owner: the subnet owner's hotkey is required")
        if not 0 <= self.issuance <= TOTAL_SUPPLY:
            raise GenesisError(f"issuance must be within [0, {TOTAL_SUPPLY}] rao")
        if self.tempo < 1:
            raise GenesisError(f"tempo must be at least 1 block, got {self.tempo}")
        if not self.block_interval > 0:
            raise GenesisError(f"block_interval must be positive, got {self.block_interval}")
        for hotkey, amount in self.stakes.items():
            if not isinstance(amount, int) or amount < 0:
                raise GenesisError(f"stake of {hotkey}: {amount!r} is not a non-negative rao int")
        object.__setattr__(self, "stakes", MappingProxyType(dict(self.stakes)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner_hotkey,
            "issuance_rao": self.issuance,
            "tempo": self.tempo,
            "block_interval": self.block_interval,
            "stake_rao": dict(self.stakes),
        }


def tao_to_rao(value: object, what: str) -> int:
    """Exact rao from a TAO amount (int, float as written, or decimal string)."""
    try:
        amount = Decimal(str(value)) * RAO_PER_TAO
    except InvalidOperation:
        raise GenesisError(f"{what}: {value!r} is not an amount of TAO") from None
    if amount != amount.to_integral_value() or amount < 0:
        raise GenesisError(f"{what}: {value!r} TAO is not a non-negative whole number of rao")
    return int(amount)


def parse_genesis(raw: Mapping[str, Any]) -> Genesis:
    known = {
        "owner",
        "issuance_tao",
        "issuance_rao",
        "tempo",
        "block_interval",
        "stake",
        "stake_rao",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise GenesisError(
            f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    stakes: dict[str, int] = {}
    for hotkey, tao in dict(raw.get("stake", {})).items():
        stakes[hotkey] = tao_to_rao(tao, f"stake.{hotkey}")
    for hotkey, rao in dict(raw.get("stake_rao", {})).items():
        if not isinstance(rao, int) or isinstance(rao, bool):
            raise GenesisError(f"stake_rao.{hotkey}: {rao!r} is not an integer")
        stakes[hotkey] = stakes.get(hotkey, 0) + rao
    issuance = raw.get("issuance_rao")
    if issuance is None:
        issuance = tao_to_rao(raw.get("issuance_tao", 0), "issuance_tao")
    try:
        return Genesis(
            owner_hotkey=str(raw.get("owner", "")),
            stakes=stakes,
            issuance=int(issuance),
            tempo=int(raw.get("tempo", 360)),
            block_interval=float(raw.get("block_interval", 12.0)),
        )
    except (TypeError, ValueError) as exc:
        raise GenesisError(str(exc)) from None


def load_genesis(path: Path) -> Genesis:
    """Read a ``.toml`` or ``.json`` genesis file."""
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise GenesisError(f"cannot read genesis file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise GenesisError(f"{path}: a genesis file is a table of keys")
    try:
        return parse_genesis(raw)
    except GenesisError as exc:
        raise GenesisError(f"{path}: {exc}") from None


def write_genesis(genesis: Genesis, path: Path) -> None:
    """Write ``genesis`` as JSON (atomically: a temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(genesis.to_dict(), indent=2) + "\n")
    tmp.replace(path)
