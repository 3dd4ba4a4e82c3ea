"""AWS Signature Version 4, in the Authorization header or in a presigned URL.

A signature is checked by recomputing it with botocore's own signer classes over the request
as received (as moto does), never by crypto written here: the canonical request, string to
sign and signing-key chain are botocore's, so they match what every AWS SDK computes.

S3 rules kept: the request time must be within 15 minutes of ours (``RequestTimeTooSkewed``);
a presigned URL lives at most 7 days and is refused once ``X-Amz-Expires`` has passed. The
region of the credential scope is taken as the client gives it: the validator is one region.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDictProxy

from validator.s3.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)
MAX_EXPIRES = 7 * 24 * 3600
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

SecretLookup = Callable[[str], tuple[int, str] | None]  # access key -> (user id, secret)


class _HeaderSigner(S3SigV4Auth):  # type: ignore[misc]  # botocore has no stubs
    """botocore's S3 signer, told the payload hash the client declared."""

    def __init__(self, credentials: Credentials, region: str, payload_hash: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


class _QuerySigner(S3SigV4QueryAuth):  # type: ignore[misc]
    def __init__(self, credentials: Credentials, region: str, payload_hash: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


@dataclass(frozen=True, slots=True)
class Authorized:
    """Who signed, and what signed chunks of the body (if any) must chain from."""

    user_id: int
    access_key: str
    payload_hash: str  # x-amz-content-sha256: a hex digest, or one of the STREAMING-* modes
    signature: str  # the seed signature of aws-chunked signed chunks
    timestamp: str
    scope: str  # date/region/s3/aws4_request
    sign: Callable[[str], str]  # string to sign -> hex signature, with this key and scope

    def chunk_signature(self, previous: str, chunk_sha256: str) -> str:
        return self.sign(
            "\n".join(
                (
                    "AWS4-HMAC-SHA256-PAYLOAD",
                    self.timestamp,
                    self.scope,
                    previous,
                    EMPTY_SHA256,
                    chunk_sha256,
                )
            )
        )

    def trailer_signature(self, previous: str, trailer_sha256: str) -> str:
        return self.sign(
            "\n".join(
                ("AWS4-HMAC-SHA256-TRAILER", self.timestamp, self.scope, previous, trailer_sha256)
            )
        )


def _parse_time(value: str) -> datetime:
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise S3Error(
            "AccessDenied", f"X-Amz-Date {value[:32]!r} is not YYYYMMDDTHHMMSSZ"
        ) from None


def _credential(value: str, what: str) -> tuple[str, str, str]:
    """(access key, date, region) of ``AK/date/region/s3/aws4_request``."""
    parts = value.split("/")
    if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"{what}: Credential must be <key>/<date>/<region>/s3/aws4_request",
        )
    return parts[0], parts[1], parts[2]


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for piece in raw_query.split("&"):
        if piece:
            key, _, value = piece.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


def _parse_header(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    if scheme != ALGORITHM:
        raise S3Error("InvalidRequest", f"only {ALGORITHM} (Signature Version 4) is supported")
    fields = {}
    for item in rest.split(","):
        name, eq, field = item.strip().partition("=")
        if eq:
            fields[name] = field
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise S3Error(
            "AuthorizationHeaderMalformed",
            "the Authorization header needs Credential, SignedHeaders and Signature",
        )
    return fields


def _signing_fields(
    headers: CIMultiDictProxy[str], pairs: list[tuple[str, str]]
) -> tuple[str, str, str, str, str, int | None]:
    """(credential, signed headers, signature, time, payload hash, expires or None)."""
    query = dict(pairs)
    header = headers.get("Authorization")
    if header is not None:
        fields = _parse_header(header)
        stamp = headers.get("X-Amz-Date", "")
        if not stamp:
            raise S3Error("AccessDenied", "SigV4 requests need an X-Amz-Date header")
        payload = headers.get("X-Amz-Content-SHA256", "")
        if not payload:
            raise S3Error("InvalidRequest", "SigV4 requests need an X-Amz-Content-SHA256 header")
        return (
            fields["Credential"],
            fields["SignedHeaders"],
            fields["Signature"],
            stamp,
            payload,
            None,
        )
    if query.get("X-Amz-Algorithm") == ALGORITHM:
        try:
            expires = int(query["X-Amz-Expires"])
            scope = (query["X-Amz-Credential"], query["X-Amz-SignedHeaders"])
            given, stamp = query["X-Amz-Signature"], query["X-Amz-Date"]
        except (KeyError, ValueError):
            raise S3Error(
                "AuthorizationQueryParametersError",
                "a presigned URL needs X-Amz-Credential, -SignedHeaders, -Signature, -Date "
                "and a whole number of seconds in -Expires",
            ) from None
        if not 0 < expires <= MAX_EXPIRES:
            raise S3Error("AuthorizationQueryParametersError", "X-Amz-Expires is 1..604800")
        payload = headers.get("X-Amz-Content-SHA256", UNSIGNED_PAYLOAD)
        return scope[0], scope[1], given, stamp, payload, expires
    if "X-Amz-Credential" in query or "AWSAccessKeyId" in query:
        raise S3Error("InvalidRequest", f"only {ALGORITHM} (Signature Version 4) is supported")
    raise S3Error("AccessDenied", "anonymous requests are refused: sign with an S3 key")


def _check_time(when: datetime, now: datetime, expires: int | None) -> None:
    if expires is None:
        if abs(now - when) > MAX_SKEW:
            raise S3Error(
                "RequestTimeTooSkewed",
                "the difference between the request time and the server's time is too large",
            )
        return
    if when - now > MAX_SKEW:
        raise S3Error("AccessDenied", "the presigned URL is not valid yet")
    if now > when + timedelta(seconds=expires):
        raise S3Error("AccessDenied", "Request has expired")


def verify(
    method: str,
    raw_path: str,
    headers: CIMultiDictProxy[str],
    lookup: SecretLookup,
    now: datetime,
) -> Authorized:
    """Check the request's SigV4 signature; raise :class:`S3Error` as S3 would.
    ``raw_path`` is the path and query as sent (percent-encoded). ``lookup`` may block: run
    this in a thread."""
    path, _, raw_query = raw_path.partition("?")
    pairs = _query_pairs(raw_query)
    signing = _signing_fields(headers, pairs)
    credential, signed, given, stamp, payload, expires = signing
    if expires is not None:
        pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    access_key, date, region = _credential(credential, "Credential")
    when = _parse_time(stamp)
    if date != stamp[:8]:
        raise S3Error("SignatureDoesNotMatch", "the credential's date is not X-Amz-Date's")
    _check_time(when, now, expires)

    found = lookup(access_key)
    if found is None:
        raise S3Error(
            "InvalidAccessKeyId", "the AWS access key Id you provided does not exist in our records"
        )
    user_id, secret = found
    names = [n for n in signed.split(";") if n]
    if "host" not in names:
        raise S3Error("AccessDenied", "the host header must be signed")
    signed_headers: dict[str, str] = {}
    for name in names:
        values = headers.getall(name, [])
        if not values:
            raise S3Error("AccessDenied", f"header {name!r} is signed but was not sent")
        signed_headers[name] = ",".join(values)
    request = AWSRequest(
        method=method,
        url=f"http://{signed_headers['host']}{path}",
        headers=signed_headers,
        params=pairs,
    )
    request.context["timestamp"] = stamp
    credentials = Credentials(access_key, secret)
    signer_class = _HeaderSigner if expires is None else _QuerySigner
    signer = signer_class(credentials, region, payload)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, given):
        raise S3Error(
            "SignatureDoesNotMatch",
            "the request signature we calculated does not match the signature you provided; "
            "check your key and signing method",
        )
    return Authorized(
        user_id=user_id,
        access_key=access_key,
        payload_hash=payload,
        signature=given,
        timestamp=stamp,
        scope=signer.credential_scope(request),
        sign=lambda text: str(signer.signature(text, request)),
    )
