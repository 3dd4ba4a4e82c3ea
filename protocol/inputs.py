"""Reading what a client sends, bounded and checked, for every route of every service.

A handler never calls ``int()`` on a query value, ``request.json()`` or
``request.content.iter_any()`` itself: these do, and turn anything outside the bounds into a
4xx ``ApiError`` (``error_middleware`` renders it). The limits are in
``docs/architecture.md`` ("Resource limits").

- :func:`query_int` / :func:`query_float`: ASCII decimals within explicit bounds (a 64-bit
  column by default), so a 20-digit value is a 400, never an overflow in the database.
- :func:`read_json` / :func:`parse_json`: strict JSON (no ``NaN``/``Infinity``) in UTF-8 (a
  declared charset other than UTF-8 or ASCII is a 415), at most ``MAX_JSON_DEPTH`` levels
  deep (checked before parsing, so no ``RecursionError``), with no lone UTF-16 surrogate in
  any string (it could not be stored or compared).
- :func:`paced_body`: a streamed body's chunks as received; a body that stalls or trickles
  below a minimum rate is a 408 ``body_too_slow``.
- :func:`write_paced`: the same pace the other way: a reader that stops reading (or reads
  at a trickle) is cut off, so it cannot hold what is being sent to it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import StreamReader, web

from protocol.epistula import (
    CONTENT_HASHES,
    TRAILER_SIZE,
    TRAILING_BLAKE3,
    VerifiedRequest,
    content_algorithm,
)
from protocol.http import ApiError, BadRequest

MAX_QUERY_INT: Final = 2**63 - 1  # a signed 64-bit column holds every accepted value
MAX_JSON_DEPTH: Final = 32  # our schemas nest 4 deep at most
JSON_CHARSETS: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
# Defaults for a streamed body (a setting where a service has one): over every 30 s spent
# waiting on the client, at least 16 KiB/s must arrive; a body that sends nothing for 30 s
# is the extreme case.
BODY_WINDOW_SECONDS: Final = 30.0
BODY_MIN_RATE: Final = 16 * 1024

_DECIMAL = re.compile(r"[+-]?[0-9]{1,20}")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INNERMOST_PAIRS = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def query_int(
    request: web.Request,
    name: str,
    *,
    low: int = 0,
    high: int = MAX_QUERY_INT,
    code: str = "bad_query",
) -> int | None:
    """``?name=`` as an integer in ``low..high``; None when absent or empty."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not _DECIMAL.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadRequest(code, f"?{name}= must be an integer in {low}..{high}")
    return int(raw)


def query_float(request: web.Request, name: str, *, low: float, high: float) -> float | None:
    """``?name=`` as a finite number in ``[low, high]``; None when absent or empty."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw) if len(raw) <= 64 and raw.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise BadRequest("bad_query", f"?{name}= must be a number in [{low:g}, {high:g}]")
    return value


async def read_json(request: web.Request, *, code: str) -> Any:
    """The request's JSON body (already bounded by the app's ``client_max_size``)."""
    return parse_json(await request.read(), request.charset, code=code)


def parse_json(raw: bytes, charset: str | None, *, code: str) -> Any:
    """Strict JSON from ``raw``; ``code`` names the rejection (e.g. ``bad_weights``)."""
    if charset is not None and charset.lower() not in JSON_CHARSETS:
        raise ApiError(415, "unsupported_charset", f"send JSON as UTF-8, not {charset[:32]!r}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(code, "the body is not UTF-8") from None
    if _too_deep(raw, MAX_JSON_DEPTH):
        raise BadRequest(code, f"the body is not JSON nested at most {MAX_JSON_DEPTH} deep")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise BadRequest(code, "the body is not JSON") from None
    if _ESCAPED_SURROGATE.search(raw):  # rare: only then is the walk worth it
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(code, "the body holds a lone UTF-16 surrogate") from None
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(raw: bytes, limit: int) -> bool:
    """Whether ``raw`` nests brackets deeper than ``limit`` (or unbalanced, so not JSON).

    Strings are cut out, everything but brackets dropped, then innermost pairs removed one
    level per pass: all in C, a few milliseconds for the largest body we accept.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        brackets, removed = _INNERMOST_PAIRS.subn(b"", brackets)
        if not brackets:
            return False
        if not removed:
            return True
    return True


async def paced_body(
    content: StreamReader,
    *,
    window: float = BODY_WINDOW_SECONDS,
    min_rate: int = BODY_MIN_RATE,
) -> AsyncIterator[bytes]:
    """A streamed body's chunks as received, refused (408 ``body_too_slow``) when over
    ``window`` seconds of waiting on the client fewer than ``min_rate`` bytes/s arrive.

    Only time spent waiting on the client counts: while the consumer is slow (its own
    back-pressure) the bytes are already buffered and arrive at once.
    """
    loop = asyncio.get_running_loop()
    waited, arrived = 0.0, 0
    while True:
        started = loop.time()
        chunk: bytes | None = None
        try:
            async with asyncio.timeout(window - waited):
                chunk = await content.readany()
        except TimeoutError:
            pass
        waited += loop.time() - started
        if chunk == b"":
            return
        arrived += len(chunk or b"")
        if waited >= window:
            if arrived < min_rate * window:
                raise ApiError(
                    408,
                    "body_too_slow",
                    f"the body arrived at under {min_rate} bytes/s for {window:g} s",
                )
            waited, arrived = 0.0, 0
        if chunk:
            yield chunk


class ReaderTooSlow(Exception):
    """A streamed response's reader took under the minimum rate; its connection is to be
    closed (the status is long sent)."""


async def prepend(
    first: bytes | memoryview, rest: AsyncIterator[memoryview] | AsyncIterator[bytes]
) -> AsyncIterator[bytes | memoryview]:
    """``first``, then ``rest``; no chunk is kept once it is handed on (a view kept alive
    keeps its whole buffer: a shard of a segment whose grant went back)."""
    if first:
        yield first
    del first
    async for chunk in rest:
        yield chunk
        del chunk


async def write_paced(
    response: web.StreamResponse,
    chunks: AsyncIterator[memoryview] | AsyncIterator[bytes] | AsyncIterator[bytes | memoryview],
    *,
    window: float = BODY_WINDOW_SECONDS,
    min_rate: int = BODY_MIN_RATE,
) -> None:
    """Write ``chunks`` to a client that must take ``min_rate`` bytes/s over every
    ``window`` seconds spent waiting on it (time spent making the chunks does not count);
    else :class:`ReaderTooSlow`."""
    loop = asyncio.get_running_loop()
    waited, taken = 0.0, 0
    async for chunk in chunks:
        started = loop.time()
        try:
            async with asyncio.timeout(window - waited):
                await response.write(chunk)
        except TimeoutError:
            raise ReaderTooSlow(f"the reader took under {min_rate} bytes/s") from None
        waited += loop.time() - started
        taken += len(chunk)
        del chunk  # not held while the next one is made
        if waited >= window:
            if taken < min_rate * window:
                raise ReaderTooSlow(f"the reader took under {min_rate} bytes/s")
            waited, taken = 0.0, 0


HASH_BATCH = 1024 * 1024  # a signed body is hashed off the event loop this much at a time


class SignedBody:
    """A streamed body checked against what its sender signed: a declared
    ``"<algorithm>:<hex>"`` (sha256 or blake3), or (``"<algorithm>:trailer"``) the trailer
    its last bytes carry.

    Iterate it for the object's bytes, the trailer held back, as received (re-cut chunks
    would each be a fresh, page-faulting mapping) and hashed off the event loop about
    :data:`HASH_BATCH` at a time; then :meth:`check` before anything becomes visible.
    """

    def __init__(
        self, caller: VerifiedRequest, declared: str, length: int, chunks: AsyncIterator[bytes]
    ) -> None:
        algorithm = content_algorithm(declared)
        if algorithm is None:
            raise BadRequest(
                "bad_hash",
                "declare Epistula-Content-Hash as blake3:<hex of the body> (or sha256:<hex>), "
                f"or {TRAILING_BLAKE3} and end the body with its hash and signature",
            )
        self.caller = caller
        self.declared = declared
        self.trailed = declared == f"{algorithm}:trailer"
        self.size = length - (TRAILER_SIZE if self.trailed else 0)  # the object's bytes
        if self.size < 0:
            raise BadRequest(
                "bad_upload", f"the body is shorter than its {TRAILER_SIZE}-byte trailer"
            )
        self.received = 0
        self._chunks = chunks
        self._trailer = bytearray()
        self._digest = CONTENT_HASHES[algorithm]()
        self._algorithm = algorithm

    @property
    def declared_hash(self) -> str | None:
        """The body's content hash (``"<algorithm>:<hex>"``) as signed up front; None when
        a trailer will say it."""
        return None if self.trailed else self.declared

    def _hash(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._digest.update(chunk)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        batch: list[bytes] = []
        held = 0
        async for arrived in self._chunks:
            chunk = arrived
            if self.received + len(chunk) > self.size:  # past the object: its trailer
                within = self.size - self.received
                room = TRAILER_SIZE if self.trailed else 0
                if len(self._trailer) + len(chunk) - within > room:
                    raise BadRequest("bad_upload", "the body is longer than Content-Length")
                self._trailer.extend(memoryview(chunk)[within:])
                chunk = chunk[:within]
                if not chunk:
                    continue
            self.received += len(chunk)
            batch.append(chunk)
            held += len(chunk)
            if held >= HASH_BATCH:
                await asyncio.to_thread(self._hash, batch)
                for piece in batch:
                    yield piece
                batch, held = [], 0
        await asyncio.to_thread(self._hash, batch)
        for piece in batch:
            yield piece

    def check(self) -> str:
        """Once the body is read: raise unless it is whole and what its sender signed; its
        content hash, ``"<algorithm>:<hex>"``."""
        if self.received != self.size:
            raise BadRequest(
                "bad_upload", f"the body ended after {self.received} of {self.size} bytes"
            )
        if self.trailed:
            return self.caller.check_trailer(self._digest.digest(), bytes(self._trailer))
        content_hash = f"{self._algorithm}:{self._digest.hexdigest()}"
        self.caller.check_streamed_body(content_hash)
        return content_hash
