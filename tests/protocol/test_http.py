"""The middlewares and the signing client against a real aiohttp server."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from bittensor_wallet import Keypair

from protocol.epistula import (
    ALLOW_ANY,
    HEADER_CONTENT_HASH,
    HEADER_SIGNED_BY,
    EpistulaVerifier,
    HotkeyPolicy,
    StaticAllowlist,
    body_sha256_hex,
    sign_headers,
)
from protocol.http import (
    ApiError,
    InsufficientStorage,
    epistula_middleware,
    error_middleware,
    streamed_body,
    verified,
)
from protocol.signing import SigningClient, wall_clock_ms

MAX_BODY = 4096

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


async def echo(request: web.Request) -> web.Response:
    signer = verified(request)
    body = await request.read()  # already read and checked by the middleware
    return web.json_response({"signed_by": signer.signed_by, "body": body.decode()})


@streamed_body
async def upload(request: web.Request) -> web.Response:
    signer = verified(request)
    declared = signer.require_declared_hash()
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    signer.check_streamed_body("sha256:" + digest.hexdigest())
    return web.json_response({"stored": declared, "size": size, "signed_by": signer.signed_by})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def full(request: web.Request) -> web.Response:
    raise InsufficientStorage("disk_full", "no room for more shards: free space or add a disk")


async def teapot(request: web.Request) -> web.Response:
    raise ApiError(418, "teapot", "this server only makes tea")


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("db password is hunter2")


async def unprotected(request: web.Request) -> web.Response:
    verified(request)  # a bug: this route is public, so nobody was verified
    return web.json_response({})


def make_app(server: Keypair, policy: HotkeyPolicy = ALLOW_ANY) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[
            error_middleware,
            epistula_middleware(
                EpistulaVerifier(),
                own_hotkey=server.ss58_address,
                policy=policy,
                clock_ms=wall_clock_ms,
                public_paths=frozenset({"/healthz", "/public-bug"}),
            ),
        ],
    )
    app.router.add_post("/echo", echo)
    app.router.add_put("/upload", upload)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/full", full)
    app.router.add_get("/teapot", teapot)
    app.router.add_get("/crash", crash)
    app.router.add_get("/public-bug", unprotected)
    return app


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, bob: Keypair) -> Client:
    return await aiohttp_client(make_app(bob))


def headers_for(
    signer: Keypair, receiver: Keypair, body: bytes, *, offset_ms: int = 0
) -> dict[str, str]:
    return sign_headers(
        signer,
        body_hash=body_sha256_hex(body),
        signed_for=receiver.ss58_address,
        now_ms=wall_clock_ms() + offset_ms,
    )


async def error_of(response: ClientResponse) -> str:
    assert response.content_type == "application/json"
    payload = await response.json()
    assert set(payload) == {"error", "message"}
    assert payload["message"]
    code: str = payload["error"]
    return code


async def test_signed_request_reaches_the_handler(
    client: Client, alice: Keypair, bob: Keypair
) -> None:
    body = b"hello"
    response = await client.post("/echo", data=body, headers=headers_for(alice, bob, body))
    assert response.status == 200
    assert await response.json() == {"signed_by": alice.ss58_address, "body": "hello"}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "missing_header"),
        ("stale", "stale_timestamp"),
        ("future", "future_timestamp"),
        ("other_key", "bad_signature"),
        ("wrong_signed_for", "wrong_signed_for"),
        ("other_body", "bad_signature"),
        ("shard_id_on_whole_body_route", "unexpected_content_hash"),
        ("declared_sha256_other_body", "body_mismatch"),
    ],
)
async def test_rejections_are_401_json_with_the_reason(
    client: Client, alice: Keypair, bob: Keypair, mallory: Keypair, case: str, reason: str
) -> None:
    body = b"payload"
    headers: dict[str, str] = {}
    if case == "stale":
        headers = headers_for(alice, bob, body, offset_ms=-60_000)
    elif case == "future":
        headers = headers_for(alice, bob, body, offset_ms=60_000)
    elif case == "other_key":
        headers = headers_for(mallory, bob, body)
        headers[HEADER_SIGNED_BY] = alice.ss58_address
    elif case == "wrong_signed_for":
        headers = headers_for(alice, mallory, body)
    elif case == "other_body":
        headers = headers_for(alice, bob, b"something else")
    elif case == "shard_id_on_whole_body_route":
        headers = sign_headers(
            alice, body_hash="ab" * 32, signed_for=bob.ss58_address,
            now_ms=wall_clock_ms(), declared=True,
        )  # fmt: skip
    elif case == "declared_sha256_other_body":
        headers = sign_headers(
            alice, body_hash="sha256:" + body_sha256_hex(b"something else"),
            signed_for=bob.ss58_address, now_ms=wall_clock_ms(), declared=True,
        )  # fmt: skip
    response = await client.post("/echo", data=body, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Epistula version="2"'
    assert await error_of(response) == reason


async def test_replayed_request_is_401(client: Client, alice: Keypair, bob: Keypair) -> None:
    body = b"once"
    headers = headers_for(alice, bob, body)
    first = await client.post("/echo", data=body, headers=headers)
    assert first.status == 200
    second = await client.post("/echo", data=body, headers=headers)
    assert second.status == 401
    assert await error_of(second) == "replayed_uuid"


async def test_unknown_hotkey_is_403(
    aiohttp_client: AiohttpClient, alice: Keypair, bob: Keypair, mallory: Keypair
) -> None:
    client = await aiohttp_client(make_app(bob, StaticAllowlist(frozenset({alice.ss58_address}))))
    body = b"hi"
    response = await client.post("/echo", data=body, headers=headers_for(mallory, bob, body))
    assert response.status == 403
    assert await error_of(response) == "unknown_hotkey"
    allowed = await client.post("/echo", data=body, headers=headers_for(alice, bob, body))
    assert allowed.status == 200


async def test_full_replay_cache_is_503(
    aiohttp_client: AiohttpClient, alice: Keypair, bob: Keypair
) -> None:
    app = web.Application(
        middlewares=[
            error_middleware,
            epistula_middleware(
                EpistulaVerifier(max_remembered=1),
                own_hotkey=bob.ss58_address,
                policy=ALLOW_ANY,
                clock_ms=wall_clock_ms,
            ),
        ]
    )
    app.router.add_post("/echo", echo)
    client = await aiohttp_client(app)
    assert (await client.post("/echo", headers=headers_for(alice, bob, b""))).status == 200
    response = await client.post("/echo", headers=headers_for(alice, bob, b""))
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert await error_of(response) == "replay_cache_full"


async def test_public_path_needs_no_signature(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"ok": True}


async def test_unknown_route_is_404_json(client: Client) -> None:
    response = await client.get("/no/such/thing")
    assert response.status == 404
    assert await error_of(response) == "not_found"


async def test_wrong_method_is_405_json_with_allow(client: Client) -> None:
    response = await client.get("/echo")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert await error_of(response) == "method_not_allowed"


async def test_api_error_keeps_its_status_and_code(
    client: Client, alice: Keypair, bob: Keypair
) -> None:
    response = await client.get("/full", headers=headers_for(alice, bob, b""))
    assert response.status == 507
    assert await response.json() == {
        "error": "disk_full",
        "message": "no room for more shards: free space or add a disk",
    }
    response = await client.get("/teapot", headers=headers_for(alice, bob, b""))
    assert response.status == 418
    assert await error_of(response) == "teapot"


async def test_unexpected_error_is_500_without_details(
    client: Client, alice: Keypair, bob: Keypair, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/crash", headers=headers_for(alice, bob, b""))
    assert response.status == 500
    text = await response.text()
    assert "hunter2" not in text
    assert "Traceback" not in text
    assert await error_of(response) == "internal"
    # The details go to the server log instead.
    assert any("hunter2" in (r.exc_text or "") for r in caplog.records)


async def test_verified_on_a_public_route_is_a_500(client: Client) -> None:
    response = await client.get("/public-bug")
    assert response.status == 500
    assert await error_of(response) == "internal"


async def test_oversized_signed_body_is_413_json(
    client: Client, alice: Keypair, bob: Keypair
) -> None:
    body = b"x" * (MAX_BODY + 1)
    response = await client.post("/echo", data=body, headers=headers_for(alice, bob, body))
    assert response.status == 413
    assert await error_of(response) == "payload_too_large"


async def test_oversized_unsigned_body_is_refused_before_reading(client: Client) -> None:
    response = await client.post("/echo", data=b"x" * (MAX_BODY + 1))
    assert response.status == 401
    assert await error_of(response) == "missing_header"


# --- the signing client --------------------------------------------------------------------


async def test_signing_client_request(client: Client, alice: Keypair, bob: Keypair) -> None:
    signing = SigningClient(client.session, alice)
    async with signing.request(
        "POST", client.make_url("/echo"), signed_for=bob.ss58_address, body=b"raw bytes"
    ) as response:
        assert response.status == 200
        assert await response.json() == {"signed_by": alice.ss58_address, "body": "raw bytes"}
    async with signing.request(
        "POST", client.make_url("/echo"), signed_for=bob.ss58_address, json={"a": [1, 2]}
    ) as response:
        assert response.status == 200
        assert (await response.json())["body"] == '{"a":[1,2]}'


async def test_signing_client_signs_for_the_receiver_only(
    client: Client, alice: Keypair, mallory: Keypair
) -> None:
    signing = SigningClient(client.session, alice)
    async with signing.request(
        "POST", client.make_url("/echo"), signed_for=mallory.ss58_address, body=b"x"
    ) as response:
        assert response.status == 401
        assert await error_of(response) == "wrong_signed_for"


async def test_signing_client_rejects_body_and_json_together(
    client: Client, alice: Keypair, bob: Keypair
) -> None:
    signing = SigningClient(client.session, alice)
    with pytest.raises(ValueError, match="body or json"):
        signing.request(
            "POST", client.make_url("/echo"), signed_for=bob.ss58_address, body=b"1", json=1
        )


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_signing_client_streams_with_a_declared_hash(
    client: Client, alice: Keypair, bob: Keypair
) -> None:
    # Larger than client_max_size: a streamed route is not bound by it.
    data = bytes(range(256)) * 64
    content_hash = "sha256:" + hashlib.sha256(data).hexdigest()
    signing = SigningClient(client.session, alice)
    async with signing.request_stream(
        "PUT",
        client.make_url("/upload"),
        signed_for=bob.ss58_address,
        content_hash=content_hash,
        body=chunks(data, 1000),
    ) as response:
        assert response.status == 200
        assert await response.json() == {
            "stored": content_hash,
            "size": len(data),
            "signed_by": alice.ss58_address,
        }


async def test_streamed_body_not_matching_its_declared_hash_is_401(
    client: Client, alice: Keypair, bob: Keypair
) -> None:
    signing = SigningClient(client.session, alice)
    declared = "sha256:" + hashlib.sha256(b"what was signed").hexdigest()
    async with signing.request_stream(
        "PUT",
        client.make_url("/upload"),
        signed_for=bob.ss58_address,
        content_hash=declared,
        body=b"what was sent",
    ) as response:
        assert response.status == 401
        assert await error_of(response) == "body_mismatch"


async def test_streamed_route_requires_a_declared_hash(
    client: Client, alice: Keypair, bob: Keypair
) -> None:
    # Plain Epistula: the signature covers the body's sha256, no hash is declared.
    headers = headers_for(alice, bob, b"data")
    async with client.put("/upload", data=b"data", headers=headers) as response:
        assert response.status == 401
        assert await error_of(response) == "missing_header"
        assert HEADER_CONTENT_HASH in (await response.json())["message"]
