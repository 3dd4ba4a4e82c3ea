"""The user's side of a validator: upload, download, list and delete, signed by a hotkey.

Capabilities (the keys of encrypted objects) never leave this machine unless asked: the
client keeps them in ``~/.subnet/capabilities/<validator hotkey>.json``, written atomically.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp.typedefs import StrOrURL
from bittensor_wallet import Keypair
from yarl import URL

from protocol.epistula import HEADER_CONTENT_HASH
from protocol.http import SigningClient
from subnet.dataset import sha256_of

CHUNK = 1024 * 1024
DEFAULT_CAPS = Path("~/.subnet/capabilities").expanduser()


class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class CapabilityStore:
    def __init__(self, folder: Path, validator: str) -> None:
        self.path = folder / f"{validator}.json"

    def load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        return {str(k): str(v) for k, v in data.items()}

    def save(self, entries: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".caps-")
        with os.fdopen(fd, "w") as out:
            json.dump(entries, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(self.path)

    def remember(self, object_id: str, name: str, capability: str) -> None:
        entries = self.load()
        entries[object_id] = capability
        entries[f"name:{name}"] = capability
        self.save(entries)

    def find(self, ref: str) -> str | None:
        entries = self.load()
        return entries.get(ref) or entries.get(f"name:{ref}")


def _sync(out: Any) -> None:
    out.flush()
    os.fsync(out.fileno())


def _discard(path: str) -> None:
    Path(path).unlink(missing_ok=True)


async def _file_chunks(path: Path, on_bytes: Callable[[int], None]) -> AsyncIterator[bytes]:
    with path.open("rb") as src:
        while chunk := await asyncio.to_thread(src.read, CHUNK):
            on_bytes(len(chunk))
            yield chunk


class BearerClient:
    """SigningClient's two calls, authenticated by an API token instead of a hotkey."""

    def __init__(self, session: aiohttp.ClientSession, token: str) -> None:
        self.session = session
        self.auth = {"Authorization": f"Bearer {token}"}

    def request(
        self, method: str, url: StrOrURL, *, signed_for: str,
        headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        del signed_for  # tokens are not bound to a receiver
        return self.session.request(method, url, headers={**(headers or {}), **self.auth})

    def request_stream(
        self, method: str, url: StrOrURL, *, signed_for: str, content_hash: str,
        body: AsyncIterable[bytes] | bytes, headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        del signed_for
        sent = {**(headers or {}), **self.auth, HEADER_CONTENT_HASH: content_hash}
        return self.session.request(method, url, data=body, headers=sent)


class GatewayClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        keypair: Keypair | None,
        url: str,
        caps: Path = DEFAULT_CAPS,
        *,
        token: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.signer: SigningClient | BearerClient
        if token:
            self.signer = BearerClient(session, token)
        elif keypair is not None:
            self.signer = SigningClient(session, keypair)
        else:
            raise ValueError("a GatewayClient needs a hotkey or an API token")
        self.session = session
        self.validator = ""
        self.caps_folder = caps

    async def connect(self) -> None:
        async with self.session.get(f"{self.url}/v1/info") as response:
            info = await self._json(response)
        self.validator = str(info["hotkey"])

    @property
    def caps(self) -> CapabilityStore:
        return CapabilityStore(self.caps_folder, self.validator)

    @staticmethod
    async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise GatewayError(response.status, "bad_reply", "the validator sent no JSON")
        if response.status >= 400:
            raise GatewayError(response.status, str(body.get("error")), str(body.get("message")))
        return body

    async def upload(
        self, path: Path, name: str, *, encrypt: bool = True, codec: str | None = None,
        on_bytes: Callable[[int], None] = lambda _n: None,
    ) -> dict[str, Any]:  # fmt: skip
        """Upload ``path`` as ``name``; ``codec`` (zfec, isal) defaults to the validator's."""
        digest, size = await asyncio.to_thread(lambda: (sha256_of(path), path.stat().st_size))
        query = {"name": name, "encrypt": "1" if encrypt else "0"}
        if codec is not None:
            query["codec"] = codec
        async with self.signer.request_stream(
            "PUT",
            URL(f"{self.url}/v1/objects").with_query(query),
            signed_for=self.validator,
            content_hash=f"sha256:{digest}",
            body=_file_chunks(path, on_bytes),
            headers={"Content-Length": str(size)},
        ) as response:
            result = await self._json(response)
        self.caps.remember(result["object_id"], name, result["capability"])
        return result

    async def list(self) -> list[dict[str, Any]]:
        async with self.signer.request(
            "GET", f"{self.url}/v1/objects", signed_for=self.validator
        ) as response:
            body = await self._json(response)
        return list(body["objects"])

    async def delete(self, ref: str) -> dict[str, Any]:
        async with self.signer.request(
            "DELETE", f"{self.url}/v1/objects/{quote(ref)}", signed_for=self.validator
        ) as response:
            return await self._json(response)

    async def download(
        self, ref: str, target: Path, on_bytes: Callable[[int], None] = lambda _n: None
    ) -> int:
        """Write the object to ``target`` atomically; returns its size."""
        headers = {}
        capability = self.caps.find(ref)
        if capability:
            headers["X-Capability"] = capability
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                async with self.signer.request(
                    "GET", f"{self.url}/v1/objects/{quote(ref)}", signed_for=self.validator,
                    headers=headers,
                ) as response:  # fmt: skip
                    written = await self._receive(response, out, on_bytes)
                await asyncio.to_thread(_sync, out)
            await asyncio.to_thread(os.replace, tmp, target)
        except BaseException:
            await asyncio.to_thread(_discard, tmp)
            raise
        return written

    async def _receive(
        self, response: aiohttp.ClientResponse, out: Any, on_bytes: Callable[[int], None]
    ) -> int:
        if response.status != 200:
            await self._json(response)
        expected = response.content_length
        written = 0
        async for chunk in response.content.iter_chunked(CHUNK):
            await asyncio.to_thread(out.write, chunk)
            written += len(chunk)
            on_bytes(len(chunk))
        if expected is not None and written != expected:
            raise GatewayError(502, "truncated", f"got {written} of {expected} bytes")
        return written
