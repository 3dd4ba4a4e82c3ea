"""The challenge log: one entry per challenge, hash-chained, each entry signed.

Every entry carries the hash of the entry before it, so removing, reordering or editing any
entry breaks the chain from there on; each entry is also signed by the validator's hotkey,
so nobody else can rewrite the chain wholesale. :func:`verify_log` names the first entry that
does not check out. The format is versioned; the export is JSON lines.

A Merkle entry keeps what an auditor needs to re-check the proof offline: the leaf count,
the hashes of the leaves received (not their data) and the proof path. :func:`check_proof`
re-derives the indices from the nonce and re-runs the proof against the recorded root, so a
verdict the validator wrote can be confirmed by anyone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from dataclasses import fields as dataclass_fields
from typing import Any

from bittensor_wallet import Keypair
from blake3 import blake3

from erasure import BadProofError, MerkleProof, verify_leaf_hashes
from validator.challenges import derive_indices

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
    proof_digest: str  # blake3 of the leaf hashes and proof received
    leaf_count: int = 0
    leaf_hashes: tuple[str, ...] = ()  # hex, one per index, as received
    proof: str = ""  # hex of the multiproof received
    size: int = 0  # bytes this challenge vouches for (the shard's size)
    prev_hash: str = GENESIS
    signature: str = ""
    version: int = LOG_VERSION

    def body(self) -> bytes:
        # A plain dict, not dataclasses.asdict (a deep copy, ~4x slower); the same bytes.
        fields = {name: getattr(self, name) for name in _BODY_FIELDS}
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
        raw["leaf_hashes"] = tuple(raw.get("leaf_hashes", ()))
        return cls(**raw)


_BODY_FIELDS = tuple(f.name for f in dataclass_fields(LogEntry) if f.name != "signature")


def proof_digest(leaf_hashes: Iterable[bytes], proof: bytes) -> str:
    hasher = blake3(key=_CHAIN_KEY)
    for leaf_hash in leaf_hashes:
        hasher.update(leaf_hash)
    return hasher.update(proof).hexdigest()


def append(log: Sequence[LogEntry], entry: LogEntry, keypair: Keypair) -> LogEntry:
    """``entry`` chained after ``log`` and signed; ``seq`` and ``prev_hash`` are set here."""
    head = (log[-1].seq, log[-1].entry_hash) if log else None
    return chain_after(head, entry, keypair)


def chain_after(head: tuple[int, str] | None, entry: LogEntry, keypair: Keypair) -> LogEntry:
    """``entry`` chained after the entry ``head`` = (seq, entry_hash), and signed."""
    seq, prev = (head[0] + 1, head[1]) if head else (0, GENESIS)
    chained = replace(entry, seq=seq, prev_hash=prev, validator=keypair.ss58_address)
    return replace(chained, signature="0x" + keypair.sign(chained.body()).hex())


def check_proof(entry: LogEntry) -> str | None:
    """Why a Merkle entry's verdict does not follow from what it recorded, or None.

    A ``pass`` must hold indices derived from its nonce and a proof that verifies against
    its root; a ``wrong`` that recorded a proof must hold one that does not.
    """
    if entry.kind != "merkle" or entry.verdict not in {"pass", "wrong"}:
        return None
    if entry.verdict == "pass" and entry.root != entry.shard_id:
        return "checked against a root other than the shard's id"
    if not entry.leaf_hashes and entry.verdict == "wrong":
        return None  # the answer was malformed or absent: nothing to re-run
    return _recheck(entry)


def _recheck(entry: LogEntry) -> str | None:
    try:
        expected = derive_indices(
            bytes.fromhex(entry.nonce), entry.shard_id, entry.leaf_count, len(entry.indices)
        )
        hashes = [bytes.fromhex(h) for h in entry.leaf_hashes]
        proof = bytes.fromhex(entry.proof)
    except ValueError as exc:
        return f"unreadable challenge fields ({exc})"
    if tuple(entry.indices) != expected:
        return "indices are not the ones its nonce derives"
    if proof_digest(hashes, proof) != entry.proof_digest:
        return "proof digest does not match the recorded proof"
    return _rerun(entry, hashes, proof)


def _rerun(entry: LogEntry, hashes: list[bytes], proof: bytes) -> str | None:
    try:
        verify_leaf_hashes(
            bytes.fromhex(entry.root),
            entry.leaf_count,
            entry.indices,
            hashes,
            MerkleProof.from_bytes(proof),
        )
    except (BadProofError, ValueError) as exc:
        return f"recorded as pass but the proof fails: {exc}" if entry.verdict == "pass" else None
    return "recorded as wrong but the proof verifies" if entry.verdict == "wrong" else None


@dataclass(frozen=True, slots=True)
class LogProblem:
    seq: int
    reason: str


def verify_log(
    entries: Iterable[LogEntry],
    validator: str | None = None,
    *,
    first_seq: int = 0,
    prev: str = GENESIS,
    proofs: bool = True,
) -> LogProblem | None:
    """The first entry that breaks the chain, its signature or its proof; None if all hold.

    Every entry must be signed by ``validator`` (default: whoever signed the first one). A
    log read from the middle starts at ``first_seq`` after the entry hashed ``prev``.
    """
    for position, entry in enumerate(entries, start=first_seq):
        validator = validator or entry.validator
        why = _entry_problem(entry, position, validator, prev)
        if why is None and proofs:
            why = check_proof(entry)
        if why is not None:
            return LogProblem(position, why)
        prev = entry.entry_hash
    return None


@dataclass(frozen=True, slots=True)
class SparseCheck:
    """What :func:`verify_entries` found: the first problem, and how complete the run was."""

    problem: LogProblem | None
    entries: int
    gaps: int  # places where entries are missing between two present ones
    starts_at_zero: bool

    @property
    def complete(self) -> bool:
        """Whether the entries are a whole log from its first entry (nothing left out)."""
        return self.starts_at_zero and self.gaps == 0


def verify_entries(
    entries: Iterable[LogEntry], validator: str | None = None, *, proofs: bool = True
) -> SparseCheck:
    """Check a log that may be filtered (``audit log --miner X``): every entry's signature,
    version and proof, and its hash link wherever the entry before it is present. A run
    that starts at 0 with no gap is checked exactly as :func:`verify_log` checks it; any
    other cannot prove that nothing is missing, which :attr:`SparseCheck.complete` says."""
    count = gaps = 0
    previous: LogEntry | None = None
    first_seq: int | None = None
    for entry in entries:
        count += 1
        validator = validator or entry.validator
        if first_seq is None:
            first_seq = entry.seq
        adjacent = previous is not None and entry.seq == previous.seq + 1
        if previous is not None and not adjacent:
            if entry.seq <= previous.seq:
                return SparseCheck(
                    LogProblem(entry.seq, f"out of order: after entry {previous.seq}"),
                    count, gaps, first_seq == 0,
                )  # fmt: skip
            gaps += 1
        if adjacent and previous is not None:
            prev = previous.entry_hash
        elif entry.seq == 0:
            prev = GENESIS
        else:  # the neighbour is not in this export: its hash cannot be checked here
            prev = entry.prev_hash
        why = _entry_problem(entry, entry.seq, validator, prev)
        if why is None and proofs:
            why = check_proof(entry)
        if why is not None:
            return SparseCheck(LogProblem(entry.seq, why), count, gaps, first_seq == 0)
        previous = entry
    return SparseCheck(None, count, gaps, first_seq == 0)


def _entry_problem(entry: LogEntry, position: int, validator: str, prev: str) -> str | None:
    if entry.validator != validator:
        return f"signed by {entry.validator}, not {validator}"
    if entry.version != LOG_VERSION:
        return f"unknown log version {entry.version}"
    if entry.seq != position:
        return f"sequence number {entry.seq}, expected {position}"
    if entry.prev_hash != prev:
        return "does not follow the entry before it"
    try:
        signature = bytes.fromhex(entry.signature.removeprefix("0x"))
        signed = Keypair(ss58_address=entry.validator).verify(entry.body(), signature)
    except ValueError:
        signed = False
    return None if signed else "signature does not match the entry"
