"""Epistula v2 verification with real sr25519 keys: every accept and every rejection reason."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from bittensor_wallet import Keypair
from blake3 import blake3
from multidict import CIMultiDict

from protocol.epistula import (
    CONTENT_HASHES,
    HEADER_CONTENT_HASH,
    HEADER_SIGNATURE,
    HEADER_SIGNED_BY,
    HEADER_SIGNED_FOR,
    HEADER_TIMESTAMP,
    HEADER_UUID,
    HEADER_VERSION,
    TRAILER_SIZE,
    TRAILING_BLAKE3,
    TRAILING_SHA256,
    BadSignature,
    BodyMismatch,
    EpistulaError,
    EpistulaVerifier,
    FutureTimestamp,
    MalformedHeader,
    MissingHeader,
    ReplayCacheFull,
    ReplayedRequest,
    StaleTimestamp,
    StaticAllowlist,
    UnexpectedContentHash,
    UnknownHotkey,
    UnsupportedVersion,
    VerifiedRequest,
    WrongRecipient,
    body_sha256_hex,
    sign_headers,
    trailer,
)

NOW = 1_700_000_000_000
WINDOW = 8_000
BODY = b'{"hello": "miner"}'
SHARD_ID = "ab" * 32


def signed(
    signer: Keypair,
    receiver: Keypair,
    *,
    body: bytes = BODY,
    now_ms: int = NOW,
    request_uuid: str | None = None,
) -> dict[str, str]:
    return sign_headers(
        signer,
        body_hash=body_sha256_hex(body),
        signed_for=receiver.ss58_address,
        now_ms=now_ms,
        uuid=request_uuid,
    )


def expect(
    exc_type: type[EpistulaError],
    reason: str,
    verifier: EpistulaVerifier,
    headers: dict[str, str],
    receiver: Keypair,
    *,
    body: bytes | None = BODY,
    now_ms: int = NOW,
) -> EpistulaError:
    with pytest.raises(exc_type) as info:
        verifier.verify(
            headers,
            body_sha256_hex=None if body is None else body_sha256_hex(body),
            now_ms=now_ms,
            expected_signed_for=receiver.ss58_address,
        )
    assert info.value.reason == reason
    assert info.value.message  # every rejection explains itself
    return info.value


def test_reason_codes_are_distinct() -> None:
    reasons = [cls.reason for cls in EpistulaError.__subclasses__()]
    assert len(reasons) == len(set(reasons)) >= 12


# --- accepted -------------------------------------------------------------------------------


def test_accepts_a_signed_request(alice: Keypair, bob: Keypair) -> None:
    verifier = EpistulaVerifier()
    headers = signed(alice, bob)
    result = verifier.verify(
        headers,
        body_sha256_hex=body_sha256_hex(BODY),
        now_ms=NOW,
        expected_signed_for=bob.ss58_address,
    )
    assert result.signed_by == alice.ss58_address
    assert result.uuid == headers[HEADER_UUID]
    assert result.timestamp_ms == NOW
    assert result.declared_content_hash is None
    assert headers[HEADER_VERSION] == "2"
    assert headers[HEADER_SIGNATURE].startswith("0x")
    assert len(headers[HEADER_SIGNATURE]) == 2 + 128


def test_signature_is_over_the_documented_message(alice: Keypair, bob: Keypair) -> None:
    headers = signed(alice, bob)
    message = (
        f"{body_sha256_hex(BODY)}.{headers[HEADER_UUID]}.{headers[HEADER_TIMESTAMP]}."
        f"{bob.ss58_address}"
    )
    public = Keypair(ss58_address=alice.ss58_address)
    assert public.verify(message.encode(), bytes.fromhex(headers[HEADER_SIGNATURE][2:]))


def test_accepts_empty_signed_for_when_expected(alice: Keypair) -> None:
    headers = sign_headers(alice, body_hash=body_sha256_hex(b""), signed_for="", now_ms=NOW)
    result = EpistulaVerifier().verify(
        headers, body_sha256_hex=body_sha256_hex(b""), now_ms=NOW, expected_signed_for=""
    )
    assert result.signed_by == alice.ss58_address


def test_accepts_lowercase_header_names(alice: Keypair, bob: Keypair) -> None:
    headers = {name.lower(): value for name, value in signed(alice, bob).items()}
    result = EpistulaVerifier().verify(
        headers,
        body_sha256_hex=body_sha256_hex(BODY),
        now_ms=NOW,
        expected_signed_for=bob.ss58_address,
    )
    assert result.signed_by == alice.ss58_address


def test_declared_content_hash_is_handed_back(alice: Keypair, bob: Keypair) -> None:
    headers = sign_headers(
        alice, body_hash=SHARD_ID, signed_for=bob.ss58_address, now_ms=NOW, declared=True
    )
    assert headers[HEADER_CONTENT_HASH] == SHARD_ID
    result = EpistulaVerifier().verify(
        headers, body_sha256_hex=None, now_ms=NOW, expected_signed_for=bob.ss58_address
    )
    assert result.declared_content_hash == SHARD_ID
    assert result.require_declared_hash() == SHARD_ID
    result.check_streamed_body(SHARD_ID)  # the right bytes pass
    with pytest.raises(BodyMismatch) as info:
        result.check_streamed_body("cd" * 32)
    assert info.value.reason == "body_mismatch"


@pytest.mark.parametrize("offset", [-WINDOW, 0, WINDOW])
def test_accepts_timestamps_up_to_the_window_edges(
    alice: Keypair, bob: Keypair, offset: int
) -> None:
    headers = signed(alice, bob, now_ms=NOW + offset)
    result = EpistulaVerifier(window_ms=WINDOW).verify(
        headers,
        body_sha256_hex=body_sha256_hex(BODY),
        now_ms=NOW,
        expected_signed_for=bob.ss58_address,
    )
    assert result.timestamp_ms == NOW + offset


# --- rejected, one test per reason ---------------------------------------------------------


def test_rejects_stale_timestamp(alice: Keypair, bob: Keypair) -> None:
    headers = signed(alice, bob, now_ms=NOW - WINDOW - 1)
    error = expect(StaleTimestamp, "stale_timestamp", EpistulaVerifier(), headers, bob)
    assert "NTP" in error.message


def test_rejects_future_timestamp(alice: Keypair, bob: Keypair) -> None:
    headers = signed(alice, bob, now_ms=NOW + WINDOW + 1)
    expect(FutureTimestamp, "future_timestamp", EpistulaVerifier(), headers, bob)


def test_rejects_replayed_uuid(alice: Keypair, bob: Keypair) -> None:
    verifier = EpistulaVerifier()
    headers = signed(alice, bob)
    verifier.verify(
        headers,
        body_sha256_hex=body_sha256_hex(BODY),
        now_ms=NOW,
        expected_signed_for=bob.ss58_address,
    )
    expect(ReplayedRequest, "replayed_uuid", verifier, headers, bob, now_ms=NOW + 1)


def test_rejects_same_uuid_spelled_differently(alice: Keypair, bob: Keypair) -> None:
    verifier = EpistulaVerifier()
    request_uuid = str(uuid.uuid4())
    first = signed(alice, bob, request_uuid=request_uuid)
    verifier.verify(
        first,
        body_sha256_hex=body_sha256_hex(BODY),
        now_ms=NOW,
        expected_signed_for=bob.ss58_address,
    )
    # Freshly signed, but the same uuid in upper case is still the same uuid.
    again = signed(alice, bob, request_uuid=request_uuid.upper(), now_ms=NOW + 1)
    expect(ReplayedRequest, "replayed_uuid", verifier, again, bob, now_ms=NOW + 1)


def test_rejects_tampered_signature(alice: Keypair, bob: Keypair) -> None:
    headers = signed(alice, bob)
    signature = headers[HEADER_SIGNATURE]
    flipped = "0" if signature[10] != "0" else "1"
    headers[HEADER_SIGNATURE] = signature[:10] + flipped + signature[11:]
    expect(BadSignature, "bad_signature", EpistulaVerifier(), headers, bob)


def test_rejects_signature_by_another_key(alice: Keypair, bob: Keypair, mallory: Keypair) -> None:
    headers = signed(mallory, bob)
    headers[HEADER_SIGNED_BY] = alice.ss58_address  # claims to be alice
    expect(BadSignature, "bad_signature", EpistulaVerifier(), headers, bob)


def test_rejects_malformed_signature_hex(alice: Keypair, bob: Keypair) -> None:
    headers = signed(alice, bob)
    headers[HEADER_SIGNATURE] = "0x" + "zz" * 64
    error = expect(BadSignature, "bad_signature", EpistulaVerifier(), headers, bob)
    assert "128 hex digits" in error.message


def test_rejects_malformed_ss58(alice: Keypair, bob: Keypair) -> None:
    headers = signed(alice, bob)
    headers[HEADER_SIGNED_BY] = "5NotAnAddress"
    error = expect(BadSignature, "bad_signature", EpistulaVerifier(), headers, bob)
    assert "ss58" in error.message


def test_rejects_wrong_signed_for(alice: Keypair, bob: Keypair, mallory: Keypair) -> None:
    headers = signed(alice, mallory)  # meant for another server
    error = expect(WrongRecipient, "wrong_signed_for", EpistulaVerifier(), headers, bob)
    assert bob.ss58_address in error.message


def test_rejects_body_that_is_not_the_signed_one(alice: Keypair, bob: Keypair) -> None:
    # The signed body hash is not sent, so a swapped body shows as a signature mismatch.
    headers = signed(alice, bob, body=b"original")
    error = expect(BadSignature, "bad_signature", EpistulaVerifier(), headers, bob, body=b"evil")
    assert "signed body" in error.message


def test_rejects_body_mismatching_declared_sha256(alice: Keypair, bob: Keypair) -> None:
    headers = sign_headers(
        alice,
        body_hash="sha256:" + body_sha256_hex(b"original"),
        signed_for=bob.ss58_address,
        now_ms=NOW,
        declared=True,
    )
    expect(BodyMismatch, "body_mismatch", EpistulaVerifier(), headers, bob, body=b"evil")


@pytest.mark.parametrize("header", [HEADER_SIGNATURE, HEADER_UUID, HEADER_SIGNED_FOR])
def test_rejects_missing_header(alice: Keypair, bob: Keypair, header: str) -> None:
    headers = signed(alice, bob)
    del headers[header]
    error = expect(MissingHeader, "missing_header", EpistulaVerifier(), headers, bob)
    assert header in error.message


def test_rejects_unsigned_request(bob: Keypair) -> None:
    expect(MissingHeader, "missing_header", EpistulaVerifier(), {}, bob)


def test_streamed_request_without_declared_hash_is_missing_a_header(
    alice: Keypair, bob: Keypair
) -> None:
    headers = signed(alice, bob)
    error = expect(MissingHeader, "missing_header", EpistulaVerifier(), headers, bob, body=None)
    assert HEADER_CONTENT_HASH in error.message


def test_rejects_unsupported_version(alice: Keypair, bob: Keypair) -> None:
    headers = signed(alice, bob)
    headers[HEADER_VERSION] = "1"
    expect(UnsupportedVersion, "unsupported_version", EpistulaVerifier(), headers, bob)


@pytest.mark.parametrize(
    ("header", "value"),
    [(HEADER_TIMESTAMP, "-5"), (HEADER_TIMESTAMP, "12.5"), (HEADER_UUID, "not-a-uuid")],
)
def test_rejects_malformed_header(alice: Keypair, bob: Keypair, header: str, value: str) -> None:
    headers = signed(alice, bob)
    headers[header] = value
    expect(MalformedHeader, "malformed_header", EpistulaVerifier(), headers, bob)


def test_rejects_duplicated_header(alice: Keypair, bob: Keypair) -> None:
    headers = CIMultiDict(signed(alice, bob))
    headers.add(HEADER_SIGNED_FOR.lower(), alice.ss58_address)
    with pytest.raises(MalformedHeader) as info:
        EpistulaVerifier().verify(
            headers,
            body_sha256_hex=body_sha256_hex(BODY),
            now_ms=NOW,
            expected_signed_for=bob.ss58_address,
        )
    assert "more than once" in info.value.message


def test_rejects_unknown_hotkey_via_policy(alice: Keypair, bob: Keypair, mallory: Keypair) -> None:
    verifier = EpistulaVerifier()
    policy = StaticAllowlist(frozenset({alice.ss58_address}))
    with pytest.raises(UnknownHotkey) as info:
        verifier.verify(
            signed(mallory, bob),
            body_sha256_hex=body_sha256_hex(BODY),
            now_ms=NOW,
            expected_signed_for=bob.ss58_address,
            policy=policy,
        )
    assert info.value.reason == "unknown_hotkey"
    assert verifier.remembered == 0  # validly signed, but not allowed: no cache slot
    allowed = verifier.verify(
        signed(alice, bob),
        body_sha256_hex=body_sha256_hex(BODY),
        now_ms=NOW,
        expected_signed_for=bob.ss58_address,
        policy=policy,
    )
    assert allowed.signed_by == alice.ss58_address


# --- the replay cache ----------------------------------------------------------------------


def test_forged_request_does_not_poison_the_replay_cache(
    alice: Keypair, bob: Keypair, mallory: Keypair
) -> None:
    verifier = EpistulaVerifier()
    genuine = signed(alice, bob)
    forged = signed(mallory, bob, request_uuid=genuine[HEADER_UUID])
    forged[HEADER_SIGNED_BY] = alice.ss58_address
    expect(BadSignature, "bad_signature", verifier, forged, bob)
    assert verifier.remembered == 0
    result = verifier.verify(
        genuine,
        body_sha256_hex=body_sha256_hex(BODY),
        now_ms=NOW,
        expected_signed_for=bob.ss58_address,
    )
    assert result.uuid == genuine[HEADER_UUID]
    assert verifier.remembered == 1


def test_replay_cache_stays_bounded_over_time(alice: Keypair, bob: Keypair) -> None:
    window, cap = 1_000, 40
    verifier = EpistulaVerifier(window_ms=window, max_remembered=cap)
    body_hash = body_sha256_hex(BODY)
    largest = 0
    # 1500 requests, 10 per simulated second, timestamps spread over the whole window.
    for i in range(1_500):
        now = NOW + i * 100
        skew = (i * 397) % (2 * window + 1) - window
        headers = sign_headers(
            alice, body_hash=body_hash, signed_for=bob.ss58_address, now_ms=now + skew
        )
        verifier.verify(
            headers, body_sha256_hex=body_hash, now_ms=now, expected_signed_for=bob.ss58_address
        )
        largest = max(largest, verifier.remembered)
    # A uuid lives until timestamp + window: at most 2 windows of 10 requests per second.
    assert largest <= 21 <= cap


def test_full_replay_cache_refuses_instead_of_growing(alice: Keypair, bob: Keypair) -> None:
    verifier = EpistulaVerifier(window_ms=WINDOW, max_remembered=3)
    body_hash = body_sha256_hex(BODY)
    for _ in range(3):
        verifier.verify(
            signed(alice, bob),
            body_sha256_hex=body_hash,
            now_ms=NOW,
            expected_signed_for=bob.ss58_address,
        )
    expect(ReplayCacheFull, "replay_cache_full", verifier, signed(alice, bob), bob)
    assert verifier.remembered == 3
    # Once the remembered requests are past the window they are forgotten, and room returns.
    later = NOW + WINDOW + 1
    result = verifier.verify(
        signed(alice, bob, now_ms=later),
        body_sha256_hex=body_hash,
        now_ms=later,
        expected_signed_for=bob.ss58_address,
    )
    assert result.timestamp_ms == later
    assert verifier.remembered == 1


def test_replay_after_the_window_is_stale_not_replayed(alice: Keypair, bob: Keypair) -> None:
    verifier = EpistulaVerifier(window_ms=WINDOW)
    headers = signed(alice, bob)
    verifier.verify(
        headers,
        body_sha256_hex=body_sha256_hex(BODY),
        now_ms=NOW,
        expected_signed_for=bob.ss58_address,
    )
    expect(StaleTimestamp, "stale_timestamp", verifier, headers, bob, now_ms=NOW + WINDOW + 1)
    assert verifier.remembered == 0


# --- signing ------------------------------------------------------------------------------


def test_sign_headers_rejects_a_body_hash_that_is_not_sha256(alice: Keypair) -> None:
    with pytest.raises(ValueError, match="sha256"):
        sign_headers(alice, body_hash="not-hex", signed_for="", now_ms=NOW)


def test_sign_headers_rejects_a_declared_hash_with_a_separator(alice: Keypair) -> None:
    with pytest.raises(ValueError, match="declared content hash"):
        sign_headers(alice, body_hash="a.b", signed_for="", now_ms=NOW, declared=True)


def test_each_request_gets_a_fresh_uuid(alice: Keypair, bob: Keypair) -> None:
    uuids = {signed(alice, bob)[HEADER_UUID] for _ in range(20)}
    assert len(uuids) == 20
    assert all(uuid.UUID(u).version == 4 for u in uuids)


# --- trailers: a streamed body's hash and signature at its end ---------------------------------


ALGORITHMS = pytest.mark.parametrize("algorithm", sorted(CONTENT_HASHES))


def digest_of(algorithm: str, body: bytes) -> bytes:
    hasher = CONTENT_HASHES[algorithm]()
    hasher.update(body)
    return hasher.digest()


def trailed_request(
    signer: Keypair, receiver: Keypair, body: bytes, algorithm: str = "blake3"
) -> tuple[VerifiedRequest, dict[str, str], bytes]:
    """A verified request declaring a trailer, its headers, and the trailer its signer sends."""
    headers = sign_headers(
        signer,
        body_hash=f"{algorithm}:trailer",
        signed_for=receiver.ss58_address,
        now_ms=NOW,
        declared=True,
    )
    verified = EpistulaVerifier(window_ms=WINDOW).verify(
        headers, body_sha256_hex=None, now_ms=NOW, expected_signed_for=receiver.ss58_address
    )
    return verified, headers, trailer(signer, digest_of(algorithm, body), headers)


def test_our_trailers_are_blake3_and_sha256_ones_are_still_read() -> None:
    assert (TRAILING_BLAKE3, TRAILING_SHA256) == ("blake3:trailer", "sha256:trailer")
    assert sorted(CONTENT_HASHES) == ["blake3", "sha256"]
    assert digest_of("blake3", BODY) == blake3(BODY).digest()


@ALGORITHMS
def test_a_trailer_proves_the_body_and_names_its_hash(
    alice: Keypair, bob: Keypair, algorithm: str
) -> None:
    verified, _, end = trailed_request(alice, bob, BODY, algorithm)
    assert len(end) == TRAILER_SIZE
    digest = digest_of(algorithm, BODY)
    assert verified.check_trailer(digest, end) == f"{algorithm}:{digest.hex()}"


@ALGORITHMS
def test_a_trailer_signs_what_the_headers_would_have(
    alice: Keypair, bob: Keypair, algorithm: str
) -> None:
    """Its signature is of the Epistula message with the body's hash, named by its
    algorithm, as content hash."""
    _, headers, end = trailed_request(alice, bob, BODY, algorithm)
    content_hash = f"{algorithm}:{digest_of(algorithm, BODY).hex()}"
    message = f"{content_hash}.{headers[HEADER_UUID]}.{headers[HEADER_TIMESTAMP]}"
    assert alice.verify(f"{message}.{bob.ss58_address}".encode(), end[32:])


@ALGORITHMS
@pytest.mark.parametrize(
    ("forge", "refusal"),
    [
        ("other_body", BodyMismatch),  # the bytes changed on the way, the trailer did not
        ("rehashed", BadSignature),  # the trailer's hash follows them, its signature cannot
        ("other_signer", BadSignature),  # signed by another hotkey
        ("other_request", BadSignature),  # a genuine trailer of another request of alice's
        ("other_algorithm", BadSignature),  # alice's signature of the other hash's name
        ("short", BodyMismatch),  # cut before its end
        ("empty", BodyMismatch),
    ],
)
def test_a_forged_trailer_is_refused(
    alice: Keypair, bob: Keypair, mallory: Keypair, forge: str, refusal: type[EpistulaError],
    algorithm: str,
) -> None:  # fmt: skip
    verified, headers, end = trailed_request(alice, bob, BODY, algorithm)
    sent = digest_of(algorithm, BODY)
    other = digest_of(algorithm, b"other bytes")
    if forge == "other_body":
        sent = other
    elif forge == "rehashed":
        sent, end = other, other + end[32:]
    elif forge == "other_signer":
        end = trailer(mallory, sent, headers)
    elif forge == "other_request":
        _, _, end = trailed_request(alice, bob, BODY, algorithm)
    elif forge == "other_algorithm":
        # The same 32 bytes, signed as the other algorithm's hash: the name is signed too.
        renamed = {**headers, HEADER_CONTENT_HASH: next(
            f"{name}:trailer" for name in CONTENT_HASHES if name != algorithm
        )}  # fmt: skip
        end = trailer(alice, sent, renamed)
    elif forge == "short":
        end = end[:-1]
    else:
        end = b""
    with pytest.raises(refusal) as refused:
        verified.check_trailer(sent, end)
    assert refused.value.message


def test_a_trailer_is_refused_where_none_was_declared(alice: Keypair, bob: Keypair) -> None:
    headers = sign_headers(
        alice, body_hash="sha256:" + body_sha256_hex(BODY), signed_for=bob.ss58_address,
        now_ms=NOW, declared=True,
    )  # fmt: skip
    verified = EpistulaVerifier(window_ms=WINDOW).verify(
        headers, body_sha256_hex=None, now_ms=NOW, expected_signed_for=bob.ss58_address
    )
    digest = hashlib.sha256(BODY).digest()
    with pytest.raises(UnexpectedContentHash):
        verified.check_trailer(digest, trailer(alice, digest, headers))


@ALGORITHMS
def test_an_unsigned_request_s_trailer_counts_for_its_hash_alone(
    alice: Keypair, algorithm: str
) -> None:
    """A request authenticated otherwise (an API token) has no key to sign with: its
    trailer's hash is checked, the rest is zeros."""
    token_user = VerifiedRequest(
        signed_by=alice.ss58_address, uuid="", timestamp_ms=NOW,
        declared_content_hash=f"{algorithm}:trailer", signed=False,
    )  # fmt: skip
    digest = digest_of(algorithm, BODY)
    end = trailer(None, digest, {})
    assert end == digest + bytes(64)
    assert token_user.check_trailer(digest, end) == f"{algorithm}:{digest.hex()}"
    with pytest.raises(BodyMismatch):
        token_user.check_trailer(digest_of(algorithm, b"x"), end)
