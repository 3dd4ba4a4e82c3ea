"""Hypothesis strategies for requests to every route of every service: each route's own query
parameters and JSON schema, values just inside and far outside them, and plain junk (random
bytes in paths, queries, headers and bodies, deep JSON, odd charsets, forged signatures)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

from hypothesis import strategies as st

from protocol.epistula import sign_headers
from protocol.signing import wall_clock_ms


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "{x}" is filled by the strategy
    params: tuple[str, ...] = ()
    body: str = ""  # the name of the body's schema; "" for none
    streamed: str = ""  # "sha256" (validator upload) or "id" (miner shard): what is declared


VALIDATOR_ROUTES = (
    Route(
        "PUT", "/v1/objects", ("name", "encrypt", "keep_key", "codec", "mode"), "bytes", "sha256"
    ),
    Route("GET", "/v1/objects"),
    Route("GET", "/v1/objects/{ref}"),
    Route("HEAD", "/v1/objects/{ref}"),
    Route("DELETE", "/v1/objects/{ref}"),
    Route("GET", "/v1/health"),
    Route("GET", "/v1/health/{ref}"),
    Route("GET", "/v1/audit/log", ("after", "limit", "miner", "verdict", "kind", "since", "until")),
    Route("GET", "/v1/audit/summary", ("since",)),
    Route("GET", "/v1/info"),
    Route("GET", "/healthz"),
    Route("GET", "/metrics"),
    Route("POST", "/{junk}", body="json"),
)
MINER_ROUTES = (
    Route("PUT", "/v1/shards/{shard}", ("leaf_size",), "bytes", "id"),
    Route("GET", "/v1/shards/{shard}"),
    Route("HEAD", "/v1/shards/{shard}"),
    Route("DELETE", "/v1/shards/{shard}"),
    Route("POST", "/v1/challenges", body="challenges"),
    Route("GET", "/v1/quarantine"),
    Route("GET", "/v1/info"),
    Route("GET", "/healthz"),
    Route("GET", "/metrics"),
)
CHAIN_ROUTES = (
    Route("POST", "/v1/register", body="register"),
    Route("POST", "/v1/serve", body="serve"),
    Route("POST", "/v1/weights", body="weights"),
    Route("GET", "/v1/metagraph"),
    Route("GET", "/v1/block"),
    Route("GET", "/v1/epochs", ("limit",)),
    Route("GET", "/v1/balances", ("hotkey",)),
    Route("GET", "/v1/ledger", ("epoch", "era", "hotkey", "since_epoch")),
    Route("GET", "/healthz"),
    Route("GET", "/metrics"),
)

# Numbers at and beyond every bound that matters: 64-bit columns, floats, JSON parsers.
EDGE_INTS = st.sampled_from(
    [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**20, 10**30, 10**400]
)
EDGE_FLOATS = st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.0000001, -1e-300, 1e308, 5e-324])
SOME_INTS = st.one_of(st.integers(-5, 300), EDGE_INTS)
SOME_FLOATS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), EDGE_FLOATS)
HEX_IDS = st.text("0123456789abcdef", min_size=64, max_size=64)
TEXT = st.text(max_size=40)  # any code point but a surrogate: valid UTF-8
RAW = st.binary(max_size=40)  # sent percent-encoded: may be anything at all, NUL included

QUERY_VALUES = st.one_of(
    SOME_INTS.map(str),
    SOME_FLOATS.map(repr),
    st.sampled_from(["", "nan", "inf", "-inf", "1e999", "0x10", "1_000", "٣", "true", "isal"]),
    st.sampled_from(["pass", "repair", "merkle", "zfec", "0", "1", "name.bin", "a/b c"]),
    TEXT,
    RAW,
)


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), SOME_INTS, SOME_FLOATS, TEXT)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)
        ),
        max_leaves=12,
    )


JSON_VALUES = _json_values()


def _dumps(value: Any) -> bytes:
    # ensure_ascii: a text key or value may hold any code point; 10**400 and 1e308 go as
    # written. allow_nan is never needed (no NaN is drawn).
    return json.dumps(value).encode()


def _weights() -> st.SearchStrategy[bytes]:
    uid = st.one_of(st.integers(0, 8), EDGE_INTS)
    weight = st.one_of(st.floats(0, 10, allow_nan=False), EDGE_FLOATS, EDGE_INTS)
    figure = st.fixed_dictionaries(
        {"capacity_bytes": st.one_of(st.integers(0, 2**45), EDGE_INTS, SOME_FLOATS),
         "availability": st.one_of(st.floats(0, 1), EDGE_FLOATS, EDGE_INTS)}
    )  # fmt: skip
    figures = st.dictionaries(
        st.one_of(st.integers(0, 8).map(str), TEXT), st.one_of(figure, JSON_VALUES), max_size=3
    )
    return st.fixed_dictionaries(
        {"uids": st.lists(uid, max_size=6), "weights": st.lists(weight, max_size=6),
         "version_key": st.sampled_from([3, 3, 3, 0, 10**30])},
        optional={"figures": st.one_of(st.none(), figures), "hotkey": TEXT},
    ).map(_dumps)  # fmt: skip


def _challenges() -> st.SearchStrategy[bytes]:
    challenge = st.fixed_dictionaries(
        {"shard_id": st.one_of(st.just("0" * 64), TEXT, HEX_IDS),
         "nonce": st.one_of(TEXT, st.text(min_size=100, max_size=200)),
         "indices": st.lists(SOME_INTS, max_size=5)}
    )  # fmt: skip
    return st.fixed_dictionaries({"challenges": st.lists(challenge, max_size=4)}).map(_dumps)


SCHEMAS: dict[str, st.SearchStrategy[bytes]] = {
    "weights": _weights(),
    "serve": st.fixed_dictionaries(
        {"host": st.one_of(TEXT, st.just("10.0.0.1"), st.just("[::1]")), "port": SOME_INTS}
    ).map(_dumps),
    "register": st.one_of(st.just(b"{}"), st.fixed_dictionaries({"hotkey": TEXT}).map(_dumps)),
    "challenges": _challenges(),
    "bytes": st.binary(max_size=20_000),
    "json": JSON_VALUES.map(_dumps),
}
JUNK_BODIES = st.one_of(
    st.just(b""),
    RAW,
    JSON_VALUES.map(_dumps),
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),  # deep: RecursionError once
    st.integers(1, 200_000).map(lambda n: b'{"a":' * n),
    st.sampled_from([b"[NaN]", b'"\\ud800"', b'{"x": "\\udc00"}', b"\xff\xfe\x00", b"null"]),
)
JUNK_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "Content-Type",
            "Authorization",
            "X-Capability",
            "Range",
            "Epistula-Version",
            "Epistula-Timestamp",
            "Epistula-Signed-By",
            "Epistula-Content-Hash",
            "X-Junk",
            "Accept-Encoding",
            "Expect",
        ]
    ),
    st.one_of(
        TEXT.map(str.encode),
        RAW,
        st.sampled_from(
            [
                b"application/json; charset=klingon",
                b"application/json; charset=utf-16",
                b"Bearer \xff\xfe",
                "Bearer tökén".encode(),
                b"bytes=-0",
                b"bytes=5-1",
                b"bytes=0-99999999999999999999",
                b"URI:SN-CHK:" + b"a" * 300,
                b"2",
                b"99999999999999999999",
                b"100-continue",
            ]
        ),
    ),
    max_size=3,
).map(lambda headers: {k: v.replace(b"\r", b"").replace(b"\n", b"") for k, v in headers.items()})
# (no CR or LF: a header that ends early would frame a different request than the test sent)


@dataclass(frozen=True, repr=False)
class FuzzRequest:
    route: Route
    path: str
    query: tuple[tuple[bytes, bytes], ...]
    headers: tuple[tuple[str, bytes], ...]
    body: bytes
    auth: str  # "signed", "token", "none", "forged"
    signer: str  # a name in KEYS

    def __repr__(self) -> str:  # what hypothesis prints for a failing example: short
        body = f"{self.body[:120]!r}{'...' if len(self.body) > 120 else ''} ({len(self.body)} B)"
        return (
            f"FuzzRequest({self.route.method} {self.target()[:300]!r}, auth={self.auth}, "
            f"signer={self.signer}, headers={self.headers!r:.300}, body={body})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's printer
        printer.text(repr(self))

    def target(self) -> str:
        if not self.query:
            return self.path
        pairs = "&".join(
            quote_from_bytes(k, safe="") + "=" + quote_from_bytes(v, safe="") for k, v in self.query
        )
        return f"{self.path}?{pairs}"

    def head_headers(self, signed_for: str, keys: dict[str, Any], token: str) -> dict[str, Any]:
        """All headers, signing now (a signature is good for seconds)."""
        headers: dict[str, Any] = dict(self.headers)
        if self.auth in {"signed", "forged"}:
            if self.route.streamed == "id":
                declared = self.path.rsplit("/", 1)[-1]
            else:
                declared = "sha256:" + hashlib.sha256(self.body).hexdigest()
            try:
                signed = sign_headers(
                    keys[self.signer], body_hash=declared, signed_for=signed_for,
                    now_ms=wall_clock_ms(), declared=True,
                )  # fmt: skip
            except ValueError:  # a path that is no valid declared hash: send it unsigned
                signed = {}
            if self.auth == "forged" and signed:
                signed["Epistula-Request-Signature"] = "0x" + "ab" * 64
            headers.update(signed)
        elif self.auth == "token":
            headers["Authorization"] = f"Bearer {token}"
        headers["Content-Length"] = str(len(self.body))
        return headers


@st.composite
def requests(draw: st.DrawFn, routes: tuple[Route, ...], signers: tuple[str, ...]) -> FuzzRequest:
    route = draw(st.sampled_from(routes))
    path = route.path
    if "{ref}" in path:
        ref = draw(st.one_of(st.sampled_from(["kept", "x.bin", "a/b c", "0" * 32]), TEXT, RAW))
        ref_text = ref if isinstance(ref, str) else quote_from_bytes(ref, safe="/")
        path = path.replace("{ref}", quote_from_bytes(ref_text.encode(), safe="/%") or "x")
    if "{shard}" in path:
        shard = draw(
            st.one_of(HEX_IDS, TEXT.map(str.encode), RAW)
        )  # fmt: skip
        shard_bytes = shard.encode() if isinstance(shard, str) else shard
        path = path.replace("{shard}", quote_from_bytes(shard_bytes, safe="") or "x")
    if "{junk}" in path:
        path = "/" + quote_from_bytes(draw(RAW), safe="/")
    names = st.one_of(st.sampled_from(route.params or ("x",)).map(str.encode), RAW)
    query = draw(
        st.lists(
            st.tuples(names, QUERY_VALUES.map(lambda v: v if isinstance(v, bytes) else v.encode())),
            max_size=4,
        )
    )
    if route.body:
        body = draw(st.one_of(SCHEMAS[route.body], SCHEMAS[route.body], JUNK_BODIES))
    else:
        body = draw(st.one_of(st.just(b""), st.just(b""), JUNK_BODIES))
    return FuzzRequest(
        route=route,
        path=path,
        query=tuple(query),
        headers=tuple(draw(JUNK_HEADERS).items()),
        body=body,
        auth=draw(st.sampled_from(["signed", "signed", "signed", "token", "none", "forged"])),
        signer=draw(st.sampled_from(signers)),
    )
