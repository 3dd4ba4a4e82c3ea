"""Wire formats the services share: binary frames and signed storage receipts.

**Frames** carry JSON metadata plus raw binary blobs (challenge answers: leaves and proofs)
without base64's third more bytes and its encoding cost::

    b"SNF1" | u32 big-endian metadata length | metadata JSON | blob 0 | blob 1 | ...

The metadata's ``"blobs"`` lists each blob's length; it must account for every byte.

**Receipts** are what a miner signs when it has durably stored a shard: the validator keeps
them as proof of what the miner acknowledged.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bittensor_wallet import Keypair

FRAME_MAGIC = b"SNF1"
_FRAME_HEADER = struct.Struct(">4sI")
MAX_FRAME_METADATA = 4 * 1024 * 1024
RECEIPT_VERSION = 1


class WireError(ValueError):
    """A frame or receipt that is malformed, truncated, or of an unknown version."""


def encode_frame(metadata: dict[str, Any], blobs: Sequence[bytes]) -> bytes:
    meta = json.dumps({**metadata, "blobs": [len(b) for b in blobs]}, separators=(",", ":"))
    raw = meta.encode()
    return b"".join([_FRAME_HEADER.pack(FRAME_MAGIC, len(raw)), raw, *blobs])


FRAME_HEADER_SIZE = _FRAME_HEADER.size


def frame_metadata_length(header: bytes | bytearray | memoryview) -> int:
    """The metadata's length from a frame's first :data:`FRAME_HEADER_SIZE` bytes."""
    if len(header) < FRAME_HEADER_SIZE:
        raise WireError("frame shorter than its header")
    magic, meta_len = _FRAME_HEADER.unpack_from(header)
    if magic != FRAME_MAGIC:
        raise WireError(f"not a frame (magic {magic!r}, expected {FRAME_MAGIC!r})")
    if meta_len > MAX_FRAME_METADATA:
        raise WireError("frame metadata length is out of bounds")
    return int(meta_len)


def frame_metadata(raw: bytes | bytearray | memoryview) -> tuple[dict[str, Any], list[int]]:
    """A frame's metadata and its blobs' lengths, from the metadata's bytes."""
    try:
        metadata = json.loads(bytes(raw))
    except ValueError as exc:
        raise WireError(f"frame metadata is not JSON: {exc}") from None
    lengths = metadata.get("blobs") if isinstance(metadata, dict) else None
    if not isinstance(lengths, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths
    ):
        raise WireError("frame metadata lacks a valid 'blobs' length list")
    assert isinstance(metadata, dict)
    return metadata, lengths


def decode_frame(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """A whole frame in memory; the validator reads challenge replies as they arrive
    instead (``validator.miner_client``), with the same rules."""
    meta_len = frame_metadata_length(data)
    start = FRAME_HEADER_SIZE + meta_len
    if start > len(data):
        raise WireError("frame metadata length is out of bounds")
    metadata, lengths = frame_metadata(memoryview(data)[FRAME_HEADER_SIZE:start])
    if start + sum(lengths) != len(data):
        raise WireError("frame blobs do not add up to the frame's length")
    view = memoryview(data)
    blobs = []
    for n in lengths:
        blobs.append(bytes(view[start : start + n]))
        start += n
    return metadata, blobs


@dataclass(frozen=True, slots=True)
class StorageReceipt:
    """A miner's signed word that it durably holds ``shard_id`` for ``validator``."""

    miner: str
    validator: str
    shard_id: str
    size: int
    root: str
    stored_at: float
    signature: str = ""
    version: int = RECEIPT_VERSION

    def signed_bytes(self) -> bytes:
        body = asdict(self)
        body.pop("signature")
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed_by(self, keypair: Keypair) -> StorageReceipt:
        if keypair.ss58_address != self.miner:
            raise WireError("a receipt is signed by the miner it names")
        signature = "0x" + keypair.sign(self.signed_bytes()).hex()
        return StorageReceipt(**{**asdict(self), "signature": signature})

    def verify(self) -> None:
        """Raise WireError unless ``miner``'s hotkey signed exactly these fields."""
        if self.version != RECEIPT_VERSION:
            raise WireError(f"receipt version {self.version} is not supported")
        try:
            signature = bytes.fromhex(self.signature.removeprefix("0x"))
            valid = Keypair(ss58_address=self.miner).verify(self.signed_bytes(), signature)
        except ValueError:
            valid = False
        if not valid:
            raise WireError(f"receipt for {self.shard_id} is not signed by miner {self.miner}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: object) -> StorageReceipt:
        if not isinstance(raw, dict):
            raise WireError("a receipt is a JSON object")
        names = {"miner", "validator", "shard_id", "size", "root", "stored_at", "signature"}
        if not names <= set(raw) or not set(raw) <= {*names, "version"}:
            raise WireError(f"a receipt has exactly the fields {sorted(names)} and version")
        try:
            return cls(
                miner=str(raw["miner"]),
                validator=str(raw["validator"]),
                shard_id=str(raw["shard_id"]),
                size=int(raw["size"]),
                root=str(raw["root"]),
                stored_at=float(raw["stored_at"]),
                signature=str(raw["signature"]),
                version=int(raw.get("version", RECEIPT_VERSION)),
            )
        except (TypeError, ValueError) as exc:
            raise WireError(f"receipt field has the wrong type: {exc}") from None
