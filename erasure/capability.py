"""Capability strings: everything a reader needs, in one line it can keep or pass on.

Modelled on Tahoe-LAFS's ``URI:CHK:key:hash:k:N:size``:

    URI:SN-CHK:<key>:<verifier>:<k>:<m>:<size>          read capability
    URI:SN-CHK-Verifier:<verifier>:<k>:<m>:<size>       verify-only (no key)

``key`` is the object's AES-256-GCM key and ``verifier`` the manifest's verifier hash, both
lowercase unpadded base32. The verifier pins the manifest, and the manifest pins every shard
id, so a capability holder can check all it fetches from validators and miners. An object
stored unencrypted gets a verify-only capability.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from erasure.crypto import KEY_SIZE
from erasure.errors import CapabilityError

_READ = "URI:SN-CHK"
_VERIFY = "URI:SN-CHK-Verifier"
_VERIFIER_SIZE = 32


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str, size: int, what: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        data = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        raise CapabilityError(f"capability {what} is not base32") from None
    if len(data) != size:
        raise CapabilityError(f"capability {what} must be {size} bytes, got {len(data)}")
    return data


@dataclass(frozen=True, slots=True)
class Capability:
    verifier: bytes
    k: int
    m: int
    size: int
    key: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.verifier) != _VERIFIER_SIZE:
            raise CapabilityError(f"verifier must be {_VERIFIER_SIZE} bytes")
        if self.key is not None and len(self.key) != KEY_SIZE:
            raise CapabilityError(f"key must be {KEY_SIZE} bytes")
        if not (1 <= self.k <= self.m <= 256) or self.size < 0:
            raise CapabilityError(f"bad k/m/size: {self.k}/{self.m}/{self.size}")

    def __str__(self) -> str:
        tail = f"{_b32(self.verifier)}:{self.k}:{self.m}:{self.size}"
        if self.key is None:
            return f"{_VERIFY}:{tail}"
        return f"{_READ}:{_b32(self.key)}:{tail}"

    def verify_only(self) -> Capability:
        return Capability(verifier=self.verifier, k=self.k, m=self.m, size=self.size)

    @classmethod
    def parse(cls, text: str) -> Capability:
        parts = text.strip().split(":")
        if parts[:2] == ["URI", "SN-CHK"] and len(parts) == 7:
            key: bytes | None = _unb32(parts[2], KEY_SIZE, "key")
            rest = parts[3:]
        elif parts[:2] == ["URI", "SN-CHK-Verifier"] and len(parts) == 6:
            key = None
            rest = parts[2:]
        else:
            raise CapabilityError(
                f"not a capability: expected '{_READ}:key:verifier:k:m:size' "
                f"or '{_VERIFY}:verifier:k:m:size'"
            )
        verifier = _unb32(rest[0], _VERIFIER_SIZE, "verifier")
        # 20 digits hold any size; more would be a slow int() or a ValueError, not a size.
        if not all(x.isascii() and x.isdigit() and len(x) <= 20 for x in rest[1:]):
            raise CapabilityError("capability k, m and size must be decimal integers")
        k, m, size = (int(x) for x in rest[1:])
        parsed = cls(verifier=verifier, k=k, m=m, size=size, key=key)
        # One object, one spelling: reject leading zeros, uppercase, stray base32 bits.
        if str(parsed) != text.strip():
            raise CapabilityError("capability is not in canonical form")
        return parsed
