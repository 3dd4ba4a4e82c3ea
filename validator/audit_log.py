"""The challenge log: one entry per challenge, hash-chained, each entry signed.

Every entry carries the hash of the entry before it, so removing, reordering or editing any
entry breaks the chain from there on; each entry is also signed by the validator's hotkey,
so nobody else can rewrite the chain wholesale. :func:`verify_log` names the first entry that
does not check out. The format is versioned; the export is JSON lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from bittensor_wallet import Keypair
from blake3 import blake3

LOG_VERSION = 1
GENESIS = "00" * 32
_CHAIN_KEY = blake3(b"storage-subnet challenge log v1").digest()


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    validator: str
    miner: str
    shard_id: str
    kind: str  # merkle | retrieval
    nonce: str
    indices: tuple[int, ...]
    root: str  # the upload-time root the answer was checked against
    issued_at: float
    answered_at: float | None
    latency_ms: float | None
    verdict: str  # pass | wrong | timeout | missing
    reason: str
    proof_digest: str  # blake3 of the leaves and proof received
    prev_hash: str = GENESIS
    signature: str = ""
    version: int = LOG_VERSION

    def body(self) -> bytes:
        fields = asdict(self)
        fields.pop("signature")
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @property
    def entry_hash(self) -> str:
        return blake3(self.body() + self.signature.encode(), key=_CHAIN_KEY).hexdigest()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> LogEntry:
        raw: dict[str, Any] = json.loads(line)
        raw["indices"] = tuple(raw.get("indices", ()))
        return cls(**raw)


def append(log: Sequence[LogEntry], entry: LogEntry, keypair: Keypair) -> LogEntry:
    """``entry`` chained after ``log`` and signed; ``seq`` and ``prev_hash`` are set here."""
    prev = log[-1].entry_hash if log else GENESIS
    chained = replace(entry, seq=len(log), prev_hash=prev, validator=keypair.ss58_address)
    return replace(chained, signature="0x" + keypair.sign(chained.body()).hex())


@dataclass(frozen=True, slots=True)
class LogProblem:
    seq: int
    reason: str


def verify_log(entries: Iterable[LogEntry], validator: str | None = None) -> LogProblem | None:
    """The first entry that breaks the chain or its signature, or None if all check out.

    Every entry must be signed by ``validator`` (default: whoever signed the first one).
    """
    prev = GENESIS
    for position, entry in enumerate(entries):
        validator = validator or entry.validator
        if entry.validator != validator:
            return LogProblem(position, f"signed by {entry.validator}, not {validator}")
        if entry.version != LOG_VERSION:
            return LogProblem(position, f"unknown log version {entry.version}")
        if entry.seq != position:
            return LogProblem(position, f"sequence number {entry.seq}, expected {position}")
        if entry.prev_hash != prev:
            return LogProblem(position, "does not follow the entry before it")
        try:
            signature = bytes.fromhex(entry.signature.removeprefix("0x"))
            signed = Keypair(ss58_address=entry.validator).verify(entry.body(), signature)
        except ValueError:
            signed = False
        if not signed:
            return LogProblem(position, "signature does not match the entry")
        prev = entry.entry_hash
    return None
