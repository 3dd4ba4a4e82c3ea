"""The validator's side of the miner API: push, fetch, delete and challenge shards.

Every request is Epistula-signed for the miner's hotkey. A miner's answer is checked here
before anything trusts it: a receipt must be signed by that miner and name the shard, size
and root we sent; fetched bytes are checked by the caller against the shard id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from erasure.crypto import TAG_SIZE
from erasure.merkle import hash_leaf
from erasure.params import MAX_SEGMENT_SIZE
from protocol.signing import SigningClient
from protocol.wire import (
    FRAME_HEADER_SIZE,
    StorageReceipt,
    WireError,
    frame_metadata,
    frame_metadata_length,
)

Buffer = bytes | bytearray | memoryview
# A push's body goes out in views of this size. What the socket does not take at once the
# event loop's transport copies into its buffer before it waits: with 16 pushes in flight,
# 1 MiB views made the validator's memory spike by ~50 MiB (bench/memory.py); 256 KiB do not.
SEND_CHUNK = 256 * 1024
# What a miner's reply may hold, at most: a miner is not trusted to send what was asked, and
# a body read whole would let one hold any amount of the validator's memory.
MAX_SHARD_BYTES = MAX_SEGMENT_SIZE + TAG_SIZE  # a shard is never larger than its segment
MAX_JSON_BYTES = 1 << 20  # receipts, refusals, /v1/info
MAX_QUARANTINE_BYTES = 32 << 20  # ~200k records of shards set aside
ANSWER_OVERHEAD_BYTES = 4096  # per challenge: the answer's JSON beside its leaves and proof


@dataclass(frozen=True, slots=True)
class MinerAddress:
    hotkey: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class ReadObserver(Protocol):
    """Told what each fetch of a whole share from a miner brought (the challenger's
    :meth:`~validator.challenger.Challenger.observe_read`): ``served``, or ``why`` not:
    ``missing`` (the miner said 404) or ``wrong`` (bytes that do not hash to the id)."""

    def __call__(self, miner: str, shard_id: str, *, served: bool, why: str = "") -> None: ...


class MinerError(Exception):
    """A miner did not do what was asked; ``kind`` says how (for scoring and retries)."""

    def __init__(
        self, miner: MinerAddress, kind: str, detail: str, status: int | None = None
    ) -> None:
        super().__init__(f"miner {miner.hotkey} at {miner.url}: {kind}: {detail}")
        self.miner = miner
        self.kind = kind  # unreachable | timeout | refused | bad_reply
        self.detail = detail
        self.status = status  # the HTTP status of a refusal


@dataclass(frozen=True, slots=True)
class Answered:
    """What one answer with leaves brought, as the judge needs it: each leaf's hash (taken
    as the leaf arrived; the leaf itself is let go) and the proof."""

    leaf_hashes: tuple[bytes, ...]
    proof: bytes


class _Frame:
    """A challenge reply's frame (``protocol.wire``) read as it arrives, never past
    ``limit`` bytes; a malformed frame is the miner's ``bad_reply``."""

    def __init__(
        self, miner: MinerAddress, content: aiohttp.StreamReader, declared: int | None, limit: int
    ) -> None:
        self.miner, self.content, self.declared, self.limit = miner, content, declared, limit
        self.lengths: list[int] = []
        self.taken = 0  # blobs read

    def bad(self, detail: str) -> MinerError:
        return MinerError(self.miner, "bad_reply", detail)

    async def _exactly(self, n: int, what: str) -> bytes:
        try:
            return await self.content.readexactly(n)
        except asyncio.IncompleteReadError:
            raise self.bad(what) from None

    async def metadata(self) -> dict[str, Any]:
        if self.declared is not None and self.declared > self.limit:
            raise self.bad(f"a {self.declared}-byte reply; at most {self.limit} expected")
        try:
            header = await self._exactly(FRAME_HEADER_SIZE, "frame shorter than its header")
            meta_len = frame_metadata_length(header)
        except WireError as exc:
            raise self.bad(str(exc)) from None
        if FRAME_HEADER_SIZE + meta_len > self.limit:
            raise self.bad("frame metadata length is out of bounds")
        raw = await self._exactly(meta_len, "frame metadata length is out of bounds")
        try:
            metadata, self.lengths = frame_metadata(raw)
        except WireError as exc:
            raise self.bad(str(exc)) from None
        total = FRAME_HEADER_SIZE + meta_len + sum(self.lengths)
        if total > self.limit:  # refused before its blobs are read
            raise self.bad(f"a {total}-byte reply; at most {self.limit} expected")
        if self.declared is not None and total != self.declared:
            raise self.bad("frame blobs do not add up to the frame's length")
        return metadata

    async def blob(self) -> bytes | None:
        """The next blob, or None when the frame lists no more."""
        if self.taken == len(self.lengths):
            return None
        self.taken += 1
        return await self._exactly(
            self.lengths[self.taken - 1], "frame blobs do not add up to the frame's length"
        )

    async def finish(self) -> None:
        """Read what the caller skipped; the frame must end where its metadata says."""
        while await self.blob() is not None:
            pass
        if await self.content.read(1):
            raise self.bad("frame blobs do not add up to the frame's length")


async def _read_answered(frame: _Frame, answers: Sequence[Any]) -> list[Answered]:
    """Per answer with status 200 and a leaf count, in order: its leaves (hashed as they
    arrive) and its proof. A reply's blobs are each such answer's leaves then its proof, so
    once a count cannot be trusted where later answers' blobs start is unknown: nothing more
    is taken (the judge fails those answers; the rest of the frame is read and dropped). A
    list that runs out early gives an answer fewer leaves than it counts, or an empty proof:
    the judge fails it."""
    found = []
    for answer in answers:
        if not isinstance(answer, dict) or answer.get("status") != 200:
            continue
        count = answer.get("leaves")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            break
        hashes = []
        for _ in range(count):
            if (leaf := await frame.blob()) is None:
                break
            hashes.append(hash_leaf(leaf))  # ~10 us for a 16 KiB leaf: fine on the loop
        proof = await frame.blob() if len(hashes) == count else None
        found.append(Answered(tuple(hashes), proof or b""))
    return found


async def _pieces(pieces: Sequence[Buffer]) -> AsyncIterator[memoryview]:
    # Views, not copies: the pieces stay unchanged until the push ends, and fresh 1 MiB
    # copies cost a page fault per 4 KiB (large buffers are mmapped: protocol/memory.py).
    for piece in pieces:
        view = memoryview(piece).cast("B")
        for start in range(0, len(view), SEND_CHUNK):
            yield view[start : start + SEND_CHUNK]


class MinerClient:
    """``timeout`` bounds each call, start to finish: a miner that hangs (stopped, or a dead
    peer whose connection never closes) fails the call instead of stalling its caller."""

    def __init__(self, signer: SigningClient, *, timeout: float = 60.0) -> None:
        self.signer = signer
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    def _deadline(self) -> asyncio.Timeout:
        return asyncio.timeout(self.timeout.total)

    async def put_shard(
        self,
        miner: MinerAddress,
        shard_id: str,
        pieces: Sequence[Buffer],
        size: int,
        leaf_size: int,
    ) -> StorageReceipt:
        url = f"{miner.url}/v1/shards/{shard_id}?leaf_size={leaf_size}"
        try:
            async with (
                self._deadline(),
                self.signer.request_stream(
                    "PUT",
                    url,
                    signed_for=miner.hotkey,
                    content_hash=shard_id,
                    body=_pieces(pieces),
                    headers={"Content-Length": str(size)},
                ) as response,
            ):
                body = await self._json(miner, response)
        except TimeoutError:
            raise MinerError(miner, "timeout", "storing a shard") from None
        except aiohttp.ClientError as exc:
            raise MinerError(miner, "unreachable", str(exc)) from None
        try:
            receipt = StorageReceipt.from_dict(body.get("receipt"))
            receipt.verify()
        except WireError as exc:
            raise MinerError(miner, "bad_reply", str(exc)) from None
        expected = (miner.hotkey, self.signer.hotkey, shard_id, shard_id, size)
        got = (receipt.miner, receipt.validator, receipt.shard_id, receipt.root, receipt.size)
        if got != expected:
            raise MinerError(miner, "bad_reply", f"receipt names {got}, expected {expected}")
        return receipt

    async def get_shard(
        self,
        miner: MinerAddress,
        shard_id: str,
        *,
        start: int = 0,
        end: int | None = None,
        size: int = MAX_SHARD_BYTES,
        into: bytearray | None = None,
    ) -> bytes | bytearray:
        """The shard's bytes ``start..end``; ``size``, the shard's as recorded: a body longer
        than the bytes asked for is refused (``bad_reply``) before it is held. ``into``: a
        buffer to read a body of exactly its length into (returned then), so that a reader
        of many shards reuses buffers instead of faulting in a fresh mapping for each."""
        wanted = (size if end is None else min(end, size)) - start
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            async with (
                self._deadline(),
                self.signer.request(
                    "GET",
                    f"{miner.url}/v1/shards/{shard_id}",
                    signed_for=miner.hotkey,
                    headers=headers,
                ) as response,
            ):
                if response.status not in (200, 206):
                    await self._json(miner, response)
                return await _read_at_most(miner, response, max(wanted, 0), into)
        except TimeoutError:
            raise MinerError(miner, "timeout", "fetching a shard") from None
        except aiohttp.ClientError as exc:
            raise MinerError(miner, "unreachable", str(exc)) from None

    async def delete_shard(self, miner: MinerAddress, shard_id: str) -> None:
        try:
            async with (
                self._deadline(),
                self.signer.request(
                    "DELETE", f"{miner.url}/v1/shards/{shard_id}", signed_for=miner.hotkey
                ) as response,
            ):
                if response.status not in (202, 404):
                    await self._json(miner, response)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise MinerError(miner, "unreachable", str(exc) or "timeout") from None

    async def challenge(
        self, miner: MinerAddress, challenges: list[dict[str, Any]], reply_bytes: int
    ) -> tuple[list[dict[str, Any]], list[Answered]]:
        """The per-challenge answers and, per answer with leaves, its :class:`Answered`.

        ``reply_bytes``, what honest answers take (leaves and proofs): a longer reply is
        refused (``bad_reply``) before it is held. The reply is read as it arrives and a
        leaf is kept only as its hash: a round challenges many miners at once, and their
        replies held whole (8 MiB each at the default batch) were most of a validator's
        memory beyond its transfers (docs/benchmarks.md)."""
        limit = reply_bytes + ANSWER_OVERHEAD_BYTES * (len(challenges) + 1)
        try:
            async with (
                self._deadline(),
                self.signer.request(
                    "POST",
                    f"{miner.url}/v1/challenges",
                    signed_for=miner.hotkey,
                    json={"challenges": challenges},
                ) as response,
            ):
                if response.status != 200:
                    await self._json(miner, response)
                frame = _Frame(miner, response.content, response.content_length, limit)
                answers = (await frame.metadata()).get("answers")
                if not isinstance(answers, list) or len(answers) != len(challenges):
                    raise MinerError(miner, "bad_reply", "answers do not match the challenges")
                answered = await _read_answered(frame, answers)
                await frame.finish()
        except TimeoutError:
            raise MinerError(miner, "timeout", "answering challenges") from None
        except aiohttp.ClientError as exc:
            raise MinerError(miner, "unreachable", str(exc)) from None
        return answers, answered

    async def quarantined(self, miner: MinerAddress) -> dict[str, str]:
        """shard id -> the scrubber's reason, for this validator's shards the miner set
        aside (``GET /v1/quarantine``)."""
        try:
            async with (
                self._deadline(),
                self.signer.request(
                    "GET", f"{miner.url}/v1/quarantine", signed_for=miner.hotkey
                ) as response,
            ):
                raw = await _read_at_most(miner, response, MAX_QUARANTINE_BYTES)
                status = response.status
        except TimeoutError:
            raise MinerError(miner, "timeout", "listing quarantined shards") from None
        except aiohttp.ClientError as exc:
            raise MinerError(miner, "unreachable", str(exc)) from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        records = body.get("quarantined") if isinstance(body, dict) else None
        if status != 200 or not isinstance(records, list):
            raise MinerError(miner, "bad_reply", f"HTTP {status} from /v1/quarantine", status)
        return {
            str(r["shard_id"]): str(r.get("reason") or "quarantined")
            for r in records
            if isinstance(r, dict) and isinstance(r.get("shard_id"), str)
        }

    async def info(self, miner: MinerAddress) -> dict[str, Any]:
        try:
            async with (
                self._deadline(),
                self.signer.session.get(f"{miner.url}/v1/info") as response,
            ):
                return await self._json(miner, response)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise MinerError(miner, "unreachable", str(exc) or "timeout") from None

    @staticmethod
    async def _json(miner: MinerAddress, response: aiohttp.ClientResponse) -> dict[str, Any]:
        raw = await _read_at_most(miner, response, MAX_JSON_BYTES)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # A refusal is a refusal whatever its body; its status says which kind.
            status = response.status if response.status >= 400 else None
            raise MinerError(
                miner, "bad_reply", f"HTTP {response.status} without a JSON body", status
            )
        if response.status >= 400:
            raise MinerError(
                miner,
                "refused",
                f"HTTP {response.status} {body.get('error')}: {body.get('message')}",
                response.status,
            )
        return body


async def _read_at_most(
    miner: MinerAddress, response: aiohttp.ClientResponse, limit: int,
    into: bytearray | None = None,
) -> bytes | bytearray:  # fmt: skip
    """The body, or ``bad_reply`` as soon as it is known to be longer than ``limit`` (from
    its Content-Length, else as it arrives). A declared length is read into one buffer of
    that size (``into`` when it is that size): no list of chunks joined into a second
    copy. A body cut short comes back as a copy of what came, never as ``into``."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise MinerError(miner, "bad_reply", f"a {declared}-byte reply; at most {limit} expected")
    if declared is not None:
        body = into if into is not None and len(into) == declared else bytearray(declared)
        with memoryview(body) as view:
            filled = 0
            while filled < declared:
                chunk = await response.content.readany()
                if not chunk:
                    break  # cut short: the caller sees the length
                view[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
            return body if filled == declared else bytes(view[:filled])
    chunks: list[bytes] = []
    held = 0
    while chunk := await response.content.readany():
        held += len(chunk)
        if held > limit:
            raise MinerError(miner, "bad_reply", f"a reply longer than the {limit} bytes expected")
        chunks.append(chunk)
    return b"".join(chunks)


async def gather_limited(limit: int, jobs: Sequence[Any]) -> list[Any]:
    """Run coroutines with at most ``limit`` in flight, returning results or exceptions."""
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Any) -> Any:
        async with semaphore:
            return await job

    return await asyncio.gather(*(run(j) for j in jobs), return_exceptions=True)
