"""Epistula v2 signed requests: the headers, the signed message, and every rejection reason.

Pure: no sockets, no clock. Callers pass ``now_ms`` (unix milliseconds).

Headers a signer sends::

    Epistula-Version            "2"
    Epistula-Timestamp          unix milliseconds, decimal digits
    Epistula-Uuid               a fresh uuid4 per request
    Epistula-Signed-By          ss58 address of the signing hotkey
    Epistula-Signed-For         ss58 address of the receiver ("" for nobody in particular)
    Epistula-Request-Signature  "0x" + hex of the 64-byte sr25519 signature
    Epistula-Content-Hash       only on streamed bodies: the declared content hash

The signature covers, as UTF-8::

    f"{content_hash}.{uuid}.{timestamp}.{signed_for}"

where ``content_hash`` is the hex sha256 of the body, or for a streamed body the declared
``Epistula-Content-Hash`` string itself (a shard id, or ``"sha256:<hex>"``). The verifier cannot
see a streamed body, so it hands the declared hash back in
:attr:`VerifiedRequest.declared_content_hash` and the handler must check the bytes it streams
against it (:meth:`VerifiedRequest.check_streamed_body`).

A streamed body whose hash its sender learns only by sending it (sealing a file as it goes)
declares ``"<algorithm>:trailer"`` (:data:`TRAILING_BLAKE3`, what our client sends, or
:data:`TRAILING_SHA256`): its last :data:`TRAILER_SIZE` bytes are then a trailer, the hash
of the bytes before it (32 bytes) and the signer's signature (64) of the message above with
``content_hash`` ``"<algorithm>:<that hex>"`` and the headers' own uuid, timestamp and
signed_for: what the headers would have signed, had the hash been known before the first
byte (:func:`trailer`, :meth:`VerifiedRequest.check_trailer`). The uuid is spent by the
headers, so a trailer is never a request's signature too. A streamed body's hash is
sha256 or BLAKE3 (:data:`CONTENT_HASHES`), declared up front (``"blake3:<hex>"``) or in a
trailer; BLAKE3 hashes about 2.5x faster here, and both the client and the validator hash
every byte of an upload.

Every rejection is an :class:`EpistulaError` subclass with a stable ``reason`` code::

    EpistulaError
    ├── MissingHeader           missing_header
    ├── MalformedHeader         malformed_header
    ├── UnsupportedVersion      unsupported_version
    ├── WrongRecipient          wrong_signed_for
    ├── StaleTimestamp          stale_timestamp
    ├── FutureTimestamp         future_timestamp
    ├── UnknownHotkey           unknown_hotkey
    ├── ReplayedRequest         replayed_uuid
    ├── ReplayCacheFull         replay_cache_full
    ├── BadSignature            bad_signature
    ├── BodyMismatch            body_mismatch
    └── UnexpectedContentHash   unexpected_content_hash

A non-streamed body that differs from the signed one is reported as ``bad_signature``: the
signed body hash is not sent, so the verifier can only see that the signature does not cover
this body. ``body_mismatch`` is for declared hashes, where the two can be compared.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from bittensor_wallet import Keypair
from blake3 import blake3

VERSION = "2"
DEFAULT_WINDOW_MS = 8_000
DEFAULT_MAX_REMEMBERED = 100_000

HEADER_VERSION = "Epistula-Version"
HEADER_TIMESTAMP = "Epistula-Timestamp"
HEADER_UUID = "Epistula-Uuid"
HEADER_SIGNED_BY = "Epistula-Signed-By"
HEADER_SIGNED_FOR = "Epistula-Signed-For"
HEADER_SIGNATURE = "Epistula-Request-Signature"
HEADER_CONTENT_HASH = "Epistula-Content-Hash"

REQUIRED_HEADERS = (
    HEADER_VERSION,
    HEADER_TIMESTAMP,
    HEADER_UUID,
    HEADER_SIGNED_BY,
    HEADER_SIGNED_FOR,
    HEADER_SIGNATURE,
)
_ALL_HEADERS = {h.lower(): h for h in (*REQUIRED_HEADERS, HEADER_CONTENT_HASH)}

_TIMESTAMP = re.compile(r"[0-9]{1,16}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{128}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Declared hashes go into the signed message verbatim: keep them short and free of the "."
# separator, so one message can never be read as another.
_DECLARED_HASH = re.compile(r"[A-Za-z0-9:_-]{1,256}")
SHA256_PREFIX = "sha256:"
TRAILING_SHA256 = "sha256:trailer"  # the body's sha256 and its signature end the body
TRAILING_BLAKE3 = "blake3:trailer"  # the same with the body's BLAKE3
TRAILER_SIZE = 32 + 64


class ContentHasher(Protocol):
    @property
    def name(self) -> str: ...  # its algorithm: a key of CONTENT_HASHES
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


# What a streamed body may be hashed with, by the name before the ":" of its declared hash.
CONTENT_HASHES: dict[str, Callable[[], ContentHasher]] = {
    "sha256": hashlib.sha256,
    "blake3": blake3,
}


def content_algorithm(declared: str) -> str | None:
    """The algorithm of a declared ``"<algorithm>:<hex>"`` or ``"<algorithm>:trailer"``;
    None for any other declaration (a shard id, an unknown algorithm)."""
    name, colon, _ = declared.partition(":")
    return name if colon and name in CONTENT_HASHES else None


class EpistulaError(Exception):
    """Base of every Epistula rejection; ``reason`` is a stable machine code."""

    reason: ClassVar[str] = "epistula_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingHeader(EpistulaError):
    reason = "missing_header"


class MalformedHeader(EpistulaError):
    reason = "malformed_header"


class UnsupportedVersion(EpistulaError):
    reason = "unsupported_version"


class WrongRecipient(EpistulaError):
    reason = "wrong_signed_for"


class StaleTimestamp(EpistulaError):
    reason = "stale_timestamp"


class FutureTimestamp(EpistulaError):
    reason = "future_timestamp"


class UnknownHotkey(EpistulaError):
    reason = "unknown_hotkey"


class ReplayedRequest(EpistulaError):
    reason = "replayed_uuid"


class ReplayCacheFull(EpistulaError):
    reason = "replay_cache_full"


class BadSignature(EpistulaError):
    reason = "bad_signature"


class BodyMismatch(EpistulaError):
    reason = "body_mismatch"


class UnexpectedContentHash(EpistulaError):
    """A declared content hash sent to an endpoint that reads its body whole (see protocol.http)."""

    reason = "unexpected_content_hash"


class HotkeyPolicy(Protocol):
    """Decides which signers a service talks to at all (finer role checks live in handlers)."""

    def is_allowed(self, hotkey: str) -> bool: ...


class AllowAnyHotkey:
    """Every validly signed request passes. For local nets and tests."""

    def is_allowed(self, hotkey: str) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class StaticAllowlist:
    """Only these ss58 hotkeys pass."""

    hotkeys: frozenset[str]

    def is_allowed(self, hotkey: str) -> bool:
        return hotkey in self.hotkeys


class AnyOf:
    """Passes a hotkey that any of ``policies`` passes (e.g. a static list and the metagraph)."""

    def __init__(self, *policies: HotkeyPolicy) -> None:
        self.policies = policies

    def is_allowed(self, hotkey: str) -> bool:
        return any(policy.is_allowed(hotkey) for policy in self.policies)


ALLOW_ANY: HotkeyPolicy = AllowAnyHotkey()


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """Who signed a request that passed every check.

    ``declared_content_hash`` is set when the body was streamed and NOT checked by the
    verifier: the handler must check what it reads against it.
    """

    signed_by: str
    uuid: str
    timestamp_ms: int
    declared_content_hash: str | None
    # What a trailer's signature covers besides the hash (the headers as sent); a request
    # authenticated otherwise (an API token) is not ``signed``: its trailer's hash counts.
    timestamp: str = ""
    signed_for: str = ""
    signed: bool = True

    def require_declared_hash(self) -> str:
        """The declared hash of a streamed body, or :class:`MissingHeader` if there is none."""
        if self.declared_content_hash is None:
            raise MissingHeader(
                f"this endpoint streams its body: send {HEADER_CONTENT_HASH} with the body's "
                "content hash and sign that hash in place of the body's sha256"
            )
        return self.declared_content_hash

    def check_streamed_body(self, actual_content_hash: str) -> None:
        """Call once the streamed body is read: :class:`BodyMismatch` unless it is as declared."""
        declared = self.require_declared_hash()
        if actual_content_hash != declared:
            raise BodyMismatch(
                f"the body's content hash is {actual_content_hash} but {HEADER_CONTENT_HASH} "
                f"declared {declared}: send exactly the bytes whose hash you signed"
            )

    def check_trailer(self, body_digest: bytes, trailer: bytes) -> str:
        """For a body declared ``"<algorithm>:trailer"``, once it is read (``body_digest``,
        its hash under that algorithm): its content hash ``"<algorithm>:<hex>"``, or
        :class:`BodyMismatch` / :class:`BadSignature`."""
        declared = self.declared_content_hash or ""
        algorithm = content_algorithm(declared)
        if algorithm is None or declared != f"{algorithm}:trailer":
            raise UnexpectedContentHash(
                f"this body did not declare {TRAILING_BLAKE3} or {TRAILING_SHA256}"
            )
        if len(trailer) != TRAILER_SIZE:
            raise BodyMismatch(
                f"the body is shorter than its {TRAILER_SIZE}-byte trailer: with "
                f"{HEADER_CONTENT_HASH} {declared}, end the body with its {algorithm} and "
                "the signature of it"
            )
        sent, signature = trailer[:32], trailer[32:]
        if sent != body_digest:
            raise BodyMismatch(
                f"the body's {algorithm} is {body_digest.hex()} but its trailer says "
                f"{sent.hex()}: send exactly the bytes whose hash the trailer carries"
            )
        content_hash = f"{algorithm}:{sent.hex()}"
        if self.signed:
            message = signed_message(content_hash, self.uuid, self.timestamp, self.signed_for)
            try:
                valid = Keypair(ss58_address=self.signed_by).verify(message, signature)
            except ValueError:
                valid = False
            if not valid:
                raise BadSignature(
                    f"the trailer's signature does not match: sign '{algorithm}:<hex of the "
                    "body before the trailer>.<uuid>.<timestamp>.<signed_for>', as in the "
                    f"headers, with the hotkey named in {HEADER_SIGNED_BY}"
                )
        return content_hash


def trailer(keypair: Keypair | None, body_digest: bytes, headers: Mapping[str, str]) -> bytes:
    """The trailer that ends a body sent under ``headers``, which declare
    ``"<algorithm>:trailer"``; ``body_digest`` is the body's hash under that algorithm
    (signed by ``keypair``; None: not signed, as with an API token)."""
    if keypair is None:
        return body_digest + bytes(64)
    algorithm = headers[HEADER_CONTENT_HASH].removesuffix(":trailer")
    message = signed_message(
        f"{algorithm}:{body_digest.hex()}",
        headers[HEADER_UUID],
        headers[HEADER_TIMESTAMP],
        headers[HEADER_SIGNED_FOR],
    )
    return body_digest + keypair.sign(message)


def body_sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signed_message(content_hash: str, uuid: str, timestamp: str, signed_for: str) -> bytes:
    return f"{content_hash}.{uuid}.{timestamp}.{signed_for}".encode()


def sign_headers(
    keypair: Keypair,
    *,
    body_hash: str,
    signed_for: str,
    now_ms: int,
    uuid: str | None = None,
    declared: bool = False,
) -> dict[str, str]:
    """Epistula headers for one request.

    ``body_hash`` is the hex sha256 of the body, or with ``declared=True`` the content hash
    declared for a streamed body (sent as ``Epistula-Content-Hash``).
    """
    if declared and not _DECLARED_HASH.fullmatch(body_hash):
        raise ValueError(
            f"declared content hash {body_hash!r} must be 1-256 characters of [A-Za-z0-9:_-]"
        )
    if not declared and not _SHA256_HEX.fullmatch(body_hash):
        raise ValueError(f"body_hash {body_hash!r} must be 64 lowercase hex digits (sha256)")
    request_uuid = uuid if uuid is not None else str(uuidlib.uuid4())
    timestamp = str(now_ms)
    signature = keypair.sign(signed_message(body_hash, request_uuid, timestamp, signed_for))
    headers = {
        HEADER_VERSION: VERSION,
        HEADER_TIMESTAMP: timestamp,
        HEADER_UUID: request_uuid,
        HEADER_SIGNED_BY: keypair.ss58_address,
        HEADER_SIGNED_FOR: signed_for,
        HEADER_SIGNATURE: "0x" + signature.hex(),
    }
    if declared:
        headers[HEADER_CONTENT_HASH] = body_hash
    return headers


@dataclass(frozen=True, slots=True)
class _Parsed:
    timestamp: str
    timestamp_ms: int
    uuid: str
    replay_key: tuple[str, int]  # (signer, uuid as an int): one uuid spelled two ways is one
    signed_by: str
    signed_for: str
    signature: bytes
    declared: str | None


def _epistula_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Epistula headers by canonical name, whatever case they came in; duplicates rejected."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        canonical = _ALL_HEADERS.get(name.lower())
        if canonical is None:
            continue
        if canonical in found:
            raise MalformedHeader(f"{canonical} is sent more than once: send it exactly once")
        found[canonical] = value
    return found


class EpistulaVerifier:
    """Checks Epistula v2 headers and remembers recent uuids to stop replays.

    A request is accepted when ``|now_ms - timestamp| <= window_ms``. A uuid is remembered
    until its request would be rejected as stale anyway, so memory is bounded by the request
    rate over about two windows; past ``max_remembered`` live uuids, new requests are refused
    with :class:`ReplayCacheFull` rather than growing without bound.

    Checks run cheapest first, and a uuid is recorded only once its signature verifies, so
    forged requests cannot fill the cache or block a real request's uuid.
    """

    def __init__(
        self,
        window_ms: int = DEFAULT_WINDOW_MS,
        max_remembered: int = DEFAULT_MAX_REMEMBERED,
    ) -> None:
        if window_ms <= 0 or max_remembered <= 0:
            raise ValueError("window_ms and max_remembered must be positive")
        self.window_ms = window_ms
        self.max_remembered = max_remembered
        self._expiry: dict[tuple[str, int], int] = {}
        self._by_expiry: list[tuple[int, tuple[str, int]]] = []

    @property
    def remembered(self) -> int:
        """How many uuids are remembered right now."""
        return len(self._expiry)

    def precheck(
        self,
        headers: Mapping[str, str],
        *,
        now_ms: int,
        expected_signed_for: str,
        policy: HotkeyPolicy = ALLOW_ANY,
    ) -> None:
        """Every check that needs neither the body nor the signature.

        Lets a server refuse a bad request before it reads the body; :meth:`verify` repeats
        these checks, so calling this is optional.
        """
        self._check_headers(headers, now_ms, expected_signed_for, policy)

    def verify(
        self,
        headers: Mapping[str, str],
        *,
        body_sha256_hex: str | None,
        now_ms: int,
        expected_signed_for: str,
        policy: HotkeyPolicy = ALLOW_ANY,
    ) -> VerifiedRequest:
        """Verify a request, or raise the :class:`EpistulaError` that says why not.

        ``body_sha256_hex`` is the hex sha256 of the body as received, or ``None`` if the body
        is streamed and not read yet; then the request must declare its content hash.
        ``policy`` is checked before the signature, so unknown signers never cost a
        signature check nor a slot in the replay cache.
        """
        parsed = self._check_headers(headers, now_ms, expected_signed_for, policy)
        content_hash = self._content_hash(parsed, body_sha256_hex)
        message = signed_message(content_hash, parsed.uuid, parsed.timestamp, parsed.signed_for)
        try:
            signer = Keypair(ss58_address=parsed.signed_by)
            valid = signer.verify(message, parsed.signature)
        except ValueError as exc:
            raise BadSignature(
                f"cannot verify the signature ({exc}): {HEADER_SIGNED_BY} must be the ss58 "
                f"address of the sr25519 hotkey that signed"
            ) from None
        if not valid:
            raise BadSignature(
                "the signature does not match this request: sign "
                "'<sha256 of body, or declared content hash>.<uuid>.<timestamp>.<signed_for>' "
                f"with the hotkey named in {HEADER_SIGNED_BY}, and send exactly the signed body"
            )
        self._remember(parsed)
        return VerifiedRequest(
            signed_by=parsed.signed_by,
            uuid=parsed.uuid,
            timestamp_ms=parsed.timestamp_ms,
            declared_content_hash=parsed.declared,
            timestamp=parsed.timestamp,
            signed_for=parsed.signed_for,
        )

    def _check_headers(
        self,
        headers: Mapping[str, str],
        now_ms: int,
        expected_signed_for: str,
        policy: HotkeyPolicy,
    ) -> _Parsed:
        self._forget_expired(now_ms)
        parsed = _parse(headers)
        if parsed.signed_for != expected_signed_for:
            raise WrongRecipient(
                f"this request is signed for {parsed.signed_for!r} but this server is "
                f"{expected_signed_for!r}: set {HEADER_SIGNED_FOR} to the receiver's hotkey"
            )
        age = now_ms - parsed.timestamp_ms
        if age > self.window_ms:
            raise StaleTimestamp(
                f"the request is {age} ms old, over the {self.window_ms} ms window: sign each "
                "request just before sending it, and keep your clock in sync (NTP)"
            )
        if -age > self.window_ms:
            raise FutureTimestamp(
                f"the request is {-age} ms in the future, over the {self.window_ms} ms window: "
                f"{HEADER_TIMESTAMP} is unix milliseconds; keep your clock in sync (NTP)"
            )
        if not policy.is_allowed(parsed.signed_by):
            raise UnknownHotkey(
                f"hotkey {parsed.signed_by} is not allowed to call this server: register it "
                "on the subnet (or with the required role) first"
            )
        if parsed.replay_key in self._expiry:
            raise ReplayedRequest(
                f"uuid {parsed.uuid} was already used: send a fresh {HEADER_UUID} (uuid4) "
                "with every request, retries included"
            )
        if len(self._expiry) >= self.max_remembered:
            raise ReplayCacheFull(
                f"the server is tracking {len(self._expiry)} recent requests, its limit: "
                "retry in a few seconds"
            )
        return parsed

    def _content_hash(self, parsed: _Parsed, body_sha256_hex: str | None) -> str:
        if parsed.declared is None:
            if body_sha256_hex is None:
                raise MissingHeader(
                    f"this endpoint streams its body: send {HEADER_CONTENT_HASH} with the "
                    "body's content hash and sign that hash in place of the body's sha256"
                )
            return body_sha256_hex
        # A caller that did read the body can check a declared sha256 right here.
        if (
            body_sha256_hex is not None
            and parsed.declared.startswith(SHA256_PREFIX)
            and parsed.declared.removeprefix(SHA256_PREFIX) != body_sha256_hex
        ):
            raise BodyMismatch(
                f"the body's sha256 is {body_sha256_hex} but {HEADER_CONTENT_HASH} declared "
                f"{parsed.declared}: send exactly the bytes whose hash you signed"
            )
        return parsed.declared

    def _forget_expired(self, now_ms: int) -> None:
        # A uuid may go once a replay of it would be stale: after timestamp + window.
        heap = self._by_expiry
        while heap and heap[0][0] < now_ms:
            _, key = heapq.heappop(heap)
            del self._expiry[key]

    def _remember(self, parsed: _Parsed) -> None:
        expiry = parsed.timestamp_ms + self.window_ms
        self._expiry[parsed.replay_key] = expiry
        heapq.heappush(self._by_expiry, (expiry, parsed.replay_key))


def _parse(headers: Mapping[str, str]) -> _Parsed:
    found = _epistula_headers(headers)
    missing = [h for h in REQUIRED_HEADERS if h not in found]
    if missing:
        raise MissingHeader(
            f"missing {', '.join(missing)}: sign the request with Epistula v2 "
            f"(all of {', '.join(REQUIRED_HEADERS)})"
        )
    version = found[HEADER_VERSION]
    if version != VERSION:
        raise UnsupportedVersion(
            f"{HEADER_VERSION} is {version[:16]!r}; this server speaks only version {VERSION!r}"
        )
    timestamp = found[HEADER_TIMESTAMP]
    if not _TIMESTAMP.fullmatch(timestamp):
        raise MalformedHeader(
            f"{HEADER_TIMESTAMP} {timestamp[:32]!r} is not unix milliseconds (decimal digits)"
        )
    request_uuid = found[HEADER_UUID]
    try:
        parsed_uuid = uuidlib.UUID(request_uuid)
    except ValueError:
        raise MalformedHeader(
            f"{HEADER_UUID} {request_uuid[:64]!r} is not a uuid: send str(uuid.uuid4())"
        ) from None
    signature = found[HEADER_SIGNATURE]
    if not _SIGNATURE.fullmatch(signature):
        raise BadSignature(
            f"{HEADER_SIGNATURE} must be '0x' followed by the 128 hex digits of the 64-byte "
            "sr25519 signature"
        )
    declared = found.get(HEADER_CONTENT_HASH)
    if declared is not None and not _DECLARED_HASH.fullmatch(declared):
        raise MalformedHeader(
            f"{HEADER_CONTENT_HASH} must be 1-256 characters of [A-Za-z0-9:_-], such as a "
            "shard id or 'sha256:<hex>'"
        )
    signed_by = found[HEADER_SIGNED_BY]
    return _Parsed(
        timestamp=timestamp,
        timestamp_ms=int(timestamp),
        uuid=request_uuid,
        replay_key=(signed_by, parsed_uuid.int),
        signed_by=signed_by,
        signed_for=found[HEADER_SIGNED_FOR],
        signature=bytes.fromhex(signature[2:]),
        declared=declared,
    )
