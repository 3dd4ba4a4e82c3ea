"""``GET /v1/health[?prefix=P]`` and ``GET /v1/health/{ref}``: the caller's objects'
health (``subnet check``, ``subnet ls --health``), read-only, under the user's own auth: a
user sees only their own objects.

The handlers are thin: :meth:`validator.gateway.Gateway.health` reads the rows and
:mod:`validator.object_health` computes, with the repairer's definition of a healthy share.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from protocol.http import verified
from validator.gateway import Gateway

HEALTH_GATEWAY = web.AppKey("health_gateway", Gateway)
UNSEEN_AFTER = web.AppKey("health_unseen_after", float)


async def get_all(request: web.Request) -> web.Response:
    return await _answer(request, None, request.query.get("prefix", ""))


async def get_one(request: web.Request) -> web.Response:
    return await _answer(request, request.match_info["ref"], "")


async def _answer(request: web.Request, ref: str | None, prefix: str) -> web.Response:
    gateway = request.app[HEALTH_GATEWAY]
    owner = await asyncio.to_thread(gateway.user_id, verified(request).signed_by)
    unseen_after = request.app[UNSEEN_AFTER]
    report = await asyncio.to_thread(gateway.health, owner, ref, unseen_after, prefix)
    return web.json_response({"objects": [health.to_dict() for health in report]})


def install(app: web.Application, gateway: Gateway, unseen_after: float) -> None:
    app[HEALTH_GATEWAY] = gateway
    app[UNSEEN_AFTER] = unseen_after
    app.router.add_get("/v1/health", get_all)
    app.router.add_get("/v1/health/{ref:.+}", get_one)
