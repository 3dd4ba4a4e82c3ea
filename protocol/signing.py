"""The client side of Epistula: an aiohttp session whose requests are signed by one hotkey.

Apart from :mod:`protocol.http` (the services' middlewares) so that a client (the ``subnet``
CLI, the validator's miner client) imports none of aiohttp's server or the metrics: a CLI
command pays for every import before its first byte (docs/benchmarks.md).
"""

from __future__ import annotations

import json as jsonlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Final

from aiohttp import ClientSession, hdrs
from aiohttp.client import _RequestContextManager
from aiohttp.typedefs import StrOrURL
from bittensor_wallet import Keypair

from protocol.epistula import (
    SHA256_PREFIX,
    TRAILING_BLAKE3,
    body_sha256_hex,
    sign_headers,
    trailer,
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


_NO_JSON: Final = object()


class SigningClient:
    """An aiohttp session whose requests carry Epistula v2 signatures by one hotkey.

    Methods return what ``ClientSession.request`` does: use ``async with`` (or ``await``).
    """

    def __init__(
        self,
        session: ClientSession,
        keypair: Keypair,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.session = session
        self.keypair = keypair
        self._clock_ms = clock_ms

    @property
    def hotkey(self) -> str:
        return self.keypair.ss58_address

    def request(
        self,
        method: str,
        url: StrOrURL,
        *,
        signed_for: str,
        body: bytes = b"",
        json: object = _NO_JSON,
        headers: Mapping[str, str] | None = None,
    ) -> _RequestContextManager:
        """Send ``body`` (or ``json``, serialised here so the signed bytes are the sent bytes)."""
        extra = dict(headers or {})
        if json is not _NO_JSON:
            if body:
                raise ValueError("pass body or json, not both")
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            extra.setdefault(hdrs.CONTENT_TYPE, "application/json")
        signed = sign_headers(
            self.keypair,
            body_hash=SHA256_PREFIX + body_sha256_hex(body),
            signed_for=signed_for,
            now_ms=self._clock_ms(),
            declared=True,
        )
        return self.session.request(method, url, data=body, headers={**extra, **signed})

    def _declaring(self, content_hash: str, signed_for: str) -> dict[str, str]:
        """Headers signing the declared ``content_hash`` of a streamed body."""
        return sign_headers(
            self.keypair,
            body_hash=content_hash,
            signed_for=signed_for,
            now_ms=self._clock_ms(),
            declared=True,
        )

    def request_stream(
        self,
        method: str,
        url: StrOrURL,
        *,
        signed_for: str,
        content_hash: str,
        body: AsyncIterable[bytes | memoryview] | bytes,
        headers: Mapping[str, str] | None = None,
    ) -> _RequestContextManager:
        """Send a streamed body, signing its declared ``content_hash`` instead of its bytes."""
        signed = self._declaring(content_hash, signed_for)
        return self.session.request(method, url, data=body, headers={**(headers or {}), **signed})

    def request_trailed(
        self,
        method: str,
        url: StrOrURL,
        *,
        signed_for: str,
        body: AsyncIterable[bytes | memoryview],
        body_digest: Callable[[], bytes],
        trailing: str = TRAILING_BLAKE3,
        headers: Mapping[str, str] | None = None,
    ) -> _RequestContextManager:
        """Send a streamed body whose hash is known only at its end (``body_digest``, asked
        once ``body`` is spent, under ``trailing``'s algorithm), then its signed trailer.
        Count :data:`~protocol.epistula.TRAILER_SIZE` in a Content-Length."""
        signed = self._declaring(trailing, signed_for)
        data = trailed(body, lambda: trailer(self.keypair, body_digest(), signed))
        return self.session.request(method, url, data=data, headers={**(headers or {}), **signed})


async def trailed(
    body: AsyncIterable[bytes | memoryview], end: Callable[[], bytes]
) -> AsyncIterator[bytes | memoryview]:
    """``body``, then ``end()``, made once the body is spent."""
    async for chunk in body:
        yield chunk
    yield end()
