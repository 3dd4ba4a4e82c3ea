"""What the chain says about its subnet, as frozen values shared by server and client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Neuron:
    """One UID. ``stake`` is rao; ``axon`` is ``host:port`` once served; ``last_update`` is
    the block of its last accepted weights; the floats are the last epoch's Yuma outputs."""

    uid: int
    hotkey: str
    stake: int
    validator_permit: bool
    axon: str | None
    incentive: float
    dividends: float
    trust: float
    consensus: float
    last_update: int | None
    registered_at: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Neuron:
        return cls(
            uid=int(raw["uid"]),
            hotkey=str(raw["hotkey"]),
            stake=int(raw["stake"]),
            validator_permit=bool(raw["validator_permit"]),
            axon=None if raw["axon"] is None else str(raw["axon"]),
            incentive=float(raw["incentive"]),
            dividends=float(raw["dividends"]),
            trust=float(raw["trust"]),
            consensus=float(raw["consensus"]),
            last_update=None if raw["last_update"] is None else int(raw["last_update"]),
            registered_at=int(raw["registered_at"]),
        )


@dataclass(frozen=True, slots=True)
class Metagraph:
    """The subnet at ``block``: its neurons in UID order."""

    block: int
    tempo: int
    version_key: int
    neurons: tuple[Neuron, ...]

    def by_hotkey(self, hotkey: str) -> Neuron | None:
        return next((n for n in self.neurons if n.hotkey == hotkey), None)

    @property
    def validators(self) -> frozenset[str]:
        """Hotkeys holding a validator permit."""
        return frozenset(n.hotkey for n in self.neurons if n.validator_permit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "tempo": self.tempo,
            "version_key": self.version_key,
            "neurons": [n.to_dict() for n in self.neurons],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Metagraph:
        return cls(
            block=int(raw["block"]),
            tempo=int(raw["tempo"]),
            version_key=int(raw["version_key"]),
            neurons=tuple(Neuron.from_dict(n) for n in raw["neurons"]),
        )
