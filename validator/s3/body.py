"""Request bodies as S3 clients send them, checked as they stream.

A body is plain (``Content-Length`` bytes) or ``aws-chunked`` (``Content-Encoding:
aws-chunked``, or an ``x-amz-content-sha256`` of ``STREAMING-*``): hex-sized chunks, each
optionally signed (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, chained from the request's
signature), then trailers such as ``x-amz-checksum-crc32`` (boto3 >= 1.36 sends
``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` with CRC32 by default over HTTPS).

While the bytes go by, :class:`BodyReader` computes the object's MD5 (its ETag), the
declared payload SHA-256, ``Content-MD5`` and the declared checksum, in a worker thread about
1 MiB at a time. Its stream never raises: a malformed or short body just ends it, and
:meth:`BodyReader.check` (called before the upload commits) raises the S3 error, so the
uploader removes whatever it stored and nothing partial is ever visible.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from aiohttp import StreamReader
from awscrt import checksums
from multidict import CIMultiDictProxy

from validator.s3.auth import Authorized
from validator.s3.errors import S3Error

BATCH = 1024 * 1024  # bytes hashed per hop to the worker thread
READ = 1024 * 1024
LINE = 4096  # longest chunk header or trailer line accepted
STREAMING_SIGNED = {
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
}
STREAMING_UNSIGNED = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"  # chunks and trailers signed
TRAILER_SIGNATURE = "x-amz-trailer-signature"


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    """A CRC as a hash object: ``update`` and a big-endian ``digest``."""

    def __init__(self, function: Callable[[bytes, int], int], width: int) -> None:
        self.function, self.width, self.value = function, width, 0

    def update(self, data: bytes) -> None:
        self.value = self.function(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.width, "big")


def new_checksum(algorithm: str) -> _Hash:
    """S3's additional checksums, by the lower-case name in ``x-amz-checksum-<name>``."""
    if algorithm == "crc32":
        return _Crc(zlib.crc32, 4)
    if algorithm == "crc32c":
        return _Crc(checksums.crc32c, 4)
    if algorithm == "crc64nvme":
        return _Crc(checksums.crc64nvme, 8)
    if algorithm == "sha1":
        return hashlib.sha1()  # noqa: S324 - S3's checksum, not a security choice
    if algorithm == "sha256":
        return hashlib.sha256()
    raise S3Error("InvalidRequest", f"unsupported checksum algorithm {algorithm!r}")


def _declared_checksum(headers: CIMultiDictProxy[str]) -> tuple[str, str | None] | None:
    """(algorithm, base64 value or None when it comes in a trailer)."""
    trailer = headers.get("x-amz-trailer", "").strip().lower()
    if trailer:
        if not trailer.startswith("x-amz-checksum-"):
            raise S3Error("InvalidRequest", f"unsupported trailer {trailer[:64]!r}")
        return trailer.removeprefix("x-amz-checksum-"), None
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("x-amz-checksum-") and lower not in {
            "x-amz-checksum-mode",
            "x-amz-checksum-type",
            "x-amz-checksum-algorithm",
        }:
            return lower.removeprefix("x-amz-checksum-"), value.strip()
    return None


def _transfer_chunked(headers: CIMultiDictProxy[str]) -> bool:
    """HTTP/1.1 chunked transfer encoding (aiohttp de-chunks it): some SDKs stream a body of
    unknown length this way, and S3 takes it."""
    return "chunked" in headers.get("Transfer-Encoding", "").lower()


class BodyReader:
    def __init__(
        self, stream: StreamReader, headers: CIMultiDictProxy[str], auth: Authorized, limit: int
    ) -> None:
        """``limit``: the most bytes the object (the decoded body) may have."""
        self.stream = stream
        self.auth = auth
        payload = auth.payload_hash
        # aws-chunked framing is announced by the payload hash, or by Content-Encoding with
        # the decoded length S3 requires beside it; without that length, a body under
        # "Content-Encoding: gzip, aws-chunked" is plain (as S3 takes it).
        self.chunked = payload.startswith("STREAMING-") or (
            "aws-chunked" in headers.get("Content-Encoding", "")
            and "x-amz-decoded-content-length" in headers
        )
        self.signed_chunks = payload in STREAMING_SIGNED
        if payload.startswith("STREAMING-") and not (
            self.signed_chunks or payload == STREAMING_UNSIGNED
        ):
            raise S3Error("InvalidArgument", f"unsupported x-amz-content-sha256 {payload[:64]!r}")
        length = headers.get("x-amz-decoded-content-length" if self.chunked else "Content-Length")
        self.limit = limit
        self.declared: int | None = None  # None: HTTP chunked, the length known at the end
        if length is None and not self.chunked and _transfer_chunked(headers):
            pass  # bounded by ``limit`` as it streams
        elif length is None or not (length.isascii() and length.isdigit()):
            raise S3Error(
                "MissingContentLength",
                "send Content-Length (and x-amz-decoded-content-length for aws-chunked)",
            )
        else:
            self.declared = int(length)
            if self.declared > limit:
                raise S3Error(
                    "EntityTooLarge", f"your proposed upload exceeds the {limit} bytes allowed"
                )
        self.md5 = hashlib.md5()  # noqa: S324 - S3's ETag, not a security choice
        self.sha256 = (
            hashlib.sha256() if len(payload) == 64 and not payload.startswith("STREAMING") else None
        )
        content_md5 = headers.get("Content-MD5")
        self.content_md5: bytes | None = None
        if content_md5 is not None:
            try:
                self.content_md5 = base64.b64decode(content_md5, validate=True)
            except binascii.Error:
                raise S3Error("InvalidDigest", "Content-MD5 is not base64") from None
        declared = _declared_checksum(headers)
        self.algorithm = declared[0] if declared else None
        self.expected_checksum = declared[1] if declared else None
        self.checksum = new_checksum(self.algorithm) if self.algorithm else None
        self.received = 0
        self.error: S3Error | None = None
        self.trailers: dict[str, str] = {}

    def _update(self, pieces: list[bytes], chunk_hash: _Hash | None) -> None:
        for piece in pieces:
            self.md5.update(piece)
            if self.sha256 is not None:
                self.sha256.update(piece)
            if self.checksum is not None:
                self.checksum.update(piece)
            if chunk_hash is not None:
                chunk_hash.update(piece)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The object's bytes; ends early (``error`` set) on a bad or short body."""
        try:
            source = self._decoded() if self.chunked else self._plain()
            async for piece in source:
                yield piece
        except S3Error as exc:
            self.error = exc
        except (ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
            # The client went away, or sent something aiohttp could not frame.
            self.error = S3Error("IncompleteBody", f"the body could not be read: {exc}")

    async def _plain(self) -> AsyncIterator[bytes]:
        batch: list[bytes] = []
        held = 0
        async for piece in self.stream.iter_any():
            self.received += len(piece)
            if self.declared is None and self.received > self.limit:
                raise S3Error(
                    "EntityTooLarge", f"your upload exceeds the {self.limit} bytes allowed"
                )
            if self.declared is not None and self.received > self.declared:
                raise S3Error("IncompleteBody", "the body is longer than Content-Length")
            batch.append(piece)
            held += len(piece)
            if held >= BATCH:
                await asyncio.to_thread(self._update, batch, None)
                for each in batch:
                    yield each
                batch, held = [], 0
        await asyncio.to_thread(self._update, batch, None)
        for each in batch:
            yield each

    async def _line(self) -> bytes:
        line = await self.stream.readuntil(b"\n")
        if len(line) > LINE or not line.endswith(b"\r\n"):
            raise S3Error("IncompleteBody", "a chunk header or trailer is malformed")
        return line[:-2]

    async def _decoded(self) -> AsyncIterator[bytes]:
        previous = self.auth.signature
        while True:
            header = await self._line()
            size_text, _, extension = header.partition(b";")
            try:
                size = int(size_text, 16)
            except ValueError:
                raise S3Error("IncompleteBody", "a chunk size is not hexadecimal") from None
            chunk_hash = hashlib.sha256() if self.signed_chunks else None
            remaining = size
            batch: list[bytes] = []
            held = 0
            while remaining:
                piece = await self.stream.read(min(remaining, READ))
                if not piece:
                    raise S3Error("IncompleteBody", "the body ended inside a chunk")
                remaining -= len(piece)
                self.received += len(piece)
                if self.received > self.size:
                    raise S3Error(
                        "IncompleteBody", "the body is longer than x-amz-decoded-content-length"
                    )
                batch.append(piece)
                held += len(piece)
                if held >= BATCH or not remaining:
                    await asyncio.to_thread(self._update, batch, chunk_hash)
                    for each in batch:
                        yield each
                    batch, held = [], 0
            if self.signed_chunks:
                digest = (chunk_hash or hashlib.sha256()).hexdigest()
                given = extension.decode("ascii", "replace").removeprefix("chunk-signature=")
                expected = self.auth.chunk_signature(previous, digest)
                if given != expected:
                    raise S3Error("SignatureDoesNotMatch", "a chunk's signature does not match")
                previous = expected
            if size == 0:
                break
            if await self.stream.readexactly(2) != b"\r\n":
                raise S3Error("IncompleteBody", "a chunk does not end with CRLF")
        await self._trailers()
        if self.auth.payload_hash == SIGNED_TRAILER:
            self._check_trailer_signature(previous)

    async def _trailers(self) -> None:
        """Trailers, then an empty line (some clients just end the body)."""
        while not self.stream.at_eof():
            line = await self._line()
            if not line:
                break
            name, sep, value = line.decode("ascii", "replace").partition(":")
            if not sep:
                raise S3Error("IncompleteBody", "a trailer is not name:value")
            self.trailers[name.strip().lower()] = value.strip()

    def _check_trailer_signature(self, previous: str) -> None:
        """The trailers' own signature, chained from the last chunk's: over each trailer
        but the signature as ``name:value\n``, in the order sent (AWS's canonical form)."""
        given = self.trailers.pop(TRAILER_SIGNATURE, None)
        canonical = "".join(f"{name}:{value}\n" for name, value in self.trailers.items())
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        if given != self.auth.trailer_signature(previous, digest):
            raise S3Error("SignatureDoesNotMatch", "the trailers' signature does not match")

    def check(self) -> None:
        """Raise the first thing wrong with the body, once it has streamed."""
        if self.error is not None:
            raise self.error
        if self.declared is not None and self.received != self.declared:
            raise S3Error(
                "IncompleteBody",
                f"you did not provide the number of bytes specified: {self.received} of "
                f"{self.declared}",
            )
        if self.sha256 is not None and self.sha256.hexdigest() != self.auth.payload_hash:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "the provided x-amz-content-sha256 header does not match what was computed",
            )
        if self.content_md5 is not None and self.content_md5 != self.md5.digest():
            raise S3Error(
                "BadDigest", "the Content-MD5 you specified did not match what we received"
            )
        if self.checksum is not None and self.algorithm is not None:
            expected = self.expected_checksum
            if expected is None:
                expected = self.trailers.get(f"x-amz-checksum-{self.algorithm}")
                if expected is None:
                    raise S3Error(
                        "InvalidRequest", f"the x-amz-checksum-{self.algorithm} trailer is missing"
                    )
            if base64.b64encode(self.checksum.digest()).decode() != expected:
                raise S3Error(
                    "BadDigest",
                    f"the {self.algorithm.upper()} you specified did not match the calculated "
                    "checksum",
                )

    @property
    def size(self) -> int:
        """The object's length: as declared, or (HTTP chunked) as received."""
        return self.received if self.declared is None else self.declared

    @property
    def etag(self) -> str:
        return f'"{self.md5.hexdigest()}"'

    @property
    def checksum_value(self) -> str | None:
        """``<algorithm>:<base64>``, to be returned on reads."""
        if self.checksum is None or self.algorithm is None:
            return None
        return f"{self.algorithm}:{base64.b64encode(self.checksum.digest()).decode()}"
