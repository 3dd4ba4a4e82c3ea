"""Capability strings: they round-trip, match the object, and refuse anything malformed."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erasure import Capability, CapabilityError, ErasureError, ErasureParams, ObjectEncoder
from tests.erasure.helpers import chunked, payload

VERIFIER = bytes(range(100, 132))
KEY = bytes(range(32))


def b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


@st.composite
def capabilities(draw: st.DrawFn) -> Capability:
    m = draw(st.integers(1, 256))
    return Capability(
        verifier=draw(st.binary(min_size=32, max_size=32)),
        k=draw(st.integers(1, m)),
        m=m,
        size=draw(st.integers(0, 2**64)),
        key=draw(st.none() | st.binary(min_size=32, max_size=32)),
    )


@settings(max_examples=200, deadline=None)
@given(capabilities())
def test_round_trip(cap: Capability) -> None:
    text = str(cap)
    assert Capability.parse(text) == cap
    assert Capability.parse(f"  {text}\n") == cap  # surrounding whitespace is not part of it
    assert text == text.strip()
    assert "=" not in text
    fields = text.split(":")
    assert all(field == field.lower() for field in fields[2:])  # lowercase base32
    if cap.key is None:
        assert fields[:2] == ["URI", "SN-CHK-Verifier"]
        assert len(fields) == 6
    else:
        assert fields[:2] == ["URI", "SN-CHK"]
        assert len(fields) == 7
        assert fields[2] == b32(cap.key)
    assert fields[-4:] == [b32(cap.verifier), str(cap.k), str(cap.m), str(cap.size)]
    reader_less = cap.verify_only()
    assert reader_less.key is None
    assert (reader_less.verifier, reader_less.k, reader_less.m, reader_less.size) == (
        cap.verifier,
        cap.k,
        cap.m,
        cap.size,
    )
    assert Capability.parse(str(reader_less)) == reader_less
    assert str(reader_less).startswith("URI:SN-CHK-Verifier:")


@settings(max_examples=20, deadline=None)
@given(
    st.integers(0, 5000),
    st.booleans(),
    st.integers(1, 6).flatmap(lambda m: st.tuples(st.integers(1, m), st.just(m))),
)
def test_encoder_capability_matches_manifest(size: int, encrypt: bool, km: tuple[int, int]) -> None:
    k, m = km
    encoder = ObjectEncoder(ErasureParams(k, m, 1024, 64), encrypt=encrypt)
    with pytest.raises(ErasureError):
        encoder.capability()  # not before the object is encoded
    for _ in encoder.encode(chunked(payload(size), [999])):
        pass
    cap = encoder.capability()
    manifest = encoder.manifest()
    assert cap.verifier == manifest.verifier_hash()
    assert (cap.k, cap.m, cap.size) == (k, m, size) == (manifest.params.k, manifest.params.m,
                                                        manifest.size)  # fmt: skip
    assert cap.key == encoder.key
    assert (cap.key is not None) == encrypt
    assert Capability.parse(str(cap)) == cap


def test_capability_string_by_hand() -> None:
    cap = Capability(verifier=VERIFIER, k=3, m=5, size=12345, key=KEY)
    assert str(cap) == f"URI:SN-CHK:{b32(KEY)}:{b32(VERIFIER)}:3:5:12345"
    assert str(cap.verify_only()) == f"URI:SN-CHK-Verifier:{b32(VERIFIER)}:3:5:12345"
    assert len(b32(KEY)) == 52  # 32 bytes, unpadded


GOOD_READ = f"URI:SN-CHK:{b32(KEY)}:{b32(VERIFIER)}:3:5:100"
GOOD_VERIFY = f"URI:SN-CHK-Verifier:{b32(VERIFIER)}:3:5:100"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "URI",
        "hello",
        # Wrong prefix.
        GOOD_READ.replace("URI:SN-CHK", "URI:CHK"),
        GOOD_READ.replace("URI:", "URL:"),
        GOOD_VERIFY.replace("SN-CHK-Verifier", "SN-CHK-Verify"),
        GOOD_READ.replace("SN-CHK", "sn-chk"),
        # Wrong number of fields, for each form.
        GOOD_READ + ":7",
        GOOD_READ.rsplit(":", 1)[0],
        GOOD_VERIFY + ":7",
        GOOD_VERIFY.rsplit(":", 1)[0],
        f"URI:SN-CHK:{b32(VERIFIER)}:3:5:100",  # read prefix without a key
        f"URI:SN-CHK-Verifier:{b32(KEY)}:{b32(VERIFIER)}:3:5:100",  # verify prefix with one
        # Not base32 (0, 1, 8, 9 and punctuation are outside the alphabet).
        GOOD_READ.replace(b32(KEY), "0" + b32(KEY)[1:]),
        GOOD_READ.replace(b32(KEY), "1" + b32(KEY)[1:]),
        GOOD_READ.replace(b32(VERIFIER), "8" + b32(VERIFIER)[1:]),
        GOOD_VERIFY.replace(b32(VERIFIER), b32(VERIFIER)[:-1] + "!"),
        GOOD_VERIFY.replace(b32(VERIFIER), b32(VERIFIER) + "a"),  # one character too many
        GOOD_VERIFY.replace(b32(VERIFIER), "é" * 52),
        # Wrong key or verifier length.
        GOOD_READ.replace(b32(KEY), b32(KEY[:31])),
        GOOD_READ.replace(b32(KEY), b32(KEY + b"!")),
        GOOD_READ.replace(b32(KEY), ""),
        GOOD_READ.replace(b32(VERIFIER), b32(VERIFIER[:16])),
        GOOD_VERIFY.replace(b32(VERIFIER), b32(VERIFIER * 2)),
        # Non-integer or out-of-range k, m, size.
        GOOD_READ.replace(":3:5:", ":three:5:"),
        GOOD_READ.replace(":3:5:", ":3.0:5:"),
        GOOD_READ.replace(":3:5:", "::5:"),
        GOOD_READ.replace(":3:5:", ":3:five:"),
        GOOD_READ.replace(":5:100", ":5:1e2"),
        GOOD_VERIFY.replace(":3:5:", ":0:5:"),
        GOOD_VERIFY.replace(":3:5:", ":6:5:"),
        GOOD_VERIFY.replace(":3:5:", ":3:257:"),
        GOOD_VERIFY.replace(":5:100", ":5:-1"),
    ],
)
def test_malformed_strings_are_refused(text: str) -> None:
    with pytest.raises(CapabilityError) as info:
        Capability.parse(text)
    assert isinstance(info.value, ValueError)


def test_the_good_strings_used_above_parse() -> None:
    assert Capability.parse(GOOD_READ) == Capability(VERIFIER, 3, 5, 100, KEY)
    assert Capability.parse(GOOD_VERIFY) == Capability(VERIFIER, 3, 5, 100)


@pytest.mark.parametrize(
    "fields",
    [
        {"verifier": VERIFIER[:31]},
        {"verifier": b""},
        {"key": KEY[:16]},
        {"key": b""},
        {"k": 0},
        {"k": 6},
        {"m": 257, "k": 1},
        {"size": -1},
    ],
)
def test_constructor_refuses_bad_fields(fields: dict[str, object]) -> None:
    base: dict[str, object] = {"verifier": VERIFIER, "k": 3, "m": 5, "size": 10, "key": KEY}
    with pytest.raises(CapabilityError):
        Capability(**{**base, **fields})  # type: ignore[arg-type]
