"""The validator's HTTP API: a thin aiohttp layer over :class:`Gateway`.

    PUT    /v1/objects?name=N[&seal=client|validator|none][&keep_key=1][&codec=zfec|isal]
           [&mode=644]: the file's permission bits, given back by downloads
           seal=client also needs &size=<plaintext bytes>&segment_size=<as /v1/info says>
                                                          upload (streamed, signed sha256)
    GET    /v1/objects                                    the caller's objects
    GET    /v1/objects/{ref}                              download by id or name; HEAD, Range
    DELETE /v1/objects/{ref}                              delete
    GET    /v1/manifests/{verifier}                       an object's manifest, by capability
    GET    /v1/shared/{verifier}                          read by capability, any user; HEAD
    GET    /v1/health[/{ref}]                             the caller's objects' health
    GET    /v1/audit/log?after=&limit=&miner=&verdict=&kind=&since=&until=
                                                          the challenge log (public)
    GET    /v1/audit/summary?since=                       per miner: pass rate, latency...
    GET    /v1/info, /healthz, /metrics                   public
    GET    /                                              the dashboard (validator/dashboard.py)

Users sign with their hotkey (Epistula). An upload declares ``Epistula-Content-Hash:
sha256:<hex>`` of the whole body; the object is committed only if the streamed bytes match.
Encrypted objects whose key the validator does not keep are read with the capability in an
``X-Capability`` header. Objects the client sealed (``seal=client``: the body is the
ciphertext of ``erasure.seal_segments``) are served as that ciphertext, which only the
capability's holder can open: the validator never has their key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import DBAPIError, OperationalError

from erasure import (
    CODECS,
    Capability,
    CapabilityError,
    ErasureParams,
    SealedStreamError,
    sealed_size,
)
from erasure.codec import codec_available
from erasure.manifest import SEALERS
from protocol.epistula import (
    HEADER_CONTENT_HASH,
    EpistulaVerifier,
    HotkeyPolicy,
    VerifiedRequest,
)
from protocol.http import (
    VERIFIED,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    epistula_middleware,
    resolve_range,
    service_app,
    streamed_body,
    verified,
)
from protocol.inputs import SignedBody, paced_body, query_float, query_int
from protocol.metrics import ServiceMetrics
from protocol.signing import wall_clock_ms
from validator import budget, dashboard, health_routes
from validator.audit import summarise
from validator.chain_sync import ChainSync, ChainSyncMetrics
from validator.challenger import Challenger, ChallengerMetrics
from validator.downloads import DownloadError, ObjectPlan
from validator.gateway import Gateway, NoSuchObject, NotYours, ObjectInfo
from validator.log_store import PAGE, ChallengeLogStore, LogFilter
from validator.models import MAX_NAME
from validator.repair import Repairer, RepairMetrics, log_entries
from validator.settings import ValidatorSettings
from validator.streaming import send_stream
from validator.synthetic import SyntheticFiller
from validator.uploads import UploadError, UploadOptions

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
HOTKEY = web.AppKey("hotkey", str)
SETTINGS = web.AppKey("settings", ValidatorSettings)
CHALLENGER = web.AppKey("challenger", Challenger)
CHAIN_SYNC = web.AppKey("chain_sync", ChainSync)
REFRESH_SECONDS = 30.0
_UNAVAILABLE = {"not_enough_miners", "not_enough_receipts", "not_enough_shards"}
MAX_TOKEN = 256  # characters of an API token
MAX_CAPABILITY = 512  # characters of an X-Capability header (a real one is ~150)
# Query times (unix seconds) are compared with stored ones: anything in a float's range that
# is a date at all, never inf or 1e308.
MAX_UNIX_SECONDS = 2.0**40


class UsersPolicy(HotkeyPolicy):
    """Allows the gateway's current users (re-read when the user list changes)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.hotkeys = gateway.user_hotkeys()

    def is_allowed(self, hotkey: str) -> bool:
        return hotkey in self.hotkeys


@web.middleware
async def api_tokens(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``Authorization: Bearer <token>`` authenticates a script as its user, unsigned."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return await handler(request)
    token = header[7:].strip()
    # Tokens are printable ASCII we issued: anything else is unknown without a lookup.
    if len(token) <= MAX_TOKEN and token.isascii() and token.isprintable():
        identity = await asyncio.to_thread(request.app[GATEWAY].token_user, token)
    else:
        identity = None
    if identity is None:
        raise ApiError(401, "bad_token", "that API token is unknown; ask the operator for one")
    request[VERIFIED] = VerifiedRequest(
        signed_by=identity,
        uuid="",
        timestamp_ms=wall_clock_ms(),
        declared_content_hash=request.headers.get(HEADER_CONTENT_HASH),
        signed=False,
    )
    return await handler(request)


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NoSuchObject as exc:
        raise NotFound("not_found", f"you have no object {exc}") from None
    except NotYours as exc:
        raise Forbidden("not_yours", str(exc)) from None
    except UploadError as exc:
        if exc.code in _UNAVAILABLE:
            raise ApiError(503, exc.code, exc.message) from None
        raise Conflict(exc.code, exc.message) from None
    except DownloadError as exc:
        status = 503 if exc.code in _UNAVAILABLE else 403 if exc.code == "wrong_key" else 404
        raise ApiError(status, exc.code, exc.message) from None
    except SealedStreamError as exc:
        raise BadRequest("bad_sealed_stream", str(exc)) from None
    except DBAPIError as exc:
        if not (isinstance(exc, OperationalError) or exc.connection_invalidated):
            raise
        # The database refused or dropped the connection (a restart, a failover; SQLite: a
        # lock held too long): an operational error in PEP 249's sense, not a bug of ours.
        # The pool reconnects, so the request can be retried: 503, and no traceback.
        log.warning(
            "database unavailable", extra={"path": request.path, "why": str(exc.orig)[:200]}
        )
        raise ApiError(
            503, "database_unavailable", "the validator cannot reach its database; try again"
        ) from None


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value not in {"0", "1", "true", "false"}:
        raise BadRequest("bad_query", f"{name} is 0/1 or true/false")
    return value in {"1", "true"}


def _seal(request: web.Request) -> str:
    """Who seals: ``client`` (the body is ciphertext), ``validator`` or ``none``. Without
    ``seal=``, the older ``encrypt=0|1`` says validator (the default) or none."""
    seal = request.query.get("seal")
    if seal is None:
        return "validator" if _flag(request, "encrypt", True) else "none"
    if seal not in SEALERS:
        raise BadRequest("bad_seal", f"seal is one of {', '.join(SEALERS)}; got {seal[:32]!r}")
    if "encrypt" in request.query:
        raise BadRequest("bad_query", "give seal= or the older encrypt=, not both")
    return seal


def _count(request: web.Request, name: str, why: str) -> int:
    raw = request.query.get(name, "")
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest("bad_query", f"{name} must be a whole number of bytes: {why}")
    return int(raw)


def _check_sealed_framing(request: web.Request, settings: ValidatorSettings, length: int) -> int:
    """The framing a client-sealed body must have, from what the client declared: its
    plaintext size and segment size fix every segment's length, so a body of another length
    is refused before anything is stored. Returns the plaintext size."""
    size = _count(request, "size", "seal=client needs the plaintext size")
    segment = _count(request, "segment_size", "seal=client needs the segment size it sealed")
    if segment != settings.segment_size:
        raise BadRequest(
            "bad_segment_size",
            f"seal with segment_size={settings.segment_size} (GET /v1/info), not {segment}",
        )
    expected = sealed_size(size, segment)
    if length != expected:
        raise BadRequest(
            "bad_sealed_length",
            f"{size} bytes sealed in {segment}-byte segments are {expected} bytes of "
            f"ciphertext, but Content-Length is {length}",
        )
    return size


def _sealing(request: web.Request, settings: ValidatorSettings, length: int) -> tuple[str, bool]:
    """(who seals, keep the key) for an upload whose body is ``length`` bytes."""
    seal = _seal(request)
    keep_key = _flag(request, "keep_key", False)
    plaintext = length
    if seal == "client":
        plaintext = _check_sealed_framing(request, settings, length)
        if keep_key:
            raise BadRequest("bad_query", "keep_key: the validator never has a client's key")
    if plaintext > settings.max_object_size:
        raise PayloadTooLarge("too_large", f"objects are at most {settings.max_object_size} bytes")
    return seal, keep_key


def _mode(request: web.Request) -> int | None:
    """``mode=644``: the uploaded file's permission bits in octal, as chmod takes them."""
    raw = request.query.get("mode")
    if raw is None:
        return None
    if not (0 < len(raw) <= 4 and all(c in "01234567" for c in raw)) or int(raw, 8) > 0o777:
        raise BadRequest("bad_mode", "mode is a file's permission bits in octal, 0 to 777")
    return int(raw, 8)


def _codec(request: web.Request, default: str) -> str:
    codec = request.query.get("codec", default)
    if codec not in CODECS:
        raise BadRequest(
            "bad_codec", f"codec must be one of {', '.join(CODECS)}; got {codec[:32]!r}"
        )
    if not codec_available(codec):
        raise BadRequest("bad_codec", f"codec {codec} is not available on this validator")
    return codec


@streamed_body
async def put_object(request: web.Request) -> web.Response:
    caller = verified(request)
    gateway, settings = request.app[GATEWAY], request.app[SETTINGS]
    name = request.query.get("name", "")
    if not 0 < len(name) <= MAX_NAME or "\x00" in name:
        raise BadRequest("bad_name", f"give ?name= with 1..{MAX_NAME} characters")
    codec = _codec(request, settings.codec)
    if request.content_length is None:
        raise ApiError(411, "length_required", "send Content-Length")
    # A body that stalls or trickles is refused (408), so it cannot hold an upload slot.
    body = SignedBody(
        caller,
        caller.require_declared_hash(),
        request.content_length,
        paced_body(
            request.content,
            window=settings.upload_stall_seconds,
            min_rate=settings.upload_min_rate,
        ),
    )
    seal, keep_key = _sealing(request, settings, body.size)
    owner = await asyncio.to_thread(gateway.user_id, caller.signed_by)
    params = ErasureParams(
        k=settings.k,
        m=settings.m,
        segment_size=settings.segment_size,
        leaf_size=settings.leaf_size,
        codec=codec,
    )
    options = UploadOptions(
        params,
        mode=_mode(request),
        extra_receipts=settings.extra_receipts,
        encrypt=seal != "none",
        keep_key=keep_key,
        presealed=seal == "client",
        content_hash=body.declared_hash,
        declared_size=body.size,
    )
    # Looked up before: once the upload commits, no step may touch the database, or a
    # failure there (a restart) would report as failed an object that is stored and listed.
    user_name = await asyncio.to_thread(gateway.user_name, owner)
    result = await gateway.uploader.upload(
        owner, name, aiter(body), options, before_commit=body.check
    )
    reply = asdict(result)
    reply["sealed_by"] = seal
    reply["warning"] = result.redundancy_warning
    log.info(
        "object stored",
        extra={
            "user": user_name,
            "object_name": name, "object": result.object_id,
            "size": result.size, "segments": result.segments,
            "shares": f"{result.fewest_shares} of {result.m} (k={result.k})"
            + (f", {result.segments_short} segments short" if result.segments_short else ""),
        },
    )  # fmt: skip
    if options.keep_key or not options.encrypt:
        reply["capability"] = str(Capability.parse(result.capability).verify_only())
    return web.json_response(reply, status=201)


async def list_objects(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    owner = await asyncio.to_thread(gateway.user_id, verified(request).signed_by)
    objects = await asyncio.to_thread(gateway.list_objects, owner)
    return web.json_response({"objects": [asdict(o) for o in objects]})


async def get_object(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    owner = await asyncio.to_thread(gateway.user_id, verified(request).signed_by)
    info = await asyncio.to_thread(gateway.find, owner, request.match_info["ref"])
    # find() has checked that the caller owns it.
    plan = await asyncio.to_thread(gateway.downloader.plan, info.id)
    key = plan.stored_key
    if info.sealed_by == "validator" and key is None:
        key = _key_from_capability(request, plan.manifest.verifier_hash())
    return await _serve(request, owner, info, plan, key)


async def get_shared(request: web.Request) -> web.StreamResponse:
    """Read by capability: any user holding it. The verifier finds the object; a key is
    still needed for what the validator sealed (a verify-only capability reads nothing)."""
    gateway = request.app[GATEWAY]
    reader = await asyncio.to_thread(gateway.user_id, verified(request).signed_by)
    info = await asyncio.to_thread(gateway.find_shared, _verifier(request))
    plan = await asyncio.to_thread(gateway.downloader.plan, info.id)
    key = None
    if info.sealed_by == "validator":
        key = _key_from_capability(request, plan.manifest.verifier_hash())
    return await _serve(request, reader, info, plan, key)


async def get_manifest(request: web.Request) -> web.Response:
    """The manifest a capability pins (its verifier is the manifest's hash): a reader checks
    it against the capability, then knows the segment size and who sealed."""
    gateway = request.app[GATEWAY]
    await asyncio.to_thread(gateway.user_id, verified(request).signed_by)
    info = await asyncio.to_thread(gateway.find_shared, _verifier(request))
    plan = await asyncio.to_thread(gateway.downloader.plan, info.id)
    return web.Response(body=plan.manifest.to_json(), content_type="application/json")


def _verifier(request: web.Request) -> str:
    verifier = request.match_info["verifier"]
    if len(verifier) != 64 or not all(c in "0123456789abcdef" for c in verifier):
        raise BadRequest("bad_verifier", "give the capability's verifier as 64 hex digits")
    return verifier


async def _serve(
    request: web.Request, reader: int, info: ObjectInfo, plan: ObjectPlan, key: bytes | None
) -> web.StreamResponse:
    """Stream an object to user ``reader``: plaintext, or the ciphertext itself when the
    client sealed it (offsets and ``Range`` then count ciphertext bytes)."""
    gateway = request.app[GATEWAY]
    sealed = info.sealed_by == "client"
    total = plan.manifest.stored_size if sealed else info.size
    try:
        wanted = request.http_range
    except ValueError:
        raise ApiError(416, "bad_range", "the Range header is malformed") from None
    start, stop = resolve_range(wanted, total, "object")
    response = web.StreamResponse(status=206 if (start, stop) != (0, total) else 200)
    response.content_type = "application/octet-stream"
    response.content_length = stop - start
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["X-Object-Id"] = info.id
    response.headers["X-Sealed-By"] = info.sealed_by
    response.headers["X-Object-Size"] = str(info.size)
    if info.mode is not None:
        response.headers["X-Object-Mode"] = info.mode  # the file's mode, for the download
    if info.verifier is not None:
        response.headers["X-Verifier"] = info.verifier  # which capability opens it
    if response.status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{total}"
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    chunks = gateway.downloader.stream(
        plan, key, start, stop, sealed=sealed, reader=reader, reuse_buffers=True
    )
    return await send_stream(request, response, chunks, request.app[SETTINGS], {"object": info.id})


def _key_from_capability(request: web.Request, verifier: bytes) -> bytes:
    text = request.headers.get("X-Capability")
    if not text:
        raise Forbidden("key_needed", "this object is encrypted: send X-Capability: URI:SN-CHK:...")
    if len(text) > MAX_CAPABILITY:
        raise BadRequest("bad_capability", f"a capability is at most {MAX_CAPABILITY} characters")
    try:
        cap = Capability.parse(text)
    except CapabilityError as exc:
        raise BadRequest("bad_capability", str(exc)) from None
    if cap.key is None or cap.verifier != verifier:
        raise Forbidden("wrong_capability", "that capability does not open this object")
    return cap.key


async def delete_object(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    owner = await asyncio.to_thread(gateway.user_id, verified(request).signed_by)
    info = await asyncio.to_thread(gateway.find, owner, request.match_info["ref"])
    user_name = await asyncio.to_thread(gateway.user_name, owner)  # before: see put_object
    shards = await gateway.delete(owner, info.id)
    log.info(
        "object deleted",
        extra={
            "user": user_name,
            "object_name": info.name,
            "object": info.id,
        },
    )
    return web.json_response({"deleted": info.id, "shards": shards})


async def get_info(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    gateway = request.app[GATEWAY]
    return web.json_response(
        {
            "hotkey": app_hotkey(request),
            "k": settings.k,
            "m": settings.m,
            "segment_size": settings.segment_size,
            "miners_available": len(gateway.candidates()),
        }
    )


def _unix_seconds(request: web.Request, name: str) -> float | None:
    return query_float(request, name, low=-MAX_UNIX_SECONDS, high=MAX_UNIX_SECONDS)


async def get_audit_log(request: web.Request) -> web.Response:
    """A page of the challenge log, oldest first; ``next`` is the ``after`` for the next page
    (None at the end)."""
    challenger = request.app[CHALLENGER]
    after_given = query_int(request, "after", low=-1)  # -1: from the start
    limit_given = query_int(request, "limit", low=1, high=PAGE)
    after = -1 if after_given is None else after_given
    limit = PAGE if limit_given is None else limit_given
    verdict = request.query.get("verdict")
    if verdict is not None and verdict not in {"pass", "wrong", "missing", "timeout", "repaired"}:
        raise BadRequest("bad_query", "verdict is one of pass, wrong, missing, timeout, repaired")
    kind = request.query.get("kind")
    if kind is not None and kind not in {"merkle", "retrieval", "read", "repair"}:
        raise BadRequest("bad_query", "kind is merkle, retrieval, read or repair")
    where = LogFilter(
        miner=request.query.get("miner"),
        verdict=verdict,
        kind=kind,
        since=_unix_seconds(request, "since"),
        until=_unix_seconds(request, "until"),
    )
    store = challenger.log_store
    entries, following = await asyncio.to_thread(store.page, where, after=after, limit=limit)
    prev = None
    if entries and where == LogFilter():
        prev = await asyncio.to_thread(store.previous_hash, entries[0].seq)
    return web.json_response(
        {
            "validator": challenger.hotkey,
            "entries": [json.loads(e.to_json()) for e in entries],
            "prev_hash": prev,
            # Where the next page starts; a filtered page may be short (even empty) and
            # still have one: it looked through a bounded stretch of the log.
            "next": following,
        }
    )


async def get_audit_summary(request: web.Request) -> web.Response:
    challenger = request.app[CHALLENGER]
    since = _unix_seconds(request, "since")
    standings = await asyncio.to_thread(challenger.standings)
    rows = await asyncio.to_thread(
        summarise,
        challenger.sessions,
        standings,
        since=since,
        disqualify_below=challenger.policy.disqualify_below,
    )
    return web.json_response(
        {
            "validator": challenger.hotkey,
            "rounds": challenger.rounds,
            "miners": [r.as_dict() for r in rows],
        }
    )


def app_hotkey(request: web.Request) -> str:
    return request.app[HOTKEY]


async def _refresh(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]

    async def loop() -> None:
        while True:
            try:
                await gateway.refresh_miners()
            except Exception:  # a database hiccup must not end the loop; logged, retried
                log.exception("refreshing miners failed")
            await asyncio.sleep(REFRESH_SECONDS)

    await gateway.refresh_miners()
    await gateway.uploader.recover()  # before any new upload could take a pending name
    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _forever(name: str, seconds: float, step: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except Exception:  # one bad round must not end the loop; logged, retried
            log.exception(f"{name} failed")


def _repair_step(repairer: Repairer, log_store: ChallengeLogStore) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        report = await repairer.run_once()
        entries = log_entries(report, log_store.keypair.ss58_address)
        if entries:
            await asyncio.to_thread(log_store.record, lambda _session: entries)

    return step


def _loops(
    challenger: Challenger | None,
    chain_sync: ChainSync | None,
    filler: SyntheticFiller | None,
    repairer: Repairer | None,
    settings: ValidatorSettings,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(_app: web.Application) -> AsyncIterator[None]:
        tasks = []
        if chain_sync is not None:
            await chain_sync.register()
            try:
                await chain_sync.sync_miners()
            except Exception:  # the chain may be slow to answer; the loop retries
                log.exception("first metagraph sync failed")
            tasks.append(asyncio.create_task(chain_sync.run()))
        seconds = settings.challenge_seconds
        if challenger is not None:
            tasks.append(
                asyncio.create_task(_forever("challenge round", seconds, challenger.run_round))
            )
        if filler is not None:
            tasks.append(asyncio.create_task(_forever("synthetic fill", seconds, filler.fill_once)))
        if repairer is not None and challenger is not None:
            step = _repair_step(repairer, challenger.log_store)
            tasks.append(asyncio.create_task(_forever("repair", settings.repair_seconds, step)))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if challenger is not None:
            await challenger.close()  # retrievals scheduled for later

    return run


def make_app(
    gateway: Gateway,
    settings: ValidatorSettings,
    own_hotkey: str,
    *,
    challenger: Challenger | None = None,
    chain_sync: ChainSync | None = None,
    filler: SyntheticFiller | None = None,
    repairer: Repairer | None = None,
    background: bool = True,
) -> web.Application:
    metrics = ServiceMetrics("validator")
    signatures = epistula_middleware(
        EpistulaVerifier(window_ms=settings.signature_window_ms),
        own_hotkey=own_hotkey,
        policy=UsersPolicy(gateway),
        clock_ms=wall_clock_ms,
        public_paths=frozenset(
            {"/healthz", "/metrics", "/v1/info", "/v1/audit/log", "/v1/audit/summary"}
        ),
    )
    app = service_app(
        metrics, signatures, before_signatures=[api_tokens], domain_errors=domain_errors
    )
    app[GATEWAY] = gateway
    app[SETTINGS] = settings
    app[HOTKEY] = own_hotkey
    app.router.add_put("/v1/objects", put_object)
    app.router.add_get("/v1/objects", list_objects)
    app.router.add_get("/v1/objects/{ref:.+}", get_object)
    app.router.add_delete("/v1/objects/{ref:.+}", delete_object)
    app.router.add_get("/v1/manifests/{verifier}", get_manifest)
    app.router.add_get("/v1/shared/{verifier}", get_shared)
    app.router.add_get("/v1/info", get_info)
    health_routes.install(app, gateway, settings.repair_unseen_after)
    if gateway.downloader.budget is not None:
        budget.export_metrics(gateway.downloader.budget, metrics.registry)
    if challenger is not None:
        challenger.metrics = ChallengerMetrics(metrics.registry)
        app[CHALLENGER] = challenger
        app.router.add_get("/v1/audit/log", get_audit_log)
        app.router.add_get("/v1/audit/summary", get_audit_summary)
    if chain_sync is not None:
        chain_sync.metrics = ChainSyncMetrics(metrics.registry)
        app[CHAIN_SYNC] = chain_sync
    if repairer is not None:
        repairer.metrics = RepairMetrics(metrics.registry)
    dashboard.install(app, own_hotkey, challenger, chain_sync, repairer)
    if background:
        app.cleanup_ctx.append(_refresh)
        app.cleanup_ctx.append(_loops(challenger, chain_sync, filler, repairer, settings))
    return app
