"""The miner's HTTP API: a thin aiohttp layer over :class:`MinerService`.

    PUT    /v1/shards/{id}?leaf_size=N   store (streamed; Epistula-Content-Hash = the id)
    GET    /v1/shards/{id}               read; HEAD and Range supported
    DELETE /v1/shards/{id}               to the trash for the grace period
    POST   /v1/challenges                answer a batch of Merkle challenges (binary frame;
                                         each answer has its own status: 200, 400, 403, 404)
    GET    /v1/quarantine                the caller's shards the scrubber set aside
    GET    /v1/info                      hotkey, version, capacity, used, free, counts
    GET    /healthz, /metrics            public
    GET    /                             the dashboard (storage_miner/dashboard.py), public

Every route but the last three needs an Epistula signature from an allowed validator, and a
validator only ever sees its own shards (another's gets 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Gauge, Histogram

from protocol.epistula import AnyOf, EpistulaVerifier, HotkeyPolicy, StaticAllowlist
from protocol.http import (
    ApiError,
    BadRequest,
    Forbidden,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    epistula_middleware,
    health_route,
    resolve_range,
    service_app,
    streamed_body,
    verified,
)
from protocol.inputs import paced_body, query_int, read_json
from protocol.metrics import ServiceMetrics
from protocol.sendfile import sendfile
from protocol.signing import wall_clock_ms
from protocol.wire import encode_frame
from storage_miner import dashboard, health
from storage_miner.on_chain import ChainPresence, embedded_chain, subtensor_chain
from storage_miner.prover import MAX_INDICES
from storage_miner.scrubber import ScrubPass, run_scrubber
from storage_miner.service import (
    BadUpload,
    CapacityExceeded,
    Challenge,
    MinerService,
    NotYourShard,
    ShardTooLarge,
)
from storage_miner.store import InvalidShardKey, ShardNotFound, StoreUnavailable

log = logging.getLogger(__name__)

SERVICE = web.AppKey("service", MinerService)
MAX_CHALLENGES = 256
MAX_JSON_BODY = 1024 * 1024
PURGE_INTERVAL = 60.0


def _shard_id(request: web.Request) -> str:
    return request.match_info["shard_id"]


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The miner's own errors, as HTTP (error_middleware renders them)."""
    try:
        return await handler(request)
    except InvalidShardKey as exc:
        raise BadRequest("invalid_shard_id", str(exc)) from None
    except ShardNotFound as exc:
        raise NotFound("not_found", f"no shard {exc} stored by you on this miner") from None
    except NotYourShard:
        raise Forbidden("not_your_shard", "another validator stored this shard") from None
    except CapacityExceeded as exc:
        raise InsufficientStorage("insufficient_storage", str(exc)) from None
    except ShardTooLarge as exc:
        raise PayloadTooLarge("shard_too_large", str(exc)) from None
    except BadUpload as exc:
        raise BadRequest("bad_upload", str(exc)) from None
    except StoreUnavailable as exc:  # not the validator's fault, nor a wrong answer
        request.app[SERVICE].health.ok, request.app[SERVICE].health.detail = False, str(exc)
        raise ApiError(503, "store_unavailable", str(exc)) from None


@streamed_body
async def put_shard(request: web.Request) -> web.Response:
    caller = verified(request)
    service = request.app[SERVICE]
    shard_id = _shard_id(request)
    if caller.require_declared_hash() != shard_id:
        raise BadRequest(
            "hash_mismatch", "sign the shard id as Epistula-Content-Hash for a shard upload"
        )
    if request.content_length is None:
        raise ApiError(411, "length_required", "send Content-Length with the shard's size")
    leaf_size = query_int(request, "leaf_size", low=1, high=2**31, code="bad_upload")
    if leaf_size is None:
        raise BadRequest("bad_upload", "give the Merkle leaf size: ?leaf_size=16384")
    # As received (re-cut 1 MiB chunks would each be a fresh, page-faulting mapping); a
    # stalled or trickling body is refused rather than holding a staged file open.
    receipt, created = await service.store_shard(
        caller.signed_by,
        shard_id,
        size=request.content_length,
        leaf_size=leaf_size,
        body=paced_body(request.content),
        check_root=caller.check_streamed_body,
    )
    return web.json_response(
        {"receipt": receipt.to_dict(), "created": created}, status=201 if created else 200
    )


async def _send_file(request: web.Request, file: BinaryIO, offset: int, count: int) -> int:
    """``count`` bytes of ``file`` from ``offset`` by ``sendfile``: the kernel moves them from
    the page cache to the socket, so a shard costs the miner a few system calls, not a Python
    step per chunk. Returns what was sent: less than ``count`` if the file is short."""
    if request.transport is None:
        raise ConnectionResetError("the reader hung up")
    return await sendfile(request.transport, file, offset, count)


async def get_shard(request: web.Request) -> web.StreamResponse:
    caller = verified(request)
    service = request.app[SERVICE]
    shard_id = _shard_id(request)
    try:
        wanted = request.http_range
    except ValueError:
        raise ApiError(416, "bad_range", "the Range header is malformed") from None
    # Look the size up first: a suffix range (bytes=-N) and 416 both need it.
    size = (await service.stat(caller.signed_by, shard_id)).size
    start, stop = resolve_range(wanted, size, "shard")
    partial = (start, stop) != (0, size)
    response = web.StreamResponse(status=206 if partial else 200)
    response.content_type = "application/octet-stream"
    response.content_length = stop - start
    response.headers["Accept-Ranges"] = "bytes"
    if partial:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    if request.method == "HEAD":
        await response.prepare(request)
    else:
        # Opened before the status is sent, so a lost file is a 404 and not a cut body.
        local = await service.open_shard(caller.signed_by, shard_id)
        if local is not None:
            with local:
                await response.prepare(request)
                sent = await _send_file(request, local, start, stop - start)
        else:
            _, chunks = await service.read_shard(caller.signed_by, shard_id, start, stop)
            await response.prepare(request)
            sent = 0
            async for chunk in chunks:
                await response.write(chunk)
                sent += len(chunk)
        if sent != stop - start:
            # The file is shorter than the index says (truncated behind our back): end the
            # connection, so the reader sees a cut body at once instead of waiting for bytes
            # that will never come. The scrubber will quarantine the shard.
            log.warning(
                "shard shorter than recorded; reply cut",
                extra={"shard_id": shard_id, "sent": sent, "promised": stop - start},
            )
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response


async def delete_shard(request: web.Request) -> web.Response:
    caller = verified(request)
    purge_at = await request.app[SERVICE].delete_shard(caller.signed_by, _shard_id(request))
    return web.json_response({"trashed": True, "purge_after": purge_at}, status=202)


# A batch answers each challenge on its own, like S3's multi-object delete: one lost shard
# must not hide the answers for the rest. Each entry carries an HTTP-like status.
_CHALLENGE_STATUS = {"not_found": 404, "not_yours": 403}


def _parse_challenges(raw: Any) -> list[Challenge]:
    items = raw.get("challenges") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_CHALLENGES:
        raise BadRequest(
            "bad_challenge", f'send {{"challenges": [...]}} with 1..{MAX_CHALLENGES} entries'
        )
    parsed = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"shard_id", "nonce", "indices"}:
            raise BadRequest("bad_challenge", f"challenge {i} needs shard_id, nonce, indices")
        indices = item["indices"]
        if (
            not isinstance(item["shard_id"], str)
            or not isinstance(item["nonce"], str)
            or len(item["nonce"]) > 128
            or not isinstance(indices, list)
            or not 1 <= len(indices) <= MAX_INDICES
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in indices)
        ):
            raise BadRequest(
                "bad_challenge",
                f"challenge {i}: shard_id and nonce are strings, indices 1..{MAX_INDICES} ints",
            )
        parsed.append(Challenge(item["shard_id"], item["nonce"], tuple(indices)))
    return parsed


async def post_challenges(request: web.Request) -> web.Response:
    caller = verified(request)
    service = request.app[SERVICE]
    challenges = _parse_challenges(await read_json(request, code="bad_challenge"))
    started = time.perf_counter()
    outcomes = await service.answer_challenges(caller.signed_by, challenges)
    seconds = time.perf_counter() - started
    request.app[METRICS].challenge_seconds.observe(seconds)
    answers: list[dict[str, object]] = []
    blobs: list[bytes] = []
    for outcome in outcomes:
        entry: dict[str, object] = {
            "shard_id": outcome.challenge.shard_id,
            "nonce": outcome.challenge.nonce,
        }
        if outcome.answer is None:
            entry["status"] = _CHALLENGE_STATUS.get(outcome.error or "", 400)
            entry["error"] = outcome.error
        else:
            entry["status"] = 200
            entry["leaves"] = len(outcome.answer.leaves)
            blobs.extend(outcome.answer.leaves)
            blobs.append(outcome.answer.proof.to_bytes())
            request.app[METRICS].leaves_proven.inc(len(outcome.answer.leaves))
        answers.append(entry)
    answered = [o.answer for o in outcomes if o.answer is not None]
    request.app[ACTIVITY].challenged(
        caller.signed_by,
        len(outcomes),
        len(answered),
        seconds,
        proven=sum(len(leaf) for a in answered for leaf in a.leaves),
    )
    frame = encode_frame({"answers": answers}, blobs)
    return web.Response(body=frame, content_type="application/octet-stream")


async def get_quarantine(request: web.Request) -> web.Response:
    caller = verified(request)
    index = request.app[SERVICE].index
    records = await asyncio.to_thread(index.quarantined, caller.signed_by)
    return web.json_response(
        {
            "quarantined": [
                {"shard_id": r.shard_id, "reason": r.reason, "since": r.state_at} for r in records
            ]
        }
    )


async def get_info(request: web.Request) -> web.Response:
    info = await asyncio.to_thread(request.app[SERVICE].info)
    return web.json_response(info)


class MinerMetrics(ServiceMetrics):
    def __init__(self, service: MinerService) -> None:
        super().__init__("miner")
        self.challenge_seconds = Histogram(
            "miner_challenge_batch_seconds",
            "Time to answer one batch of challenges.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.leaves_proven = Counter(
            "miner_leaves_proven", "Leaves returned with proofs.", registry=self.registry
        )
        self.scrub_quarantined = Counter(
            "miner_scrub_quarantined", "Shards the scrubber set aside.", registry=self.registry
        )
        stored = Gauge("miner_bytes_stored", "Bytes held.", registry=self.registry)
        stored.set_function(lambda: service.index.used_bytes)
        capacity = Gauge("miner_capacity_bytes", "Advertised capacity.", registry=self.registry)
        capacity.set(service.settings.capacity)


METRICS = web.AppKey("metrics", MinerMetrics)
PRESENCE = web.AppKey("presence", ChainPresence)
ACTIVITY = web.AppKey("activity", dashboard.MinerActivity)


async def _background(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    removed = await asyncio.to_thread(service.store.clean_incoming)
    if removed:
        log.info("removed partial writes left by a previous run", extra={"count": removed})

    def on_pass(result: ScrubPass) -> None:
        app[METRICS].scrub_quarantined.inc(len(result.quarantined))

    async def purge_forever() -> None:
        while True:
            try:
                await service.purge_expired()
            except Exception:  # a backend hiccup must not end the loop; logged, retried
                log.exception("purging the trash failed; retrying")
            await asyncio.sleep(PURGE_INTERVAL)

    tasks = [asyncio.create_task(purge_forever())]
    if service.settings.scrub_rate > 0:
        scrubber = run_scrubber(
            service.store,
            service.index,
            bytes_per_second=service.settings.scrub_rate,
            on_pass=on_pass,
        )
        tasks.append(asyncio.create_task(scrubber))
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    service.index.close()


async def _keep_history(app: web.Application) -> AsyncIterator[None]:
    """The dashboard's challenge history: read back at start, saved every minute and at a
    clean stop."""
    activity = app[ACTIVITY]
    await asyncio.to_thread(activity.restore)

    async def save_forever() -> None:
        while True:
            await asyncio.sleep(dashboard.HISTORY_SAVE_SECONDS)
            try:
                await activity.save()
            except Exception:  # a full disk must not end the loop; logged, tried again
                log.exception("saving the challenge history failed; retrying")

    task = asyncio.create_task(save_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        await activity.save()
    except Exception:  # the stop goes on; at most the last minute's history is lost
        log.exception("saving the challenge history at stop failed")


async def _watch_store(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(health.watch(app[SERVICE].store, app[SERVICE].health))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _on_chain(presence: ChainPresence) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(presence.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def make_app(service: MinerService, *, background: bool = True) -> web.Application:
    """The miner's app. With ``chain_url`` or ``network`` set it also joins the chain (see
    ``on_chain.py``), whether or not the ``background`` loops (trash purge, scrubber) run."""
    settings = service.settings
    metrics = MinerMetrics(service)
    verifier = EpistulaVerifier(window_ms=settings.signature_window_ms)
    policy: HotkeyPolicy = StaticAllowlist(frozenset(settings.validators))
    presence = None
    if settings.on_chain:
        if settings.chain_url:
            open_chain, name = (
                embedded_chain(settings.chain_url, service.keypair),
                settings.chain_url,
            )
        else:
            assert settings.netuid is not None  # the settings check it
            wallet = (settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
            open_chain = subtensor_chain(
                settings.network, settings.netuid, wallet, yes=settings.yes
            )
            name = f"{settings.network}/{settings.netuid}"
        presence = ChainPresence(
            open_chain,
            service.hotkey,
            *settings.axon,
            settings.metagraph_seconds,
            name=name,
        )
        policy = AnyOf(policy, presence.policy)
    signatures = epistula_middleware(
        verifier,
        own_hotkey=service.hotkey,
        policy=policy,
        clock_ms=wall_clock_ms,
        public_paths=frozenset({"/healthz", "/metrics", "/v1/info"}),
    )
    app = service_app(
        metrics,
        signatures,
        domain_errors=domain_errors,
        client_max_size=MAX_JSON_BODY,
        health=health_route(service.health.as_json),
    )
    if hasattr(service.store, "probe"):  # a store that can be down (S3): watched
        app.cleanup_ctx.append(_watch_store)
    app[SERVICE] = service
    app[METRICS] = metrics
    app.router.add_put("/v1/shards/{shard_id}", put_shard)
    app.router.add_get("/v1/shards/{shard_id}", get_shard)
    app.router.add_delete("/v1/shards/{shard_id}", delete_shard)
    app.router.add_post("/v1/challenges", post_challenges)
    app.router.add_get("/v1/quarantine", get_quarantine)
    app.router.add_get("/v1/info", get_info)
    app[ACTIVITY] = dashboard.MinerActivity(service.clock, service.index)
    dashboard.install(app, service, app[ACTIVITY], presence)
    if background:
        app.cleanup_ctx.append(_background)
    if presence is not None:
        app[PRESENCE] = presence
        app.cleanup_ctx.append(_on_chain(presence))
    app.cleanup_ctx.append(_keep_history)  # last: its final save runs before the index closes
    return app
