"""Prometheus metrics for every service: requests by route and status, plus ``/metrics``.

Each app owns its registry (several apps can share a process in tests and benchmarks), and
services add their own gauges and histograms to it.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{service}_requests",
            "HTTP requests by route and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{service}_request_seconds",
            "HTTP request handling time by route.",
            ["route"],
            registry=self.registry,
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Label by route pattern, never by raw path: ids in paths would explode cardinality.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        # Sits outside error_middleware, so failures arrive here as ordinary responses.
        start = time.perf_counter()
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
        finally:
            status = response.status if response is not None else 500
            self.requests.labels(route, request.method, str(status)).inc()
            self.latency.labels(route).observe(time.perf_counter() - start)
        return response

    async def handler(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
