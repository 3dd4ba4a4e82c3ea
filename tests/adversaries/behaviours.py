"""Dishonest and unlucky miners: :class:`MinerService` subclasses with one behaviour each.

Each class changes only what its behaviour needs and leaves every other path to the real
service, so the process still speaks the real HTTP API through ``storage_miner.app``. Which
shards are dropped and which leaves are flipped is decided by hashing, so tests can predict
it: :func:`is_dropped`, :func:`flipped_leaves`.

Data is lost "as if the disk lost it": the bytes and saved tree leave the store (through the
store's own ``trash`` then ``purge``, so both backends work) while the index still says the
shard is live. The real service then answers a challenge on it with a per-challenge 404.
What a fake remembers (shards it stored, stale answers, bytes kept) lives in memory and is
gone when its process restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
from aiohttp import web
from bittensor_wallet import Keypair
from blake3 import blake3

from erasure import MerkleTree, decode_segment
from protocol.settings import parse_size
from protocol.wire import StorageReceipt, encode_frame
from storage_miner.index import ShardIndex, ShardRecord
from storage_miner.prover import ChallengeAnswer, answer
from storage_miner.service import Challenge, ChallengeOutcome, MinerService
from storage_miner.settings import MinerSettings
from storage_miner.store import ShardKey, ShardStore

log = logging.getLogger(__name__)

BEHAVIOURS = (
    "honest",
    "drop",
    "bitflip",
    "wrongproof",
    "replay",
    "slow",
    "rebuild",
    "fakecap",
    # Issue 13's classes: what earned credit before the challenger judged every answer,
    # checked serving, and stopped laundering late answers.
    "nulls",
    "noserve",
    "burst",
    "hide",
    "turn",
    "late",
    # Replies without end, to make the validator hold what it never asked for.
    "flood",
)
_NEEDS_PARAMETER = {
    "drop",
    "bitflip",
    "slow",
    "rebuild",
    "fakecap",
    "burst",
    "hide",
    "turn",
    "late",
}
HANG_SECONDS = 120.0  # how long ``hide`` keeps a caller waiting: past any deadline
# What ``fakecap`` advertises when the command line gives no --capacity: 1 PiB.
CLAIMED_CAPACITY = 2**50


class BehaviourError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Behaviour:
    """``NAME`` or ``NAME:PARAMETER``, e.g. ``drop:0.25``, ``slow:1.5``, ``fakecap:1MiB``."""

    name: str
    fraction: float = 0.0  # drop, bitflip
    seconds: float = 0.0  # slow
    sources: int = 0  # rebuild: how many shard-sized bodies one rebuild reads
    keep_bytes: int = 0  # fakecap
    after: float = 0.0  # turn: seconds of honesty after its first store

    @classmethod
    def parse(cls, spec: str) -> Behaviour:
        name, _, raw = spec.partition(":")
        if name not in BEHAVIOURS:
            raise BehaviourError(f"unknown behaviour {name!r}; one of {', '.join(BEHAVIOURS)}")
        if (name in _NEEDS_PARAMETER) != bool(raw):
            usage = f"{name}:VALUE" if name in _NEEDS_PARAMETER else name
            raise BehaviourError(f"write the behaviour as {usage}")
        try:
            return cls._with_parameter(name, raw)
        except ValueError as exc:
            if isinstance(exc, BehaviourError):
                raise
            raise BehaviourError(f"{spec!r}: {exc}") from None

    @classmethod
    def _with_parameter(cls, name: str, raw: str) -> Behaviour:
        if name in {"drop", "bitflip", "hide"}:
            return cls(name, fraction=_fraction(name, raw))
        if name == "turn":
            share, at, after = raw.partition("@")
            if not at:
                raise BehaviourError("write the behaviour as turn:FRACTION@SECONDS")
            return cls(name, fraction=_fraction(name, share), after=float(after))
        if name in {"slow", "burst", "late"}:
            seconds = float(raw)
            if not 0.0 <= seconds <= 600.0:
                raise BehaviourError(f"{name}: seconds must be in 0..600, not {raw}")
            return cls(name, seconds=seconds)
        if name == "rebuild":
            sources = int(raw)
            if not 1 <= sources <= 128:
                raise BehaviourError(f"rebuild: K must be in 1..128, not {raw}")
            return cls(name, sources=sources)
        if name == "fakecap":
            return cls(name, keep_bytes=parse_size(raw))
        return cls(name)


def _fraction(name: str, raw: str) -> float:
    fraction = float(raw)
    if not 0.0 <= fraction <= 1.0:
        raise BehaviourError(f"{name}: the fraction must be in 0..1, not {raw}")
    return fraction


def _unit(tag: bytes, shard_id: str, index: int = 0) -> float:
    """A number in [0, 1) fixed by the tag, the shard and the index."""
    digest = blake3(tag + bytes.fromhex(shard_id) + index.to_bytes(8, "big")).digest(length=8)
    return int.from_bytes(digest, "big") / 2**64


def is_dropped(shard_id: str, fraction: float) -> bool:
    """Whether ``drop:fraction`` loses this shard after acknowledging it."""
    return _unit(b"adversary drop v1", shard_id) < fraction


def flipped_leaves(shard_id: str, leaf_count: int, fraction: float) -> frozenset[int]:
    """The leaves ``bitflip:fraction`` corrupts (bit 0 of each one's first byte)."""
    return frozenset(
        i for i in range(leaf_count) if _unit(b"adversary bitflip v1", shard_id, i) < fraction
    )


class Adversary(MinerService):
    """The real service plus a hook after each new store, and a way to lose a shard."""

    behaviour: Behaviour

    def __init__(
        self,
        behaviour: Behaviour,
        settings: MinerSettings,
        keypair: Keypair,
        store: ShardStore,
        index: ShardIndex,
    ) -> None:
        super().__init__(settings, keypair, store, index)
        self.behaviour = behaviour
        self.stored: dict[str, list[str]] = {}  # validator -> shard ids, in store order
        self.setup()

    def setup(self) -> None:
        """Per-behaviour state; runs at the end of ``__init__``."""

    async def store_shard(
        self,
        validator: str,
        shard_id: str,
        *,
        size: int,
        leaf_size: int,
        body: AsyncIterator[bytes],
        check_root: Callable[[str], None],
    ) -> tuple[StorageReceipt, bool]:
        receipt, created = await super().store_shard(
            validator, shard_id, size=size, leaf_size=leaf_size, body=body, check_root=check_root
        )
        if created:
            self.stored.setdefault(validator, []).append(shard_id)
            await self.after_store(ShardKey(validator, shard_id), size)
        return receipt, created

    async def after_store(self, key: ShardKey, size: int) -> None:
        """Runs once the receipt is signed, before it is sent."""

    async def lose(self, key: ShardKey) -> None:
        """The bytes and tree leave the store; the index still calls the shard live."""
        await asyncio.to_thread(self.store.trash, key)
        await asyncio.to_thread(self.store.purge, key)
        self.trees.forget(key)
        log.info("adversary lost a shard", extra={"shard_id": key.shard_id})


class Dropping(Adversary):
    """``drop:F``: acknowledges every shard, then loses those :func:`is_dropped` picks."""

    async def after_store(self, key: ShardKey, size: int) -> None:
        if is_dropped(key.shard_id, self.behaviour.fraction):
            await self.lose(key)


class BitFlipping(Adversary):
    """``bitflip:F``: flips bit 0 of the first byte of :func:`flipped_leaves` in each shard.

    The shard is rewritten through the store's own writer with its original tree, so the
    saved tree (and every proof built from it) still describes the bytes that were stored.
    """

    async def after_store(self, key: ShardKey, size: int) -> None:
        await asyncio.to_thread(self._flip, key)

    def _flip(self, key: ShardKey) -> None:
        tree_bytes = self.store.read_tree(key)
        tree = MerkleTree.from_bytes(tree_bytes)
        leaves = flipped_leaves(key.shard_id, tree.leaf_count, self.behaviour.fraction)
        if not leaves:
            return
        targets = sorted(i * tree.leaf_size for i in leaves)
        writer = self.store.writer(key)
        try:
            offset = 0
            for chunk in self.store.read(key):
                piece = bytearray(chunk)
                for target in targets:
                    if offset <= target < offset + len(piece):
                        piece[target - offset] ^= 1
                writer.write(bytes(piece))
                offset += len(piece)
            writer.commit(tree_bytes)
        except BaseException:
            writer.abort()
            raise
        self.trees.forget(key)


def _fit(indices: Sequence[int], leaf_count: int) -> list[int]:
    """``len(indices)`` distinct indices below ``leaf_count`` (fewer if it has fewer leaves)."""
    chosen = dict.fromkeys(i % leaf_count for i in indices)
    spare = (i for i in range(leaf_count) if i not in chosen)
    while len(chosen) < min(len(indices), leaf_count):
        chosen[next(spare)] = None
    return list(chosen)


class WrongProof(Adversary):
    """``wrongproof``: answers with another shard's leaves and proof (the first it stored for
    that validator that is not the challenged one). Holding only the challenged shard, it has
    nothing to lie with and answers honestly."""

    async def answer_challenges(
        self, validator: str, challenges: Sequence[Challenge]
    ) -> list[ChallengeOutcome]:
        outcomes = await super().answer_challenges(validator, challenges)
        return await asyncio.to_thread(self._swap, validator, outcomes)

    def _swap(self, validator: str, outcomes: list[ChallengeOutcome]) -> list[ChallengeOutcome]:
        swapped = []
        for outcome in outcomes:
            challenge = outcome.challenge
            other = next(
                (
                    s
                    for s in self.stored.get(validator, [])
                    if s != challenge.shard_id and self._live(validator, s)
                ),
                None,
            )
            if outcome.answer is None or other is None:
                swapped.append(outcome)
                continue
            key = ShardKey(validator, other)
            indices = _fit(challenge.indices, self.trees.get(key, self.store).leaf_count)
            lie = answer(self.store, self.trees, key, indices)
            swapped.append(ChallengeOutcome(challenge, lie, None))
        return swapped

    def _live(self, validator: str, shard_id: str) -> bool:
        record = self.index.get(validator, shard_id)
        return record is not None and record.state == "ok"


class Replaying(Adversary):
    """``replay``: answers a shard's first challenge honestly, keeps that answer, drops the
    shard's bytes, and sends the kept answer to every later challenge of it."""

    def setup(self) -> None:
        self.kept: dict[ShardKey, ChallengeAnswer] = {}

    async def answer_challenges(
        self, validator: str, challenges: Sequence[Challenge]
    ) -> list[ChallengeOutcome]:
        fresh = [c for c in challenges if ShardKey(validator, c.shard_id) not in self.kept]
        answered = iter(await super().answer_challenges(validator, fresh) if fresh else [])
        outcomes = []
        for challenge in challenges:
            key = ShardKey(validator, challenge.shard_id)
            stale = self.kept.get(key)
            if stale is not None:
                outcomes.append(ChallengeOutcome(challenge, stale, None))
                continue
            outcome = next(answered)
            if outcome.answer is not None and key not in self.kept:
                self.kept[key] = outcome.answer
                await self.lose(key)
            outcomes.append(outcome)
        return outcomes


class Slow(Adversary):
    """``slow:S``: sleeps S seconds before each challenge batch and each shard GET/HEAD."""

    async def answer_challenges(
        self, validator: str, challenges: Sequence[Challenge]
    ) -> list[ChallengeOutcome]:
        await asyncio.sleep(self.behaviour.seconds)
        return await super().answer_challenges(validator, challenges)

    async def stat(self, validator: str, shard_id: str) -> ShardRecord:
        # The GET handler calls stat once, before it sends anything.
        await asyncio.sleep(self.behaviour.seconds)
        return await super().stat(validator, shard_id)


class Rebuilding(Adversary):
    """``rebuild:K``: an emulation of the cost of a miner that keeps no shard and rebuilds it
    from K other miners whenever it is asked for it.

    Before each challenged shard and each shard GET/HEAD it reads K bodies of the shard's
    size over loopback HTTP, concurrently (from a blob server this process starts on its own
    host, see :func:`blob_server`), and runs a real zfec decode of those K blocks (as check
    shares K..2K-1 of a K-of-2K code, so zfec does the full work). Then it answers from the
    shard it does keep: the answers are honest, only the time is that of a rebuild.
    """

    def setup(self) -> None:
        self.blob_url: str | None = None
        self.session: aiohttp.ClientSession | None = None
        self.rebuilds = 0

    async def _fetch(self, size: int) -> bytes:
        assert self.session is not None and self.blob_url is not None, "blob server not running"
        async with self.session.get(f"{self.blob_url}/blob/{size}") as response:
            response.raise_for_status()
            return await response.read()

    async def rebuild(self, size: int) -> None:
        k = self.behaviour.sources
        bodies = await asyncio.gather(*(self._fetch(size) for _ in range(k)))
        shares = {k + n: body for n, body in enumerate(bodies)}
        await asyncio.to_thread(decode_segment, shares, k, 2 * k, k * size)
        self.rebuilds += 1

    async def answer_challenges(
        self, validator: str, challenges: Sequence[Challenge]
    ) -> list[ChallengeOutcome]:
        for shard_id in dict.fromkeys(c.shard_id for c in challenges):
            record = await asyncio.to_thread(self.index.get, validator, shard_id)
            if record is not None and record.state == "ok":
                await self.rebuild(record.size)
        return await super().answer_challenges(validator, challenges)

    async def stat(self, validator: str, shard_id: str) -> ShardRecord:
        record = await super().stat(validator, shard_id)
        await self.rebuild(record.size)
        return record


class FakeCapacity(Adversary):
    """``fakecap:BYTES``: advertises ``--capacity`` (1 PiB unless given) and signs a receipt
    for every store, but keeps a new shard only while it fits in what is left of BYTES; the
    rest are lost right after their receipt."""

    def setup(self) -> None:
        self.kept_bytes = 0

    async def after_store(self, key: ShardKey, size: int) -> None:
        if self.kept_bytes + size <= self.behaviour.keep_bytes:
            self.kept_bytes += size
        else:
            await self.lose(key)


class NullAnswers(Adversary):
    """``nulls``: keeps nothing it acknowledged, and answers every challenge batch with a
    list of ``null`` entries (see :func:`app_hooks`), which once left every earlier verdict
    standing."""

    async def after_store(self, key: ShardKey, size: int) -> None:
        await self.lose(key)


class Refusing(Adversary):
    """Holds everything and answers every Merkle challenge, but serves no read: ``noserve``
    refuses every shard GET with 503; ``burst:S`` serves only in the S seconds after its
    last challenge batch, when a validator that checks serving right after a batch would
    look."""

    def setup(self) -> None:
        self.last_batch = -1e9

    async def answer_challenges(
        self, validator: str, challenges: Sequence[Challenge]
    ) -> list[ChallengeOutcome]:
        self.last_batch = time.monotonic()
        return await super().answer_challenges(validator, challenges)

    async def stat(self, validator: str, shard_id: str) -> ShardRecord:
        window = self.behaviour.seconds if self.behaviour.name == "burst" else 0.0
        if time.monotonic() - self.last_batch > window:
            raise web.HTTPServiceUnavailable(
                text='{"error": "busy", "message": "try later"}', content_type="application/json"
            )
        return await super().stat(validator, shard_id)


class Hiding(Adversary):
    """``hide:F``: loses the fraction F of shards :func:`is_dropped` picks, and hides the
    loss as silence: a batch naming a lost shard, or a read of one, is never answered (it
    hangs past any deadline) instead of a 404 that would count as missing."""

    async def after_store(self, key: ShardKey, size: int) -> None:
        if is_dropped(key.shard_id, self.behaviour.fraction):
            await self.lose(key)

    async def answer_challenges(
        self, validator: str, challenges: Sequence[Challenge]
    ) -> list[ChallengeOutcome]:
        if any(is_dropped(c.shard_id, self.behaviour.fraction) for c in challenges):
            await asyncio.sleep(HANG_SECONDS)
        return await super().answer_challenges(validator, challenges)

    async def stat(self, validator: str, shard_id: str) -> ShardRecord:
        if is_dropped(shard_id, self.behaviour.fraction):
            await asyncio.sleep(HANG_SECONDS)
        return await super().stat(validator, shard_id)


class Turning(Adversary):
    """``turn:F@T``: honest for T seconds after its first store, then loses the fraction F
    of every shard it holds (:func:`is_dropped`), as a miner that earned a good record and
    then reclaimed half its disk would."""

    def setup(self) -> None:
        self.turn_task: asyncio.Task[None] | None = None

    async def after_store(self, key: ShardKey, size: int) -> None:
        if self.turn_task is None:
            self.turn_task = asyncio.create_task(self._turn())

    async def _turn(self) -> None:
        await asyncio.sleep(self.behaviour.after)
        for validator, shard_ids in list(self.stored.items()):
            for shard_id in list(shard_ids):
                if is_dropped(shard_id, self.behaviour.fraction):
                    await self.lose(ShardKey(validator, shard_id))
        log.warning("adversary turned", extra={"fraction": self.behaviour.fraction})


class Late(Adversary):
    """``late:S``: answers every Merkle batch S seconds late (as a miner that fetches the
    data from elsewhere on demand would), and serves reads at once."""

    async def answer_challenges(
        self, validator: str, challenges: Sequence[Challenge]
    ) -> list[ChallengeOutcome]:
        await asyncio.sleep(self.behaviour.seconds)
        return await super().answer_challenges(validator, challenges)


_CLASSES: dict[str, type[Adversary]] = {
    "honest": Adversary,
    "drop": Dropping,
    "bitflip": BitFlipping,
    "wrongproof": WrongProof,
    "replay": Replaying,
    "slow": Slow,
    "rebuild": Rebuilding,
    "fakecap": FakeCapacity,
    "nulls": NullAnswers,
    "noserve": Refusing,
    "burst": Refusing,
    "hide": Hiding,
    "turn": Turning,
    "late": Late,
    "flood": Adversary,  # the real service; its replies are the middleware's (app_hooks)
}
FLOOD_CHUNK = b"\0" * (1 << 20)
FLOOD_DECLARED = 1 << 40  # what a flooding shard GET says it sends


def app_hooks(behaviour: Behaviour) -> list[Any]:
    """Middlewares a behaviour adds innermost to the real app (after the signature check):
    ``nulls`` answers ``POST /v1/challenges`` with a frame of ``null`` entries; ``flood``
    answers every signed request with bytes that never end: a shard GET under a 1 TiB
    Content-Length, everything else chunked, with no length at all."""
    if behaviour.name == "flood":
        return [_flood]
    if behaviour.name != "nulls":
        return []

    @web.middleware
    async def null_answers(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/v1/challenges":
            return cast(web.StreamResponse, await handler(request))
        body = await request.json()
        count = len(body.get("challenges", []))
        frame = encode_frame({"answers": [None] * count}, [])
        return web.Response(body=frame, content_type="application/octet-stream")

    return [null_answers]


@web.middleware
async def _flood(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path in {"/health", "/metrics", "/v1/info"} or not request.path.startswith("/v1/"):
        return cast(web.StreamResponse, await handler(request))
    await request.read()  # take the whole request, so the reply is read as the reply
    response = web.StreamResponse(status=200)
    response.content_type = "application/octet-stream"
    if request.method == "GET":
        response.content_length = FLOOD_DECLARED
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        while True:  # until the reader hangs up
            await response.write(FLOOD_CHUNK)
    return response


def adversary_settings(behaviour: Behaviour, flags: dict[str, object]) -> dict[str, object]:
    """Command-line defaults of a fake, where the flags leave a setting out.

    A dishonest miner does not run the scrubber that would set its own damage aside, so it
    defaults to ``--scrub-rate 0``; ``fakecap`` claims a huge disk. The honest miner keeps
    the production defaults.
    """
    flags = dict(flags)
    if behaviour.name != "honest" and flags.get("scrub_rate") is None:
        flags["scrub_rate"] = "0"
    if behaviour.name == "fakecap" and flags.get("capacity") is None:
        flags["capacity"] = str(CLAIMED_CAPACITY)
    return flags


def make_service(
    behaviour: Behaviour,
    settings: MinerSettings,
    keypair: Keypair,
    store: ShardStore,
    index: ShardIndex,
) -> MinerService:
    """The service for ``behaviour`` (``honest`` is the plain :class:`MinerService`)."""
    if behaviour.name == "honest":
        return MinerService(settings, keypair, store, index)
    return _CLASSES[behaviour.name](behaviour, settings, keypair, store, index)


class _Blobs:
    """Random bytes to serve as "other miners' shares": made once, sliced per request."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = b""

    async def get(self, request: web.Request) -> web.Response:
        try:
            size = int(request.match_info["size"])
        except ValueError:
            raise web.HTTPBadRequest(text="size is a byte count") from None
        if not 0 < size <= self.limit:
            raise web.HTTPBadRequest(text=f"size must be in 1..{self.limit}")
        if len(self.data) < size:
            self.data = await asyncio.to_thread(os.urandom, size)
        return web.Response(body=self.data[:size], content_type="application/octet-stream")


@contextlib.asynccontextmanager
async def blob_server(service: Rebuilding, host: str) -> AsyncIterator[None]:
    """Serve ``GET /blob/{size}`` on ``host`` (a free port) and point ``service`` at it."""
    blobs = _Blobs(service.settings.max_shard_size)
    app = web.Application()
    app.router.add_get("/blob/{size}", blobs.get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, 0).start()
        bound_host, port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        service.blob_url = f"http://{shown}:{port}"
        async with aiohttp.ClientSession() as session:
            service.session = session
            log.info("rebuild blob server up", extra={"url": service.blob_url})
            try:
                yield
            finally:
                service.session = None
    finally:
        await runner.cleanup()
