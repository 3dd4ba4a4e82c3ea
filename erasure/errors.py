"""Every error the erasure core raises, as one tree.

    ErasureError
    ├── InvalidParamsError        settings that cannot describe a valid encoding
    ├── NotEnoughSharesError      fewer than k usable shares for a segment
    ├── ShardIntegrityError       a share's bytes do not hash to the id the manifest names
    ├── DecryptionError           AEAD tag mismatch: wrong key, or tampered ciphertext
    ├── SealedStreamError         a stream of sealed segments cut or sized wrongly
    ├── MerkleError
    │   ├── BadProofError         a (multi)proof that does not prove the claimed leaves
    │   └── TreeFormatError       saved tree levels that are malformed or truncated
    ├── ManifestError             a manifest that is malformed or inconsistent
    │   └── UnsupportedVersionError
    └── CapabilityError           a capability string that cannot be parsed

Errors caused by data from elsewhere (a miner, a file, a string) carry a message that says
what was wrong with it; none of them means a bug in the caller.
"""

from __future__ import annotations


class ErasureError(Exception):
    """Base of every error raised by :mod:`erasure`."""


class InvalidParamsError(ErasureError, ValueError):
    """Parameters that cannot describe a valid encoding (for example k > m)."""


class NotEnoughSharesError(ErasureError):
    """Fewer than k distinct, intact shares were supplied for a segment."""

    def __init__(self, segment: int, have: int, need: int) -> None:
        super().__init__(f"segment {segment}: have {have} usable share(s), need {need} to decode")
        self.segment = segment
        self.have = have
        self.need = need


class ShardIntegrityError(ErasureError):
    """A share's bytes do not match the shard id recorded for it."""

    def __init__(self, segment: int, share: int, reason: str) -> None:
        super().__init__(f"segment {segment} share {share}: {reason}")
        self.segment = segment
        self.share = share
        self.reason = reason


class DecryptionError(ErasureError):
    """The AEAD tag did not verify: the key is wrong or the ciphertext was altered."""


class SealedStreamError(ErasureError, ValueError):
    """A stream of client-sealed segments whose length or framing does not fit its declared
    plaintext size and segment size (a segment missing, extra, or cut short)."""


class MerkleError(ErasureError):
    """Base of Merkle tree and proof errors."""


class BadProofError(MerkleError):
    """The proof does not show that the given leaves sit at the given indices under the root."""


class TreeFormatError(MerkleError):
    """Saved tree levels are malformed, truncated or of an unknown version."""


class ManifestError(ErasureError):
    """A manifest that is malformed or internally inconsistent."""


class UnsupportedVersionError(ManifestError):
    """A manifest (or other versioned format) written by a version this code does not know."""


class CapabilityError(ErasureError, ValueError):
    """A capability string that cannot be parsed."""
