"""The local chain's HTTP API: a thin aiohttp layer over :class:`ChainService`.

    POST /v1/register     register the signer's hotkey            {} -> {uid, created, replaced}
    POST /v1/serve        the signer's axon                       {host, port} -> {uid, axon}
    POST /v1/weights      the signer's weights (a validator)      {uids, weights, version_key,
                                                                   figures?} -> {block}
    GET  /v1/metagraph    every UID: hotkey, stake, permit, axon, Yuma outputs, last update
    GET  /v1/block        height, tempo, issuance, era, block emission, owner, version key,
                          block interval (seconds)
    GET  /v1/epochs       closed epochs, newest first (?limit=)
    GET  /v1/balances     rao credited per hotkey and era (?hotkey=)
    GET  /v1/ledger       credits (?epoch=&era=&hotkey=&since_epoch=)
    GET  /healthz, /metrics
    GET  /                the dashboard (chain/dashboard.py)

The POST routes need an Epistula signature from any hotkey (strangers register), signed for
``""``: the local chain has no hotkey of its own. They always act on the signer; a body that
names another ``hotkey`` is refused. Reads are public, like a chain's state.

``figures`` maps a miner UID (as a string, JSON keys being strings) to
``{"capacity_bytes": int, "availability": float in [0, 1]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Gauge

from chain import dashboard
from chain.service import ChainService
from chain.state import (
    BadAxon,
    ChainError,
    EpochNotDue,
    MinerFigures,
    NoPermit,
    NotRegistered,
    RateLimited,
    SubnetFull,
    WeightsRejected,
)
from protocol.epistula import ALLOW_ANY, EpistulaVerifier
from protocol.http import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    epistula_middleware,
    service_app,
    verified,
)
from protocol.inputs import query_int, read_json
from protocol.metrics import ServiceMetrics
from protocol.signing import wall_clock_ms

log = logging.getLogger(__name__)

SIGNED_FOR: Final = ""
MAX_JSON_BODY = 256 * 1024
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/metrics",
        "/v1/metagraph",
        "/v1/block",
        "/v1/epochs",
        "/v1/balances",
        "/v1/ledger",
    }
)
SERVICE = web.AppKey("service", ChainService)


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The chain's own errors, as HTTP (error_middleware renders them)."""
    try:
        return await handler(request)
    except (NotRegistered, NoPermit) as exc:
        raise Forbidden(exc.reason, str(exc)) from None
    except RateLimited as exc:
        raise ApiError(429, exc.reason, str(exc)) from None
    except (SubnetFull, EpochNotDue) as exc:
        raise Conflict(exc.reason, str(exc)) from None
    except (WeightsRejected, BadAxon) as exc:
        raise BadRequest(exc.reason, str(exc)) from None
    except ChainError as exc:
        raise ApiError(503, exc.reason, str(exc)) from None


async def _json_object(request: web.Request, code: str) -> dict[str, Any]:
    raw = await read_json(request, code=code) if await request.read() else {}
    if not isinstance(raw, dict):
        raise BadRequest(code, "the body must be a JSON object")
    return raw


def _signer(request: web.Request, body: Mapping[str, Any]) -> str:
    signer = verified(request).signed_by
    named = body.get("hotkey", signer)
    if named != signer:
        raise Forbidden("not_signer", f"sign with {named}'s hotkey to act for it")
    return signer


def _int(value: object, what: str, code: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(code, f"{what} must be an integer")
    return value


async def post_register(request: web.Request) -> web.Response:
    body = await _json_object(request, "bad_request")
    registration = await request.app[SERVICE].register(_signer(request, body))
    return web.json_response(
        {
            "uid": registration.uid,
            "created": registration.created,
            "replaced": registration.replaced,
        },
        status=201 if registration.created else 200,
    )


async def post_serve(request: web.Request) -> web.Response:
    body = await _json_object(request, "bad_axon")
    hotkey = _signer(request, body)
    host = body.get("host")
    if not isinstance(host, str):
        raise BadRequest("bad_axon", 'send {"host": "1.2.3.4", "port": 8091}')
    port = _int(body.get("port"), "port", "bad_axon")
    uid = await request.app[SERVICE].serve_axon(hotkey, host, port)
    return web.json_response({"uid": uid, "axon": f"{host}:{port}"})


def _figures(raw: object) -> dict[int, MinerFigures] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest("bad_figures", "figures is an object keyed by miner uid")
    figures = {}
    for key, entry in raw.items():
        if not (key.isascii() and key.isdigit() and len(key) <= 5):  # UIDs are < 65536
            raise BadRequest("bad_figures", f"figures key {key[:32]!r} is not a uid")
        uid = int(key)
        if not isinstance(entry, dict) or set(entry) != {"capacity_bytes", "availability"}:
            raise BadRequest(
                "bad_figures", f"figures for uid {uid} need capacity_bytes and availability"
            )
        figures[uid] = MinerFigures(entry["capacity_bytes"], entry["availability"])
    return figures


async def post_weights(request: web.Request) -> web.Response:
    body = await _json_object(request, "bad_weights")
    hotkey = _signer(request, body)
    uids, weights = body.get("uids"), body.get("weights")
    if not isinstance(uids, list) or not isinstance(weights, list):
        raise BadRequest("bad_weights", "send uids and weights as two lists of equal length")
    checked_uids = [_int(u, "each uid", "bad_weights") for u in uids]
    version_key = _int(body.get("version_key"), "version_key", "bad_version")
    block = await request.app[SERVICE].set_weights(
        hotkey, checked_uids, weights, version_key, _figures(body.get("figures"))
    )
    return web.json_response({"block": block})


async def get_metagraph(request: web.Request) -> web.Response:
    graph = await request.app[SERVICE].metagraph()
    return web.json_response(graph.to_dict())


async def get_block(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    info = await service.run(service.chain.chain_info)
    return web.json_response({**info, "block_interval": service.block_interval})


async def get_epochs(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    limit = query_int(request, "limit", low=1) or 100
    epochs = await service.run(service.chain.epochs, min(limit, 1000))  # a page at most
    return web.json_response({"epochs": [e.to_dict() for e in epochs]})


async def get_balances(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    totals = await service.run(service.chain.balances, request.query.get("hotkey"))
    return web.json_response(
        {
            "balances": [
                {
                    "hotkey": hotkey,
                    "total": sum(eras.values()),
                    "eras": {str(era): amount for era, amount in sorted(eras.items())},
                }
                for hotkey, eras in sorted(totals.items())
            ]
        }
    )


async def get_ledger(request: web.Request) -> web.Response:
    credits = await request.app[SERVICE].ledger(
        epoch=query_int(request, "epoch"),
        era=query_int(request, "era"),
        hotkey=request.query.get("hotkey"),
        since_epoch=query_int(request, "since_epoch"),
    )
    return web.json_response({"credits": [c.to_dict() for c in credits]})


class ChainMetrics(ServiceMetrics):
    def __init__(self, service: ChainService) -> None:
        super().__init__("chain")
        block = Gauge("chain_block", "Current block height.", registry=self.registry)
        block.set_function(lambda: service.last_block)
        epochs = Gauge(
            "chain_epochs_closed", "Epochs closed by this process.", registry=self.registry
        )
        epochs.set_function(lambda: service.epochs_closed)
        skipped = Gauge(
            "chain_epoch_rows_skipped",
            "Malformed stored rows (weights, bonds, figures) epoch closes left out.",
            registry=self.registry,
        )
        skipped.set_function(lambda: service.rows_skipped)


METRICS = web.AppKey("metrics", ChainMetrics)


async def _block_producer(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    await service.catch_up()
    task = asyncio.create_task(service.produce_blocks())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def make_app(
    service: ChainService, *, background: bool = True, signature_window_ms: int = 8_000
) -> web.Application:
    """The chain's app; ``background=False`` leaves block production to the caller (tests)."""
    metrics = ChainMetrics(service)
    verifier = EpistulaVerifier(window_ms=signature_window_ms)
    signatures = epistula_middleware(
        verifier,
        own_hotkey=SIGNED_FOR,
        policy=ALLOW_ANY,
        clock_ms=wall_clock_ms,
        public_paths=PUBLIC_PATHS,
    )
    app = service_app(
        metrics, signatures, domain_errors=domain_errors, client_max_size=MAX_JSON_BODY
    )
    app[SERVICE] = service
    app[METRICS] = metrics
    app.router.add_post("/v1/register", post_register)
    app.router.add_post("/v1/serve", post_serve)
    app.router.add_post("/v1/weights", post_weights)
    app.router.add_get("/v1/metagraph", get_metagraph)
    app.router.add_get("/v1/block", get_block)
    app.router.add_get("/v1/epochs", get_epochs)
    app.router.add_get("/v1/balances", get_balances)
    app.router.add_get("/v1/ledger", get_ledger)
    dashboard.install(app, service)
    if background:
        app.cleanup_ctx.append(_block_producer)
    return app
