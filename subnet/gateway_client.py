"""The user's side of a validator: upload, download, list and delete, signed by a hotkey.

Objects are sealed here, on the user's machine, by default (``seal="client"``): the client
makes each object's key, seals its segments with the erasure core's own function
(:func:`erasure.encrypt_segment`, cut as :func:`erasure.seal_segments` cuts), and streams
the ciphertext; the validator codes, places and repairs bytes it cannot read, and never
receives the key. The key is written to the
:class:`CapabilityStore` (fsynced) before the first byte is sent, so a lost reply loses
nothing: :meth:`GatewayClient.put` on a re-run finds the committed object and completes its
capability. ``seal="validator"`` (the validator seals and hands the key back) and
``seal="none"`` remain for callers that cannot seal.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import os
import stat
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import aiohttp
from aiohttp.typedefs import StrOrURL
from bittensor_wallet import Keypair
from yarl import URL

from erasure import (
    Capability,
    CapabilityError,
    ErasureError,
    Manifest,
    new_key,
    sealed_size,
    segment_count,
)
from erasure.crypto import TAG_SIZE, decrypt_segment_into, encrypt_segment_into
from protocol.epistula import (
    CONTENT_HASHES,
    HEADER_CONTENT_HASH,
    TRAILER_SIZE,
    TRAILING_BLAKE3,
    ContentHasher,
    content_algorithm,
    trailer,
)
from protocol.page_cache import WriteBehind
from protocol.signing import SigningClient, trailed
from subnet.capability_store import DEFAULT_CAPS, CapabilityStore

# What an upload's body is hashed with: the client and the validator each hash every byte,
# and BLAKE3 is ~2.5x faster than sha256 here. Objects stored before keep their sha256.
ALGORITHM = "blake3"

__all__ = ["DEFAULT_CAPS", "CapabilityStore", "GatewayClient", "GatewayError", "PutResult"]

CHUNK = 1024 * 1024
SEALS = ("client", "validator", "none")
IN_PROGRESS_WAIT = 30.0  # a name another (dying) upload holds: how long to wait for it


class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class PutResult:
    """What :meth:`GatewayClient.put` did with one file.

    ``stored`` (uploaded now), ``recovered`` (an earlier run's upload had committed; its
    capability is now complete), ``present`` (already stored, unchanged), ``replaced``
    (changed, and --overwrite replaced it)."""

    name: str
    status: str
    object_id: str
    size: int
    # The validator's word when it stored fewer than m shares of some segment (too few
    # miners on distinct hosts); None when the object got all the redundancy it asked for.
    warning: str | None = None


def _sync(out: Any) -> None:
    out.flush()
    os.fsync(out.fileno())


def _discard(path: str) -> None:
    Path(path).unlink(missing_ok=True)


def _changed(path: Path | str) -> GatewayError:
    return GatewayError(
        409, "file_changed", f"{path} changed while it was being uploaded; upload it again"
    )


def _read_exactly(src: IO[bytes], want: int) -> bytes:
    """``want`` bytes of ``src``, or ``file_changed`` (it is shorter than it was)."""
    data = src.read(want)
    if len(data) != want:
        raise _changed(src.name)
    return data


def _read_exactly_into(src: BufferedReader, view: memoryview) -> None:
    """Fill ``view`` from ``src``, or ``file_changed`` (it is shorter than it was)."""
    filled = 0
    while filled < len(view):
        got = src.readinto(view[filled:])
        if not got:
            raise _changed(src.name)
        filled += got


def _check_ended(src: IO[bytes]) -> None:
    """``file_changed`` unless ``src`` has no byte left (it grew)."""
    if src.read(1):
        raise _changed(src.name)


def _plain_segments(src: IO[bytes], segment_size: int) -> Iterator[tuple[int, bytes, bool]]:
    """``(index, plaintext, is_last)`` of all of ``src``, cut as :func:`erasure.seal_segments`
    cuts them, read one segment per call (a buffered read of n loops to n or the end; a
    fresh bytes is not zero-filled, so a small file costs its size, not a segment). The next
    read shows whether a segment is the last. The sending pass reads its own way
    (:func:`_sealed_segments`)."""
    held = src.read(segment_size)
    index = 0
    while held:
        ahead = src.read(segment_size) if len(held) == segment_size else b""
        yield index, held, not ahead
        held, index = ahead, index + 1


def file_hash(path: Path, algorithm: str = ALGORITHM) -> str:
    """``path``'s content hash, ``"<algorithm>:<hex>"``."""
    digest = CONTENT_HASHES[algorithm]()
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
    return f"{algorithm}:{digest.hexdigest()}"


def sealed_digest(
    path: Path, key: bytes, segment_size: int, algorithm: str = ALGORITHM
) -> tuple[str, int]:
    """(content hash ``"<algorithm>:<hex>"`` of the sealed stream, plaintext bytes) of
    ``path`` sealed under ``key``: sealing is deterministic under one key, so the hash of
    what an upload under it sent."""
    digest = CONTENT_HASHES[algorithm]()
    size = 0
    scratch = bytearray()  # only hashed: one buffer for every segment, made when first needed
    with path.open("rb") as src:
        for index, plain, is_last in _plain_segments(src, segment_size):
            size += len(plain)
            if len(scratch) < len(plain) + TAG_SIZE:
                scratch = bytearray(segment_size + TAG_SIZE)
            sealed = memoryview(scratch)[: len(plain) + TAG_SIZE]
            encrypt_segment_into(key, index, is_last, plain, sealed)
            digest.update(sealed)
    return f"{algorithm}:{digest.hexdigest()}", size


# The sending pass seals into this many buffers in turn. It seals one segment ahead of the
# network, and the transport may still hold views of a segment's last chunk while the next
# segment's first goes out (after each chunk the writer waits for it to drain), so a buffer
# is sealed into again only once the segment after next is being sent.
SEALED_BUFFERS = 3


def _sealed_segments(
    src: BufferedReader, key: bytes, segment_size: int, size: int, digest: ContentHasher
) -> Iterator[memoryview]:
    """The first ``size`` bytes of ``src`` sealed, one segment per step, through buffers
    reused for the whole file: one for the plaintext, :data:`SEALED_BUFFERS` for what is
    sent. A new 16 MiB pair per segment cost the CLI a page fault per 4 KiB, most of its
    upload's faults. A yielded segment stays intact until two more have been taken."""
    plain = memoryview(bytearray(min(segment_size, size)))
    sealed: list[bytearray] = []
    index, left = 0, size
    while left:
        read = plain[: min(segment_size, left)]
        _read_exactly_into(src, read)
        left -= len(read)
        if len(sealed) < SEALED_BUFFERS:
            sealed.append(bytearray(len(plain) + TAG_SIZE))
        out = memoryview(sealed[index % SEALED_BUFFERS])[: len(read) + TAG_SIZE]
        encrypt_segment_into(key, index, not left, read, out)
        digest.update(out)  # here, in the sealing thread, beside the network
        yield out
        index += 1
    _check_ended(src)


async def _sealed_chunks(
    path: Path, key: bytes, segment_size: int, size: int, on_bytes: Callable[[int], None],
    digest: ContentHasher,
) -> AsyncIterator[memoryview]:  # fmt: skip
    """The first ``size`` bytes of ``path`` sealed, read and sealed in a thread one segment
    ahead of the network; ``digest`` takes every sealed byte."""
    with path.open("rb") as src:
        segments = _sealed_segments(src, key, segment_size, size, digest)
        ahead = asyncio.ensure_future(asyncio.to_thread(next, segments, None))
        try:
            while (sealed := await ahead) is not None:
                ahead = asyncio.ensure_future(asyncio.to_thread(next, segments, None))
                view = memoryview(sealed)
                for at in range(0, len(view), CHUNK):
                    yield view[at : at + CHUNK]
                on_bytes(len(sealed) - TAG_SIZE)
        finally:
            # The file closes when this returns: let a read in flight finish first.
            await asyncio.gather(ahead, return_exceptions=True)


async def _file_chunks(
    path: Path, size: int, on_bytes: Callable[[int], None], digest: ContentHasher
) -> AsyncIterator[bytes]:
    """The first ``size`` bytes of ``path``, hashed into ``digest`` as they are read."""

    def read(src: IO[bytes], want: int) -> bytes:
        chunk = _read_exactly(src, want)
        digest.update(chunk)
        return chunk

    with path.open("rb") as src:
        left = size
        while left:
            chunk = await asyncio.to_thread(read, src, min(CHUNK, left))
            left -= len(chunk)
            on_bytes(len(chunk))
            yield chunk
        await asyncio.to_thread(_check_ended, src)


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

    def request_trailed(
        self, method: str, url: StrOrURL, *, signed_for: str,
        body: AsyncIterable[bytes | memoryview], body_digest: Callable[[], bytes],
        trailing: str = TRAILING_BLAKE3, headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        del signed_for
        sent = {**(headers or {}), **self.auth, HEADER_CONTENT_HASH: trailing}
        data = trailed(body, lambda: trailer(None, body_digest(), sent))
        return self.session.request(method, url, data=data, headers=sent)


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
        self.segment_size = 0
        self.caps_folder = caps

    async def connect(self) -> None:
        async with self.session.get(f"{self.url}/v1/info") as response:
            info = await self._json(response)
        self.validator = str(info["hotkey"])
        self.segment_size = int(info["segment_size"])

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

    # --- uploads -------------------------------------------------------------------------

    async def upload(
        self, path: Path, name: str, *, seal: str | None = None, encrypt: bool = True,
        codec: str | None = None, on_bytes: Callable[[int], None] = lambda _n: None,
    ) -> dict[str, Any]:  # fmt: skip
        """Upload ``path`` as ``name`` once; the validator's reply. ``seal`` (client,
        validator, none) defaults to client, or none with ``encrypt=False``; ``codec``
        (zfec, isal) to the validator's. Use :meth:`put` to finish an interrupted upload."""
        seal = seal or ("client" if encrypt else "none")
        if seal not in SEALS:
            raise ValueError(f"seal is one of {', '.join(SEALS)}")
        info = await asyncio.to_thread(path.stat)
        size, mode = info.st_size, stat.S_IMODE(info.st_mode) & 0o777
        query = {"name": name, "seal": seal, "mode": f"{mode:o}"}
        if codec is not None:
            query["codec"] = codec
        digest = CONTENT_HASHES[ALGORITHM]()
        if seal != "client":
            result = await self._put(
                query, size, _file_chunks(path, size, on_bytes, digest), digest
            )
            await asyncio.to_thread(
                self.caps.complete,
                result["object_id"], name, result["capability"], _named(digest),
            )  # fmt: skip
            return result
        key = new_key()  # one key, one upload attempt: never reused for other bytes
        # The key is on disk before a byte leaves, and the hash before the trailer that lets
        # the validator commit: whatever happens to the reply, a re-run can complete the
        # capability.
        attempt = await asyncio.to_thread(self.caps.begin, name, key, "", size, self.segment_size)
        query |= {"size": str(size), "segment_size": str(self.segment_size)}
        body = self._sealed_body(path, key, size, attempt, digest, on_bytes)
        try:
            result = await self._put(query, sealed_size(size, self.segment_size), body, digest)
        except GatewayError:
            # The validator answered, or the file changed before the trailer was sent: in
            # both cases nothing was committed.
            await asyncio.to_thread(self.caps.discard, attempt)
            raise
        capability = _with_key(result["capability"], key, size)
        await asyncio.to_thread(
            self.caps.complete, result["object_id"], name, capability, _named(digest),
            attempt,
        )  # fmt: skip
        return {**result, "capability": capability}

    async def _sealed_body(
        self, path: Path, key: bytes, size: int, attempt: str, digest: ContentHasher,
        on_bytes: Callable[[int], None],
    ) -> AsyncIterator[memoryview]:  # fmt: skip
        """``path`` sealed under ``key``; once it is all sent, and before its trailer lets
        the validator commit, its hash goes into the pending ``attempt``."""
        async for chunk in _sealed_chunks(path, key, self.segment_size, size, on_bytes, digest):
            yield chunk
        await asyncio.to_thread(self.caps.record_hash, attempt, _named(digest))

    async def _put(
        self, query: dict[str, str], length: int, body: AsyncIterable[bytes | memoryview],
        digest: ContentHasher,
    ) -> dict[str, Any]:  # fmt: skip
        """PUT ``length`` bytes of ``body`` and its trailer (``digest``, the hash the body
        fills as it is read, signed once it is spent, under its own algorithm)."""
        try:
            async with self.signer.request_trailed(
                "PUT",
                URL(f"{self.url}/v1/objects").with_query(query),
                signed_for=self.validator,
                body=body,
                body_digest=digest.digest,
                trailing=f"{digest.name}:trailer",
                headers={"Content-Length": str(length + TRAILER_SIZE)},
            ) as response:
                return await self._json(response)
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, GatewayError):  # raised by the body: the file changed
                raise exc.__cause__ from None
            raise

    async def put(
        self, path: Path, name: str, listed: Mapping[str, Mapping[str, Any]], *,
        seal: str = "client", codec: str | None = None, overwrite: bool = False,
        on_bytes: Callable[[int], None] = lambda _n: None,
    ) -> PutResult:  # fmt: skip
        """Make ``name`` hold ``path``'s content, whatever an earlier run left behind.

        ``listed`` is the validator's listing by name. A committed object of an earlier
        attempt is recognised by its body's sha256 and its capability completed from the
        pending key; an unchanged file is not sent again; a changed one is refused unless
        ``overwrite`` (then the stored version is deleted and the file uploaded)."""
        for _ in range(2):
            stored = listed.get(name)
            if stored is not None:
                status = await self._reconcile(path, name, stored, overwrite)
                if status != "replace":  # nothing sent: on_bytes is not told of it
                    return PutResult(name, status, str(stored["id"]), int(stored["size"]))
                await self.delete(str(stored["id"]))
                await asyncio.to_thread(self.caps.forget, str(stored["id"]))
            try:
                reply = await self._upload_waiting(path, name, seal, codec, on_bytes)
            except GatewayError as exc:
                if exc.code != "already_exists":
                    raise
                # Committed by an upload we did not see finish: look again, once.
                listed = {o["name"]: o for o in await self.list()}
                continue
            status = "replaced" if stored is not None else "stored"
            warning = reply.get("warning")
            return PutResult(
                name, status, str(reply["object_id"]), int(reply["size"]),
                str(warning) if warning else None,
            )  # fmt: skip
        raise GatewayError(409, "already_exists", f"{name!r} keeps changing on the validator")

    async def _upload_waiting(
        self, path: Path, name: str, seal: str, codec: str | None,
        on_bytes: Callable[[int], None],
    ) -> dict[str, Any]:  # fmt: skip
        """An upload that waits out a name still held by an upload that is ending (the
        validator frees it once it has abandoned that one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + IN_PROGRESS_WAIT
        delay = 0.25
        while True:
            try:
                return await self.upload(path, name, seal=seal, codec=codec, on_bytes=on_bytes)
            except GatewayError as exc:
                if exc.code != "upload_in_progress" or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)

    async def _reconcile(
        self, path: Path, name: str, stored: Mapping[str, Any], overwrite: bool
    ) -> str:
        """``recovered``, ``present`` or ``replace`` for a name the validator holds."""
        object_id, digest = str(stored["id"]), _content_hash(stored)
        status = "present"
        entry = await asyncio.to_thread(self.caps.entry, object_id)
        if entry is None and digest:
            for pending in await asyncio.to_thread(self.caps.pending, name):
                if pending.content_hash == digest:
                    capability = Capability(
                        verifier=bytes.fromhex(str(stored["verifier"])),
                        k=int(stored["k"]), m=int(stored["m"]), size=pending.size,
                        key=pending.key,
                    )  # fmt: skip
                    await asyncio.to_thread(
                        self.caps.complete, object_id, name, str(capability), digest,
                        pending.attempt,
                    )  # fmt: skip
                    entry = await asyncio.to_thread(self.caps.entry, object_id)
                    status = "recovered"
                    break
        if await asyncio.to_thread(self._unchanged, path, stored, entry):
            return status
        if overwrite:
            return "replace"
        if stored.get("sealed_by") == "client" and entry is None:
            why = f"stored as {object_id}, but its capability is not in {self.caps.path}"
        elif not digest:
            why = f"stored as {object_id} before content hashes were kept: it may differ"
        else:
            why = f"changed since it was stored as {object_id}"
        raise GatewayError(409, "changed", f"{why}; --overwrite replaces the stored version")

    def _unchanged(
        self, path: Path, stored: Mapping[str, Any], entry: Mapping[str, Any] | None
    ) -> bool:
        """Whether the file is what the validator holds (run in a thread)."""
        digest = _content_hash(stored)
        algorithm = content_algorithm(digest)
        if algorithm is None or path.stat().st_size != int(stored["size"]):
            return False
        if stored.get("sealed_by") != "client":
            return file_hash(path, algorithm) == digest
        if entry is None:
            return False
        capability = Capability.parse(str(entry["capability"]))
        if capability.key is None:
            return False
        # Sealing under the stored key is deterministic: same plaintext, same ciphertext.
        segment_size = int(stored["segment_size"])
        return sealed_digest(path, capability.key, segment_size, algorithm)[0] == digest

    # --- listing and deleting ------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        async with self.signer.request(
            "GET", f"{self.url}/v1/objects", signed_for=self.validator
        ) as response:
            body = await self._json(response)
        return list(body["objects"])

    async def health(
        self, ref: str | None = None, *, prefix: str = ""
    ) -> builtins.list[dict[str, Any]]:
        """The health of the caller's objects whose names start with ``prefix`` (or of
        ``ref``, one of them), as the validator's repairer sees it: healthy shares per
        segment against k and m."""
        url = f"{self.url}/v1/health"
        if ref is not None:
            url += f"/{quote(ref)}"
        elif prefix:
            url += f"?prefix={quote(prefix, safe='')}"
        async with self.signer.request("GET", url, signed_for=self.validator) as response:
            body = await self._json(response)
        return list(body["objects"])

    async def delete(self, ref: str) -> dict[str, Any]:
        async with self.signer.request(
            "DELETE", f"{self.url}/v1/objects/{quote(ref)}", signed_for=self.validator
        ) as response:
            return await self._json(response)

    # --- downloads -----------------------------------------------------------------------

    async def download(
        self, ref: str | None, target: Path, on_bytes: Callable[[int], None] = lambda _n: None,
        *, capability: str | None = None,
    ) -> int:  # fmt: skip
        """Write the object to ``target`` atomically; returns its size. ``ref`` (id or name)
        finds the capability in the store; ``capability`` alone reads any object, whoever
        uploaded it (with ``ref`` too, it must be that object's)."""
        if capability is None and ref is None:
            raise ValueError("give a ref or a capability")
        text = capability or (await asyncio.to_thread(self.caps.find, ref) if ref else None)
        cap = None
        if text:
            try:
                cap = Capability.parse(text)
            except CapabilityError as exc:
                raise GatewayError(400, "bad_capability", str(exc)) from None
        if cap is not None and capability is not None and ref is not None:
            await self._check_capability_names(ref, cap)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as file:
                out = WriteBehind(file)
                if cap is None:
                    assert ref is not None
                    written, mode = await self._download_plain(ref, out, on_bytes)
                else:
                    written, mode = await self._download_capability(cap, out, on_bytes, ref)
                # The uploaded file's mode; a new file's default for objects without one
                # (mkstemp made it 0600).
                mode = default_mode() if mode is None else mode
                await asyncio.to_thread(os.chmod, file.fileno(), mode)
                await asyncio.to_thread(_sync, file)
            await asyncio.to_thread(os.replace, tmp, target)
        except BaseException:
            await asyncio.to_thread(_discard, tmp)
            raise
        return written

    async def _check_capability_names(self, ref: str, cap: Capability) -> None:
        listed = {o["id"]: o for o in await self.list()}
        found = listed.get(ref) or next((o for o in listed.values() if o["name"] == ref), None)
        if found is None:
            raise GatewayError(404, "not_found", f"you have no object {ref}")
        if found.get("verifier") != cap.verifier.hex():
            raise GatewayError(
                400, "wrong_capability",
                f"that capability is for another object, not {ref} ({found['id']})",
            )  # fmt: skip

    async def _download_plain(
        self, ref: str, out: WriteBehind, on_bytes: Callable[[int], None]
    ) -> tuple[int, int | None]:
        """(bytes written, the uploaded file's mode if the validator recorded one)."""
        async with self.signer.request(
            "GET", f"{self.url}/v1/objects/{quote(ref)}", signed_for=self.validator
        ) as response:
            if response.status == 200 and response.headers.get("X-Sealed-By") == "client":
                raise GatewayError(
                    403, "key_needed",
                    f"{ref} was sealed on the machine that uploaded it and its capability is "
                    f"not in {self.caps.path}; give --capability URI:SN-CHK:... (from that "
                    "machine's ~/.subnet/capabilities, or whoever shared it)",
                )  # fmt: skip
            return await self._receive(response, out, on_bytes), _mode(response)

    async def _manifest(self, cap: Capability) -> Manifest:
        """The manifest the capability pins, checked against it."""
        async with self.signer.request(
            "GET", f"{self.url}/v1/manifests/{cap.verifier.hex()}", signed_for=self.validator
        ) as response:
            if response.status != 200:
                await self._json(response)
            raw = await response.read()
        try:
            manifest = Manifest.from_json(raw)
        except ErasureError as exc:
            raise GatewayError(
                502, "bad_manifest", f"the validator sent a bad manifest: {exc}"
            ) from None
        if (manifest.verifier_hash(), manifest.size, manifest.params.k, manifest.params.m) != (
            cap.verifier, cap.size, cap.k, cap.m,
        ):  # fmt: skip
            raise GatewayError(502, "bad_manifest", "the manifest is not the capability's")
        return manifest

    async def _download_capability(
        self, cap: Capability, out: WriteBehind, on_bytes: Callable[[int], None],
        ref: str | None = None,
    ) -> tuple[int, int | None]:  # fmt: skip
        """By ``ref`` (the caller's own objects only, as without a capability), or by the
        capability alone (any object: holding the capability is the permission)."""
        manifest = await self._manifest(cap)
        if manifest.sealer != "none" and cap.key is None:
            raise GatewayError(
                403, "key_needed", "that is a verify-only capability: it reads nothing"
            )
        headers = {"X-Capability": str(cap)} if manifest.sealer == "validator" else {}
        where = f"objects/{quote(ref)}" if ref is not None else f"shared/{cap.verifier.hex()}"
        async with self.signer.request(
            "GET", f"{self.url}/v1/{where}", signed_for=self.validator, headers=headers
        ) as response:
            served = response.headers.get("X-Verifier")
            if response.status == 200 and served not in (None, cap.verifier.hex()):
                raise GatewayError(
                    400, "wrong_capability",
                    f"the capability kept for {ref} is for another object; give --capability",
                )  # fmt: skip
            if manifest.sealer != "client":
                return await self._receive(response, out, on_bytes), _mode(response)
            assert cap.key is not None
            written = await self._receive_sealed(response, out, on_bytes, cap.key, manifest)
            return written, _mode(response)

    async def _receive_sealed(
        self, response: aiohttp.ClientResponse, out: WriteBehind, on_bytes: Callable[[int], None],
        key: bytes, manifest: Manifest,
    ) -> int:  # fmt: skip
        """Open the ciphertext segment by segment as it arrives; each is authenticated
        before a byte of it is written (a forged or reordered segment never lands)."""
        if response.status != 200:
            await self._json(response)
        segment, size = manifest.params.segment_size, manifest.size
        count = segment_count(size, segment)
        last = size - (count - 1) * segment + TAG_SIZE if count else 0
        # One buffer for every segment's ciphertext and one for its plaintext: a fresh 16 MiB
        # pair per segment cost the CLI a page fault per 4 KiB, most of its download CPU.
        largest = segment + TAG_SIZE if count > 1 else last
        sealed = memoryview(bytearray(largest))
        plain = memoryview(bytearray(max(largest - TAG_SIZE, 0)))

        def open_and_write(index: int, length: int) -> int:
            opened = plain[: length - TAG_SIZE]
            decrypt_segment_into(key, index, index == count - 1, sealed[:length], opened)
            out.write(opened)
            return len(opened)

        written = 0
        try:
            for index in range(count):
                length = last if index == count - 1 else segment + TAG_SIZE
                # Copied out of the stream's chunks once, then opened and written in one
                # thread hop.
                await _read_into(response.content, sealed[:length])
                done = await asyncio.to_thread(open_and_write, index, length)
                written += done
                on_bytes(done)
        except asyncio.IncompleteReadError:
            raise GatewayError(502, "truncated", f"got {written} of {size} bytes") from None
        except ErasureError as exc:
            raise GatewayError(
                502, "bad_ciphertext", f"the object does not open with that capability: {exc}"
            ) from None
        if await response.content.read(1):
            raise GatewayError(502, "truncated", f"got more than the {size} bytes expected")
        return written

    async def _receive(
        self, response: aiohttp.ClientResponse, out: WriteBehind, on_bytes: Callable[[int], None]
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


async def _read_into(content: aiohttp.StreamReader, view: memoryview) -> None:
    """Fill ``view`` from ``content``, or IncompleteReadError if the body ends first."""
    filled = 0
    while filled < len(view):
        chunk = await content.read(len(view) - filled)
        if not chunk:
            raise asyncio.IncompleteReadError(b"", len(view))
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)


def _named(digest: ContentHasher) -> str:
    """An upload's finished hash as the validator records it."""
    return f"{digest.name}:{digest.hexdigest()}"


def _content_hash(stored: Mapping[str, Any]) -> str:
    """A listed object's content hash, ``"<algorithm>:<hex>"`` ("" if none is recorded);
    a validator from before content hashes named their algorithm lists only sha256."""
    named = stored.get("content_hash")
    if named:
        return str(named)
    sha256 = stored.get("content_sha256")
    return f"sha256:{sha256}" if sha256 else ""


def _mode(response: aiohttp.ClientResponse) -> int | None:
    """The permission bits the object's file had at upload (``X-Object-Mode``, octal)."""
    raw = response.headers.get("X-Object-Mode", "")
    if not (0 < len(raw) <= 3 and all(c in "01234567" for c in raw)):
        return None  # none recorded (stored before modes were, or through S3)
    return int(raw, 8)


@functools.cache
def default_mode() -> int:
    """What a new file gets here: 0o666 less the umask. Linux shows the umask in
    /proc/self/status; elsewhere it is read by setting it and putting it back at once."""
    try:
        status = Path("/proc/self/status").read_text()
        mask = int(next(line for line in status.splitlines() if line.startswith("Umask:"))[6:], 8)
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _with_key(verify_only: str, key: bytes, size: int) -> str:
    """The read capability: the validator's verify-only one, and the key only we hold."""
    cap = Capability.parse(verify_only)
    if cap.size != size:
        raise GatewayError(
            502, "bad_reply", f"the validator stored {cap.size} bytes, we sealed {size}"
        )
    return str(Capability(verifier=cap.verifier, k=cap.k, m=cap.m, size=cap.size, key=key))
