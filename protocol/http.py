"""The aiohttp layer: errors become HTTP in one place, private routes need Epistula signatures.

A service builds its app as::

    app = web.Application(
        client_max_size=...,
        middlewares=[
            error_middleware,
            epistula_middleware(verifier, own_hotkey=..., policy=..., clock_ms=wall_clock_ms),
        ],
    )

and a handler reads the signer with :func:`verified`. Order matters: ``error_middleware``
first, so it also renders the signature middleware's rejections.

Bodies. A handler takes its body one of two ways, and the middleware enforces which:

- **whole** (the default): the middleware reads the body (bounded by ``client_max_size``) and
  checks its sha256 against the signature before the handler runs; ``await request.read()``
  then returns the verified bytes. The request may declare ``Epistula-Content-Hash:
  sha256:<hex>`` (SigningClient always does): the signature then covers that string, and a
  body that differs is refused as ``body_mismatch`` rather than ``bad_signature``. Any other
  declared hash is refused with ``unexpected_content_hash``.
- **streamed** (handlers decorated with :func:`streamed_body`): the request must declare
  ``Epistula-Content-Hash``; the middleware does not touch the body. The handler reads
  ``request.content`` itself (and must bound its size), then calls
  ``verified(request).check_streamed_body(actual_hash)`` before making anything visible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final, TypeVar

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from protocol.epistula import (
    HEADER_CONTENT_HASH,
    SHA256_PREFIX,
    VERSION,
    EpistulaError,
    EpistulaVerifier,
    HotkeyPolicy,
    ReplayCacheFull,
    UnexpectedContentHash,
    UnknownHotkey,
    VerifiedRequest,
    body_sha256_hex,
)
from protocol.metrics import ServiceMetrics

log = logging.getLogger(__name__)

DEFAULT_PUBLIC_PATHS: Final = frozenset({"/healthz", "/metrics"})
VERIFIED: Final = web.RequestKey("epistula_verified", VerifiedRequest)
_STREAMED_ATTR: Final = "__epistula_streamed_body__"
_PUBLIC_ATTR: Final = "__epistula_public__"

_H = TypeVar("_H", bound=Callable[..., object])
CLIENT_CLOSED: Final = 499
# At shutdown, requests in flight get this long to finish before they are cancelled (an
# upload then abandons: its rows go, its name is free). aiohttp's default is 60 s.
SHUTDOWN_GRACE_SECONDS: Final = 1.0
# Requests one peer address may have in flight at once, per service: far above what any of
# our clients opens (a validator's pool to all miners is 256 connections), low enough that
# one address cannot hold every handler.
MAX_REQUESTS_PER_PEER: Final = 256
# What aiohttp's parser accepts of a request head (docs/architecture.md, "Resource limits").
HEAD_LIMITS: Final = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 64}


class _ConnectionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's own log for a connection. A request it cannot parse (a head beyond
    ``HEAD_LIMITS``, a malformed line) is the client's doing: one INFO line, where aiohttp
    would log an ERROR with a traceback."""

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            self.info("malformed request refused", extra={"why": str(error.message)[:200]})
            return
        super().exception(msg, *args, **kwargs)


_CONNECTION_LOG: Final = _ConnectionLog(logging.getLogger("aiohttp.server"))


class ApiError(Exception):
    """The one error a service raises to answer with a 4xx or 5xx.

    Rendered as ``{"error": code, "message": message}``; ``code`` is stable and
    machine-readable, ``message`` says what to do about it.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"ApiError status must be 4xx or 5xx, not {status}")
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class BadRequest(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(400, code, message)


class Forbidden(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(403, code, message)


class NotFound(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(404, code, message)


class Conflict(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(409, code, message)


class PayloadTooLarge(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(413, code, message)


class InsufficientStorage(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(507, code, message)


def error_json(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every error to HTTP; nothing else in a service decides status codes for errors."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_json(exc.status, exc.code, exc.message)
    except EpistulaError as exc:
        log.debug("rejected %s %s: %s", request.method, request.path, exc.reason)
        return _epistula_response(exc)
    except web.HTTPException as exc:
        if 400 <= exc.status < 500:
            return _client_error_response(request, exc)
        raise  # redirects and deliberate 5xx go out as aiohttp made them
    except ConnectionResetError as exc:
        # The client hung up (mid-upload, mid-download): nobody hears an answer and nothing
        # is wrong here, so one INFO line, no traceback. 499 is nginx's "client closed".
        log.info(
            "client hung up",
            extra={"method": request.method, "path": request.path[:200], "why": str(exc)[:100]},
        )
        return error_json(CLIENT_CLOSED, "client_closed", "the client closed the connection")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_json(500, "internal", "internal server error; the server log has details")


@web.middleware
async def readable_input(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse text no route could store or compare: a NUL or a lone surrogate in the path or
    the query, an undecodable byte in a header (aiohttp keeps it as a surrogate escape).
    Checked once here, so no handler meets it in a database driver or an ``encode()``."""
    if not _storable(request.path):
        raise BadRequest("bad_path", "the path holds a NUL or undecodable text")
    if not all(_storable(key) and _storable(value) for key, value in request.query.items()):
        raise BadRequest("bad_query", "the query holds a NUL or undecodable text")
    for name, value in request.headers.items():
        if not (value.isascii() or _encodable(value)):
            raise BadRequest("bad_header", f"header {name[:64]!r} is not valid UTF-8")
    return await handler(request)


def requests_per_peer(limit: int) -> Middleware:
    """At most ``limit`` requests in flight from one peer address; more get 429."""
    in_flight: dict[str, int] = {}  # only peers with a request in flight: bounded

    @web.middleware
    async def limit_peer(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote or ""
        if in_flight.get(peer, 0) >= limit:
            raise ApiError(
                429, "too_many_requests", f"at most {limit} requests at once from one address"
            )
        in_flight[peer] = in_flight.get(peer, 0) + 1
        try:
            return await handler(request)
        finally:
            in_flight[peer] -= 1
            if not in_flight[peer]:
                del in_flight[peer]

    return limit_peer


def _storable(text: str) -> bool:
    return "\x00" not in text and (text.isascii() or _encodable(text))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _epistula_response(exc: EpistulaError) -> web.Response:
    if isinstance(exc, UnknownHotkey):
        return error_json(403, exc.reason, exc.message)
    if isinstance(exc, ReplayCacheFull):
        response = error_json(503, exc.reason, exc.message)
        response.headers[hdrs.RETRY_AFTER] = "1"
        return response
    response = error_json(401, exc.reason, exc.message)
    response.headers[hdrs.WWW_AUTHENTICATE] = f'Epistula version="{VERSION}"'
    return response


def _client_error_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    default_text = f"{exc.status}: {exc.reason}"
    message = exc.text if exc.text and exc.text != default_text else exc.reason
    if isinstance(exc, web.HTTPNotFound) and message == exc.reason:
        message = f"no such resource: {request.path}"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"{exc.method} is not allowed on {request.path}; use {allowed}"
    response = error_json(exc.status, _status_code_name(exc.status), message)
    for name, value in exc.headers.items():
        if name.lower() not in {"content-type", "content-length"}:
            response.headers.add(name, value)
    return response


def _status_code_name(status: int) -> str:
    if status == 413:  # the phrase changed across Python versions; keep the code stable
        return "payload_too_large"
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def streamed_body(handler: _H) -> _H:
    """Mark a handler as streaming its own body (see the module docstring).

    Decorate the function or ``web.View`` class where it is defined, not a bound method.
    """
    setattr(handler, _STREAMED_ATTR, True)
    return handler


def public_route(handler: _H) -> _H:
    """Mark a handler as public: no signature needed (the dashboards' pages and files, whose
    paths vary, so they cannot all be listed in ``public_paths``)."""
    setattr(handler, _PUBLIC_ATTR, True)
    return handler


def epistula_middleware(
    verifier: EpistulaVerifier,
    *,
    own_hotkey: str,
    policy: HotkeyPolicy,
    clock_ms: Callable[[], int],
    public_paths: frozenset[str] = DEFAULT_PUBLIC_PATHS,
) -> Middleware:
    """Require a valid Epistula signature, for ``own_hotkey``, on every non-public route.

    Requests for unknown routes are let through unverified so they get a plain 404/405.
    """

    @web.middleware
    async def check_epistula(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.path in public_paths
            or request.match_info.http_exception is not None
            or getattr(request.match_info.handler, _PUBLIC_ATTR, False)
        ):
            return await handler(request)
        if VERIFIED in request:  # an earlier middleware of the service authenticated it
            return await handler(request)
        # One clock reading: a large body may take longer than the window to arrive.
        now_ms = clock_ms()
        # Header checks first, so an unsigned request is refused before its body is read.
        verifier.precheck(
            request.headers, now_ms=now_ms, expected_signed_for=own_hotkey, policy=policy
        )
        body_hash: str | None = None
        if not getattr(request.match_info.handler, _STREAMED_ATTR, False):
            # A whole-body route accepts a declared "sha256:<hex>" (our client always sends
            # one, so a swapped body is told apart from a forged signature), or none at all.
            declared = request.headers.get(HEADER_CONTENT_HASH)
            if declared is not None and not declared.startswith(SHA256_PREFIX):
                raise UnexpectedContentHash(
                    f"this endpoint reads its body whole: declare {HEADER_CONTENT_HASH} as "
                    f"'{SHA256_PREFIX}<hex sha256 of the body>', or leave it out"
                )
            body_hash = body_sha256_hex(await request.read())
        request[VERIFIED] = verifier.verify(
            request.headers,
            body_sha256_hex=body_hash,
            now_ms=now_ms,
            expected_signed_for=own_hotkey,
            policy=policy,
        )
        return await handler(request)

    return check_epistula


def verified(request: web.Request) -> VerifiedRequest:
    """Who signed this request; only for routes behind :func:`epistula_middleware`."""
    try:
        return request[VERIFIED]
    except KeyError:
        raise RuntimeError(
            f"{request.path} has no verified signer: it is a public path, or the app lacks "
            "epistula_middleware"
        ) from None


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def health_route(report: Callable[[], Mapping[str, object]]) -> Handler:
    """A ``/healthz`` that tells the truth: 503 with the reason when ``report()["ok"]`` is
    false (a miner whose store is down)."""

    async def handler(_request: web.Request) -> web.Response:
        body = dict(report())
        return web.json_response(body, status=200 if body.get("ok") else 503)

    return handler


def service_app(
    metrics: ServiceMetrics,
    signatures: Middleware,
    *,
    before_signatures: Sequence[Middleware] = (),
    domain_errors: Middleware | None = None,
    client_max_size: int = 1024 * 1024,
    max_requests_per_peer: int = MAX_REQUESTS_PER_PEER,
    health: Handler = healthz,
) -> web.Application:
    """The skeleton every service shares: metrics outermost, then ``error_middleware`` (so
    it renders every rejection), the per-peer limit, ``readable_input``, any authentication
    of the service's own, signatures, and the service's mapping of its domain errors; plus
    ``/healthz`` and ``/metrics``. Request heads are bounded by ``HEAD_LIMITS``, bodies read
    whole by ``client_max_size``."""
    middlewares = [
        metrics.middleware,
        error_middleware,
        requests_per_peer(max_requests_per_peer),
        readable_input,
        *before_signatures,
        signatures,
    ]
    if domain_errors is not None:
        middlewares.append(domain_errors)
    app = web.Application(
        client_max_size=client_max_size,
        middlewares=middlewares,
        handler_args={**HEAD_LIMITS, "logger": _CONNECTION_LOG},
    )
    _refuse_unreadable_expect(app.router)
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", metrics.handler)
    return app


def _refuse_unreadable_expect(router: web.UrlDispatcher) -> None:
    """aiohttp answers an ``Expect`` header right after routing, before any middleware, and
    its answer to an unknown value quotes it: an undecodable one makes that a 500. So the
    check ``readable_input`` makes of every header is made of this one as routing ends."""
    resolve = router.resolve

    async def resolve_then_check(request: web.Request) -> Any:
        match = await resolve(request)
        expect = request.headers.get(hdrs.EXPECT)
        if expect is not None and not (expect.isascii() or _encodable(expect)):
            raise web.HTTPBadRequest(text="the Expect header is not valid UTF-8")
        return match

    setattr(router, "resolve", resolve_then_check)  # noqa: B010 - mypy forbids assigning a method


def resolve_range(wanted: slice, size: int, what: str) -> tuple[int, int]:
    """``[start, stop)`` of a ``request.http_range`` over ``size`` bytes; 416 if unsatisfiable.

    Handles suffix ranges (``bytes=-N``) and a missing header (the whole body, even empty).
    """
    start, stop = wanted.start, wanted.stop
    if start is not None and start < 0 and stop is None:  # suffix: the last -start bytes
        start, stop = max(0, size + start), size
    start = 0 if start is None else start
    stop = size if stop is None else min(stop, size)
    if (start, stop) == (0, 0) and size == 0:
        return 0, 0
    if start >= size or stop <= start:
        raise ApiError(416, "range_not_satisfiable", f"the {what} has {size} bytes")
    return start, stop
