"""The shared readers of client input (protocol.inputs, readable_input), against a real
aiohttp server built by service_app, as every service is."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from protocol.epistula import ALLOW_ANY, EpistulaVerifier
from protocol.http import ApiError, epistula_middleware, service_app
from protocol.inputs import (
    MAX_JSON_DEPTH,
    MAX_QUERY_INT,
    paced_body,
    parse_json,
    query_float,
    query_int,
    read_json,
)
from protocol.metrics import ServiceMetrics
from protocol.signing import wall_clock_ms
from tests.rawhttp import read_response, request_head, send


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (nested(MAX_JSON_DEPTH), json.loads(nested(MAX_JSON_DEPTH))),
        (b'{"a": "[[[[{{{{", "b": [1, 2]}', {"a": "[[[[{{{{", "b": [1, 2]}),
        (b'"a \\" [ quote"', 'a " [ quote'),
        (b'"\\ud83d\\ude00"', "\U0001f600"),  # an escaped surrogate pair is one character
        (json.dumps({"x": [[1]] * 1000}).encode(), {"x": [[1]] * 1000}),  # wide, not deep
    ],
)
def test_json_within_the_limits_parses(raw: bytes, value: Any) -> None:
    assert parse_json(raw, None, code="bad") == value
    assert parse_json(raw, "UTF-8", code="bad") == value


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (nested(MAX_JSON_DEPTH + 1), "nested"),
        (b"[" * 200_000, "nested"),  # unbalanced and deep: never reaches the parser
        (b'{"a": ' * 50 + b"1" + b"}" * 50, "nested"),
        (b"[NaN]", "not JSON"),
        (b"[Infinity]", "not JSON"),
        (b'"\\ud800"', "surrogate"),
        (b'{"\\udfff": 1}', "surrogate"),
        (b"\xff", "UTF-8"),
        (b"{", "not JSON"),
        (b"[1e400]", None),  # inf is not refused here: callers check their own numbers
    ],
)
def test_json_outside_the_limits_is_a_400(raw: bytes, why: str | None) -> None:
    if why is None:
        parse_json(raw, None, code="bad")
        return
    with pytest.raises(ApiError) as caught:
        parse_json(raw, None, code="bad")
    assert (caught.value.status, caught.value.code) == (400, "bad")
    assert why in caught.value.message


@pytest.mark.parametrize("charset", ["klingon", "latin-1", "utf-16", "x" * 1000])
def test_a_charset_other_than_utf8_is_a_415(charset: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(b"{}", charset, code="bad")
    assert (caught.value.status, caught.value.code) == (415, "unsupported_charset")


async def echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "n": query_int(request, "n", low=-1, high=MAX_QUERY_INT),
            "t": query_float(request, "t", low=0.0, high=1e9),
        }
    )


async def echo_json(request: web.Request) -> web.Response:
    return web.json_response({"got": await read_json(request, code="bad_body")})


async def slow_reader(request: web.Request) -> web.Response:
    size = 0
    async for chunk in paced_body(request.content, window=0.5, min_rate=1000):
        size += len(chunk)
    return web.json_response({"size": size})


async def hang_up(request: web.Request) -> web.Response:
    raise ConnectionResetError("Connection lost")


def app(max_requests_per_peer: int = 256) -> web.Application:
    signatures = epistula_middleware(
        EpistulaVerifier(),
        own_hotkey="me",
        policy=ALLOW_ANY,
        clock_ms=wall_clock_ms,
        public_paths=frozenset({"/healthz", "/n", "/json", "/slow", "/gone"}),
    )
    built = service_app(
        ServiceMetrics("test"), signatures, max_requests_per_peer=max_requests_per_peer
    )
    built.router.add_get("/n", echo)
    built.router.add_post("/json", echo_json)
    built.router.add_put("/slow", slow_reader)
    built.router.add_get("/gone", hang_up)
    return built


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with TestServer(app()) as server:
        yield server


Get = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
def get(server: TestServer) -> Get:
    async def get(target: str, headers: dict[str, str | bytes] | None = None) -> Any:
        answer = await send(server.host, server.port, request_head("GET", target, headers or {}))
        return answer.status, answer.json()

    return get


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("n=5&t=1.5", {"n": 5, "t": 1.5}),
        ("n=-1", {"n": -1, "t": None}),
        (f"n={MAX_QUERY_INT}", {"n": MAX_QUERY_INT, "t": None}),
        ("n=&t=", {"n": None, "t": None}),
    ],
)
async def test_query_numbers_within_bounds(get: Get, query: str, expected: Any) -> None:
    assert await get(f"/n?{query}") == (200, expected)


@pytest.mark.parametrize(
    "query",
    [
        f"n={MAX_QUERY_INT + 1}",
        "n=99999999999999999999",
        "n=-2",
        "n=1" + "0" * 5000,
        "n=%D9%A3",  # a digit int() would take
        "n=1_000",
        "n=0x10",
        "n=%201",
        "t=nan",
        "t=inf",
        "t=1e308",
        "t=-0.5",
        "t=" + "1" * 100,
    ],
)
async def test_query_numbers_out_of_bounds_are_a_400(get: Get, query: str) -> None:
    status, body = await get(f"/n?{query}")
    assert (status, body["error"]) == (400, "bad_query")


@pytest.mark.parametrize(
    ("target", "headers", "code"),
    [
        ("/n?x=a%00b", {}, "bad_query"),
        ("/n?a%00=1", {}, "bad_query"),
        ("/healthz%00", {}, "bad_path"),
        ("/healthz", {"X-Anything": b"\xff\xfe"}, "bad_header"),
        ("/healthz", {"Authorization": b"Bearer \xed\xa0\x80"}, "bad_header"),
    ],
)
async def test_text_no_route_could_store_is_refused_for_every_route(
    get: Get, target: str, headers: dict[str, str | bytes], code: str
) -> None:
    status, body = await get(target, headers)
    assert (status, body["error"]) == (400, code)


async def test_utf8_text_that_is_not_ascii_is_fine(get: Get) -> None:
    assert (await get("/healthz", {"X-Name": "tökén".encode()}))[0] == 200
    assert await get("/n?label=%C3%A9") == (200, {"n": None, "t": None})


async def test_a_request_head_beyond_the_limits_is_refused_with_one_info_line(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for headers in ({f"X-H{i}": "1" for i in range(100)}, {"X-Big": "a" * 9000}):
        head = request_head("GET", "/healthz", headers)
        assert (await send(server.host, server.port, head)).status in {400, 431}
    refused = [r for r in caplog.records if r.getMessage() == "malformed request refused"]
    assert len(refused) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_json_body_is_read_strictly(server: TestServer) -> None:
    async def post(body: bytes, content_type: str = "application/json") -> Any:
        head = request_head(
            "POST", "/json", {"Content-Type": content_type, "Content-Length": str(len(body))}
        )
        answer = await send(server.host, server.port, head, body)
        return answer.status, answer.json()

    assert await post(b'{"a": [1]}') == (200, {"got": {"a": [1]}})
    assert (await post(nested(10_000)))[1]["error"] == "bad_body"
    assert (await post(b"{}", "application/json; charset=cp1252"))[0] == 415
    assert (await post(b"x" * (2 * 2**20)))[0] == 413  # beyond client_max_size


async def test_a_stalled_body_is_a_408_and_a_steady_one_is_not(server: TestServer) -> None:
    data = b"x" * 3000
    head = request_head("PUT", "/slow", {"Content-Length": str(len(data))})
    steady = await send(server.host, server.port, head, data)
    assert (steady.status, steady.json()) == (200, {"size": 3000})
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head + data[:10])  # then nothing
    answer = await asyncio.wait_for(read_response(reader), 5)
    writer.close()
    assert (answer.status, answer.error) == (408, "body_too_slow")


async def test_a_hang_up_is_one_info_line_not_a_traceback(
    get: Get, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert (await get("/gone"))[0] == 499
    hung = [r for r in caplog.records if r.getMessage() == "client hung up"]
    assert len(hung) == 1
    assert hung[0].levelno == logging.INFO
    assert hung[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_one_address_may_hold_only_so_many_requests_at_once() -> None:
    async with TestServer(app(max_requests_per_peer=2)) as server:
        head = request_head("PUT", "/slow", {"Content-Length": "100"})
        held = []
        for _ in range(2):  # two bodies that trickle: both handlers stay busy
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(head + b"x")
            held.append((reader, writer))
        await asyncio.sleep(0.2)
        refused = await send(server.host, server.port, request_head("GET", "/healthz", {}))
        assert (refused.status, refused.error) == (429, "too_many_requests")
        for reader, writer in held:  # both time out (408), and their slots come back
            assert (await asyncio.wait_for(read_response(reader), 5)).status == 408
            writer.close()
        again = await send(server.host, server.port, request_head("GET", "/healthz", {}))
        assert again.status == 200
