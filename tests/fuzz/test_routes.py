"""Property-based fuzzing of every route of every service (issue 14).

For each request hypothesis draws (tests/fuzz/requests.py: the route's schema, values at and
beyond its bounds, junk), sent over a bare socket to a real server: the answer comes within
10 s and is not a 5xx, and the services log no error and no traceback. After all of them,
every service is healthy and the data the fuzzer's identities could not touch is intact.
Seeded (``derandomize``): the same requests on every run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, note, settings

from protocol.epistula import sign_headers
from protocol.signing import wall_clock_ms
from tests.fuzz.conftest import TOTALS
from tests.fuzz.requests import (
    CHAIN_ROUTES,
    MINER_ROUTES,
    VALIDATOR_ROUTES,
    FuzzRequest,
    requests,
)
from tests.fuzz.services import KEYS, TOKEN, Endpoint, Net
from tests.rawhttp import request_head, send_sync

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=800,  # ~40 s for the three services here
    suppress_health_check=list(HealthCheck),
)
ANSWER_WITHIN = 10.0


class Problems(logging.Handler):
    """Every log record at ERROR or above, or with a traceback, from any service."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="module")
def problems() -> Iterator[Problems]:
    handler = Problems()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def fire(endpoint: Endpoint, request: FuzzRequest, problems: Problems) -> None:
    counts = TOTALS.setdefault(endpoint.name, Counter({"5xx": 0, "hangs": 0}))
    headers = request.head_headers(endpoint.hotkey, KEYS, TOKEN)
    head = request_head(request.route.method, request.target(), headers)
    note(f"{head!r} + {len(request.body)} body bytes {request.body[:200]!r}")
    seen = len(problems.records)
    counts["requests"] += 1
    started = time.monotonic()
    try:
        answer = send_sync(endpoint.host, endpoint.port, head, request.body, timeout=ANSWER_WITHIN)
    except TimeoutError:
        counts["hangs"] += 1
        raise AssertionError(f"no answer within {ANSWER_WITHIN} s") from None
    counts[f"{answer.status // 100}xx"] += 1
    counts["ms"] += round(1000 * (time.monotonic() - started))
    assert answer.status < 500, answer.body[:500]
    new = problems.records[seen:]
    assert not new, [(r.name, r.getMessage(), r.exc_text) for r in new]


@FUZZ
@given(request=requests(VALIDATOR_ROUTES, ("alice", "bob")))
def test_validator_routes(net: Net, problems: Problems, request: FuzzRequest) -> None:
    fire(net.validator, request, problems)


@FUZZ
@given(request=requests(MINER_ROUTES, ("validator", "alice")))
def test_miner_routes(net: Net, problems: Problems, request: FuzzRequest) -> None:
    fire(net.miner, request, problems)


@FUZZ
@given(request=requests(CHAIN_ROUTES, ("v1", "v2", "alice")))
def test_chain_routes(net: Net, problems: Problems, request: FuzzRequest) -> None:
    fire(net.chain, request, problems)


def test_every_service_is_still_healthy_and_its_data_intact(net: Net, problems: Problems) -> None:
    for endpoint in (net.validator, net.miner, net.chain):
        answer = send_sync(endpoint.host, endpoint.port, request_head("GET", "/healthz", {}))
        assert answer.status == 200, endpoint.name
    object_id, data = net.keeper_object
    shard_id, shard = net.keeper_shard

    def signed(endpoint: Endpoint, target: str) -> bytes:
        headers = sign_headers(
            KEYS["keeper"], body_hash=hashlib.sha256(b"").hexdigest(),
            signed_for=endpoint.hotkey, now_ms=wall_clock_ms(),
        )  # fmt: skip
        return request_head("GET", target, headers)

    got = send_sync(
        net.validator.host, net.validator.port, signed(net.validator, f"/v1/objects/{object_id}")
    )
    assert (got.status, got.body) == (200, data)
    got = send_sync(net.miner.host, net.miner.port, signed(net.miner, f"/v1/shards/{shard_id}"))
    assert (got.status, got.body) == (200, shard)
    # The chain never stopped closing epochs, whatever figures were sent.
    assert net.chain_service is not None
    closed, block = net.chain_service.epochs_closed, net.chain_service.last_block
    time.sleep(1.2)  # 24 blocks of 0.05 s: at least two epochs of 10
    assert net.chain_service.last_block > block
    assert net.chain_service.epochs_closed >= closed + 1
    assert not problems.records
