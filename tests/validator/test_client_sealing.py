"""Objects sealed on the user's machine: the validator codes, stores and serves ciphertext
it cannot read and never holds the key; bad framing is refused before anything is stored;
a lost reply loses nothing. Real validator app, real miner servers, the real client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bittensor_wallet import Keypair
from blake3 import blake3
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from erasure import Capability, Manifest, encrypt_segment, new_key, seal_segments, sealed_size
from erasure.crypto import TAG_SIZE
from protocol.epistula import CONTENT_HASHES, sign_headers, trailer
from protocol.signing import SigningClient, wall_clock_ms
from subnet.capability_store import CapabilityStore
from subnet.gateway_client import CHUNK, GatewayClient, GatewayError, _sealed_chunks, sealed_digest
from tests.validator.conftest import VALIDATOR
from tests.validator.test_app import ALICE, BOB, Client, api, upload
from validator.models import StoredObject

__all__ = ["api"]  # the fixture, used by name
SEGMENT = 256 * 1024


async def client_for(api: Client, who: Any, caps: Path) -> GatewayClient:
    client = GatewayClient(api.session, who, str(api.make_url("")), caps)
    await client.connect()
    return client


def committed(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(StoredObject)) or 0)


async def put_sealed(
    api: Client, body: bytes, *, size: int, segment_size: int = SEGMENT, name: str = "x",
    **extra: str,
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    query = {"seal": "client", "size": str(size), "segment_size": str(segment_size), **extra}
    return await upload(api, ALICE, name, body, **query)


async def test_round_trip_the_validator_never_sees_the_key(
    api: Client, tmp_path: Path, sessions: sessionmaker[Session], db_url: str
) -> None:
    data = random.Random(2).randbytes(3 * SEGMENT + 1234)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    alice = await client_for(api, ALICE, tmp_path / "caps")
    reply = await alice.upload(source, "sealed/a.bin")
    cap = Capability.parse(reply["capability"])
    assert cap.key is not None and reply["sealed_by"] == "client"
    assert alice.caps.pending() == []  # completed: the key is a capability now
    assert alice.caps.find("sealed/a.bin") == reply["capability"]
    with sessions() as session:
        row = session.get(StoredObject, reply["object_id"])
        assert row is not None and row.manifest_json is not None
        assert (row.key, row.sealed_by, row.encryption) == (None, "client", "aes-256-gcm")
        manifest = Manifest.from_json(row.manifest_json)
        assert (manifest.sealer, manifest.size, manifest.version) == ("client", len(data), 2)
        assert row.content_hash == sealed_digest(source, cap.key, SEGMENT)[0]
        assert row.content_hash.startswith("blake3:")  # what the CLI signs now
    if db_url.startswith("sqlite:///"):
        stored = Path(db_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in stored.parent.glob(stored.name + "*"))
        b32 = base64.b32encode(cap.key).decode().rstrip("=").lower().encode()
        for form in (cap.key, cap.key.hex().encode(), b32):
            assert form not in raw
    listed = {o["name"]: o for o in await alice.list()}["sealed/a.bin"]
    assert (listed["sealed_by"], listed["size"], listed["verifier"]) == (
        "client", len(data), cap.verifier.hex()
    )  # fmt: skip
    # Listed by its algorithm's name; no sha256 is claimed for it.
    assert (listed["content_hash"], listed["content_sha256"]) == (row.content_hash, None)
    await alice.download("sealed/a.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data
    # Bob, another user, reads it from the capability alone (a capability can be shared).
    bob = await client_for(api, BOB, tmp_path / "bob-caps")
    await bob.download(None, tmp_path / "bob.bin", capability=reply["capability"])
    assert (tmp_path / "bob.bin").read_bytes() == data
    # Without the capability the validator serves only ciphertext, and the client says so.
    with pytest.raises(GatewayError) as caught:
        await bob.download(reply["object_id"], tmp_path / "no.bin")
    assert caught.value.code == "not_yours"
    # Even with Alice's capabilities on his machine, Bob reads by name or id only his own
    # objects; the capability itself (--capability) is what grants a shared read.
    same_machine = await client_for(api, BOB, tmp_path / "caps")
    with pytest.raises(GatewayError) as caught:
        await same_machine.download(reply["object_id"], tmp_path / "no.bin")
    assert caught.value.code == "not_yours"
    other = await client_for(api, ALICE, tmp_path / "empty-caps")
    with pytest.raises(GatewayError) as caught:
        await other.download("sealed/a.bin", tmp_path / "no.bin")
    assert caught.value.code == "key_needed" and "--capability" in caught.value.message
    assert not (tmp_path / "no.bin").exists()


async def test_validator_sealing_and_none_still_work(api: Client, tmp_path: Path) -> None:
    alice = await client_for(api, ALICE, tmp_path / "caps")
    for seal in ("validator", "none"):
        source = tmp_path / f"{seal}.bin"
        source.write_bytes(random.Random(seal).randbytes(SEGMENT + 7))
        reply = await alice.upload(source, seal, seal=seal)
        assert reply["sealed_by"] == seal
        assert (Capability.parse(reply["capability"]).key is None) == (seal == "none")
        await alice.download(seal, tmp_path / f"{seal}.out")
        assert (tmp_path / f"{seal}.out").read_bytes() == source.read_bytes()


@pytest.mark.parametrize(
    ("size", "length", "segment", "code"),
    [
        (3 * SEGMENT + 5, 3 * SEGMENT + 5, SEGMENT, "bad_sealed_length"),  # no tags at all
        (3 * SEGMENT + 5, 3 * (SEGMENT + TAG_SIZE), SEGMENT, "bad_sealed_length"),  # cut short
        (2 * SEGMENT, sealed_size(2 * SEGMENT, SEGMENT) + 1, SEGMENT, "bad_sealed_length"),
        (100, sealed_size(100, 4096), 4096, "bad_segment_size"),
    ],
)
async def test_wrong_framing_is_refused_and_nothing_committed(
    api: Client, sessions: sessionmaker[Session], size: int, length: int, segment: int, code: str
) -> None:
    status, body = await put_sealed(api, bytes(length), size=size, segment_size=segment)
    assert (status, body["error"]) == (400, code), body
    assert committed(sessions) == 0


async def test_bad_sealed_queries_are_named(api: Client, sessions: sessionmaker[Session]) -> None:
    status, body = await upload(api, ALICE, "x", bytes(40), seal="client")
    assert (status, body["error"]) == (400, "bad_query") and "size" in body["message"]
    status, body = await put_sealed(api, bytes(sealed_size(10, SEGMENT)), size=10, keep_key="1")
    assert (status, body["error"]) == (400, "bad_query")
    status, body = await upload(api, ALICE, "x", b"abc", seal="maybe")
    assert (status, body["error"]) == (400, "bad_seal")
    status, body = await upload(api, ALICE, "x", b"abc", seal="none", encrypt="0")
    assert (status, body["error"]) == (400, "bad_query")
    assert committed(sessions) == 0


async def _download_forged(
    api: Client, tmp_path: Path, key: bytes, body: bytes, size: int, name: str
) -> GatewayError:
    """Store ``body`` as sealed by the client, then download it with the key into
    ``tmp_path/<name>.bin``: the error the reader raised."""
    status, reply = await put_sealed(api, body, size=size, name=name)
    assert status == 201, reply
    verify_only = Capability.parse(reply["capability"])
    cap = Capability(verify_only.verifier, verify_only.k, verify_only.m, size, key)
    alice = await client_for(api, ALICE, tmp_path / "caps")
    with pytest.raises(GatewayError) as caught:
        await alice.download(None, tmp_path / f"{name}.bin", capability=str(cap))
    return caught.value


async def test_a_forged_last_segment_flag_fails_on_the_reader(api: Client, tmp_path: Path) -> None:
    """The flag is inside the AEAD, so the validator (no key) cannot see it; a stream of the
    right length whose segment 0 was sealed as the last is stored, and the capability's
    holder is refused at the first segment: nothing of it is written."""
    key = new_key()
    data = random.Random(5).randbytes(SEGMENT + 100)
    body = encrypt_segment(key, 0, True, data[:SEGMENT]) + encrypt_segment(
        key, 1, True, data[SEGMENT:]
    )
    caught = await _download_forged(api, tmp_path, key, body, len(data), "forged")
    assert caught.code == "bad_ciphertext" and "segment 0" in caught.message
    assert not (tmp_path / "forged.bin").exists()


async def test_a_forged_middle_segment_fails_with_nothing_written(
    api: Client, tmp_path: Path
) -> None:
    """A segment past the first that does not open (here segment 1, sealed under segment
    2's number) ends the download at that segment, and no file appears, though segment 0
    was opened and written."""
    key = new_key()
    data = random.Random(6).randbytes(2 * SEGMENT + 100)
    body = (
        encrypt_segment(key, 0, False, data[:SEGMENT])
        + encrypt_segment(key, 2, False, data[SEGMENT : 2 * SEGMENT])
        + encrypt_segment(key, 2, True, data[2 * SEGMENT :])
    )
    caught = await _download_forged(api, tmp_path, key, body, len(data), "middle")
    assert caught.code == "bad_ciphertext" and "segment 1" in caught.message
    assert not (tmp_path / "middle.bin").exists()
    assert await asyncio.to_thread(lambda: sorted(tmp_path.glob(".middle*"))) == []


async def test_a_capability_for_another_object_is_refused(api: Client, tmp_path: Path) -> None:
    alice = await client_for(api, ALICE, tmp_path / "caps")
    for name in ("one", "two"):
        (tmp_path / name).write_bytes(name.encode() * 1000)
    one = await alice.upload(tmp_path / "one", "one")
    await alice.upload(tmp_path / "two", "two")
    with pytest.raises(GatewayError) as caught:
        await alice.download("two", tmp_path / "out", capability=one["capability"])
    assert caught.value.code == "wrong_capability"
    forged = Capability.parse(one["capability"])
    unknown = Capability(bytes(32), forged.k, forged.m, forged.size, forged.key)
    with pytest.raises(GatewayError) as caught:
        await alice.download(None, tmp_path / "out", capability=str(unknown))
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    # A validator-sealed object read with another object's key: 403 from the validator.
    (tmp_path / "three").write_bytes(b"3" * 5000)
    three = await alice.upload(tmp_path / "three", "three", seal="validator")
    three_cap = Capability.parse(three["capability"])
    signer = SigningClient(api.session, ALICE)
    async with signer.request(
        "GET", api.make_url(f"/v1/shared/{three_cap.verifier.hex()}"),
        signed_for=VALIDATOR.ss58_address, headers={"X-Capability": one["capability"]},
    ) as r:  # fmt: skip
        assert (r.status, (await r.json())["error"]) == (403, "wrong_capability")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
async def test_a_lost_reply_is_recovered_by_a_rerun(
    api: Client, tmp_path: Path, sessions: sessionmaker[Session], algorithm: str
) -> None:
    """The validator committed, the client never heard: the pending key, written before the
    first byte, becomes the capability on the next run, without sending the file again.
    Also for an upload hashed with sha256 (a client from before BLAKE3): the hash names its
    algorithm all the way, so the re-run compares like with like."""
    data = random.Random(9).randbytes(2 * SEGMENT + 9)
    source = tmp_path / "lost.bin"
    source.write_bytes(data)
    alice = await client_for(api, ALICE, tmp_path / "caps")
    key, size = new_key(), len(data)
    attempt = alice.caps.begin("lost.bin", key, "", size, SEGMENT)  # as upload() does
    query = {"name": "lost.bin", "seal": "client", "size": str(size), "segment_size": str(SEGMENT)}
    digest = CONTENT_HASHES[algorithm]()
    body = alice._sealed_body(source, key, size, attempt, digest, lambda _n: None)
    await alice._put(query, sealed_size(size, SEGMENT), body, digest)  # its reply "lost"
    assert alice.caps.find("lost.bin") is None and len(alice.caps.pending()) == 1
    listed = {o["name"]: o for o in await alice.list()}
    assert listed["lost.bin"]["content_hash"] == f"{algorithm}:{digest.hexdigest()}"
    done = await alice.put(source, "lost.bin", listed)
    assert done.status == "recovered"
    assert alice.caps.pending() == []
    await alice.download("lost.bin", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data
    again = await alice.put(source, "lost.bin", {o["name"]: o for o in await alice.list()})
    assert again.status == "present"
    assert committed(sessions) == 1


async def test_a_changed_file_is_refused_or_replaced(api: Client, tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"old" * 10_000)
    alice = await client_for(api, ALICE, tmp_path / "caps")
    first = await alice.put(source, "f.bin", {})
    assert first.status == "stored"
    source.write_bytes(b"new" * 10_000)  # same size, other bytes
    listed = {o["name"]: o for o in await alice.list()}
    with pytest.raises(GatewayError) as caught:
        await alice.put(source, "f.bin", listed)
    assert caught.value.code == "changed" and "--overwrite" in caught.value.message
    replaced = await alice.put(source, "f.bin", listed, overwrite=True)
    assert replaced.status == "replaced" and replaced.object_id != first.object_id
    await alice.download("f.bin", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"new" * 10_000
    assert alice.caps.find(first.object_id) is None


def test_a_version_1_store_is_read(tmp_path: Path) -> None:
    cap = "URI:SN-CHK-Verifier:" + "a" * 52 + ":1:2:3"
    (tmp_path / "v.json").write_text(json.dumps({"oid": cap, "name:file": cap}))
    store = CapabilityStore(tmp_path, "v")
    assert store.find("file") == cap and store.find("oid") == cap
    store.forget("oid")
    assert store.find("file") is None
    assert json.loads((tmp_path / "v.json").read_text())["version"] == 2


def test_the_digest_is_of_the_sealed_stream(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(SEGMENT + 3)
    (tmp_path / "d").write_bytes(data)
    key = new_key()
    sealed = encrypt_segment(key, 0, False, data[:SEGMENT]) + encrypt_segment(
        key, 1, True, data[SEGMENT:]
    )
    assert sealed_digest(tmp_path / "d", key, SEGMENT) == (
        "blake3:" + blake3(sealed).hexdigest(), len(data)
    )  # fmt: skip
    assert sealed_digest(tmp_path / "d", key, SEGMENT, "sha256") == (
        "sha256:" + hashlib.sha256(sealed).hexdigest(), len(data)
    )  # fmt: skip


def test_a_pending_attempt_from_before_blake3_reads_as_sha256(tmp_path: Path) -> None:
    """A store written when pending attempts kept a bare hex sha256 is read, not lost: its
    hash is named, so a re-run can still match it to the object the validator lists."""
    store = CapabilityStore(tmp_path, "v")
    attempt = store.begin("old.bin", new_key(), "", 5, SEGMENT)
    raw = json.loads((tmp_path / "v.json").read_text())
    entry = raw["pending"][attempt]
    del entry["content_hash"]
    entry["sha256"] = "ab" * 32
    (tmp_path / "v.json").write_text(json.dumps(raw))
    [pending] = store.pending("old.bin")
    assert pending.content_hash == "sha256:" + "ab" * 32
    store.record_hash(attempt, "blake3:" + "cd" * 32)
    assert store.pending("old.bin")[0].content_hash == "blake3:" + "cd" * 32


@pytest.mark.parametrize("segments", [0, 1, 2, 3])
@pytest.mark.parametrize("tail", [-1, 0, 1])
async def test_the_sending_pass_sends_and_hashes_what_seal_segments_makes(
    tmp_path: Path, segments: int, tail: int
) -> None:
    """The sending pass and the hashing pass of a re-run (sealed_digest) read the file
    their own way (one read per segment, reused buffers): the bytes must be
    seal_segments' exactly, and the hashes theirs."""
    size = max(0, segments * SEGMENT + tail)
    data = random.Random(size).randbytes(size)
    (tmp_path / "d").write_bytes(data)
    key = new_key()
    expected = b"".join(seal_segments(key, [data], SEGMENT))
    assert sealed_digest(tmp_path / "d", key, SEGMENT) == (
        "blake3:" + blake3(expected).hexdigest(), size
    )  # fmt: skip
    counted: list[int] = []
    digest = blake3()
    sent = [
        bytes(c)
        async for c in _sealed_chunks(tmp_path / "d", key, SEGMENT, size, counted.append, digest)
    ]
    assert b"".join(sent) == expected and sum(counted) == size
    assert digest.hexdigest() == blake3(expected).hexdigest()


async def test_a_sent_segment_stays_intact_while_the_next_one_is_sent(tmp_path: Path) -> None:
    """The sending pass seals into buffers it reuses, one segment ahead of the network, and
    the transport may still hold views of a segment's last chunk while the next segment
    goes out: every view of a segment must still read as sealed throughout the segment
    after it, however far the sealing ahead has got (two buffers in turn fail this)."""
    size = 5 * SEGMENT + 7
    data = random.Random(9).randbytes(size)
    (tmp_path / "d").write_bytes(data)
    key = new_key()
    expected = list(seal_segments(key, [data], SEGMENT))
    starts = [sum(map(len, expected[:i])) for i in range(len(expected))]
    views: list[list[memoryview]] = [[] for _ in expected]
    offset = 0
    async for chunk in _sealed_chunks(
        tmp_path / "d", key, SEGMENT, size, lambda _n: None, blake3()
    ):
        segment = max(i for i, start in enumerate(starts) if start <= offset)
        views[segment].append(chunk)
        offset += len(chunk)
        await asyncio.sleep(0.02)  # the next segment's sealing, in its thread, gets ahead
        if segment:
            assert b"".join(views[segment - 1]) == expected[segment - 1], segment
    assert offset == sum(map(len, expected))


# --- the trailer: the body's hash and its signature at its end ---------------------------------


async def put_trailed(
    api: Client, signer: Keypair, name: str, body: bytes, end: Callable[[dict[str, str]], bytes],
    algorithm: str = "blake3", **query: str,
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """PUT ``body`` then ``end(headers)``, under headers that declare a trailer."""
    headers = sign_headers(
        signer, body_hash=f"{algorithm}:trailer", signed_for=VALIDATOR.ss58_address,
        now_ms=wall_clock_ms(), declared=True,
    )  # fmt: skip
    url = api.make_url("/v1/objects").with_query({"name": name, "seal": "none", **query})
    async with api.session.put(url, data=body + end(headers), headers=headers) as r:
        return r.status, await r.json()


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
async def test_a_trailed_upload_is_stored_under_the_hash_its_trailer_signs(
    api: Client, sessions: sessionmaker[Session], tmp_path: Path, algorithm: str
) -> None:
    data = random.Random(5).randbytes(3 * SEGMENT + 7)
    hasher = CONTENT_HASHES[algorithm]()
    hasher.update(data)
    digest = hasher.digest()
    status, reply = await put_trailed(
        api, ALICE, "t.bin", data, lambda h: trailer(ALICE, digest, h), algorithm
    )
    assert status == 201, reply
    with sessions() as session:
        row = session.get(StoredObject, reply["object_id"])
        assert row is not None and row.content_hash == f"{algorithm}:{digest.hex()}"
    alice = await client_for(api, ALICE, tmp_path / "caps")
    await alice.download(reply["object_id"], tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data


@pytest.mark.parametrize(
    ("forge", "status", "code"),
    [
        ("changed_bytes", 401, "body_mismatch"),  # the trailer is of the bytes as signed
        ("rehashed", 401, "bad_signature"),  # hash follows the changed bytes; signature can't
        ("other_signer", 401, "bad_signature"),
        ("no_trailer", 400, "bad_upload"),  # fewer bytes than a trailer
    ],
)
async def test_a_forged_trailer_commits_nothing_and_frees_the_name(
    api: Client, sessions: sessionmaker[Session], forge: str, status: int, code: str
) -> None:
    """Every segment is coded and pushed before the trailer arrives: a body the trailer does
    not prove is refused at the end, its shards dropped, and the name is free again."""
    data = random.Random(6).randbytes(2 * SEGMENT + 3)
    sent, digest = data, blake3(data).digest()
    mallory = Keypair.create_from_uri("//Mallory")
    changed = bytes([data[0] ^ 1]) + data[1:]
    ends: dict[str, Callable[[dict[str, str]], bytes]] = {
        "changed_bytes": lambda h: trailer(ALICE, digest, h),
        "rehashed": lambda h: blake3(changed).digest() + trailer(ALICE, digest, h)[32:],
        "other_signer": lambda h: trailer(mallory, digest, h),
        "no_trailer": lambda h: b"",
    }
    if forge in {"changed_bytes", "rehashed"}:
        sent = changed
    if forge == "no_trailer":
        sent = data[:50]
    got = await put_trailed(api, ALICE, "forged.bin", sent, ends[forge])
    assert (got[0], got[1]["error"]) == (status, code), got
    assert committed(sessions) == 0
    again = await put_trailed(api, ALICE, "forged.bin", data, lambda h: trailer(ALICE, digest, h))
    assert again[0] == 201, again


async def test_a_file_that_changes_while_it_is_sent_is_refused_and_nothing_commits(
    api: Client, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """The length is read before the first byte and the hash only at the end: a file that
    grows or shrinks meanwhile must not be stored in part, nor under a hash of other bytes."""
    alice = await client_for(api, ALICE, tmp_path / "caps")
    for seal in ("client", "none"):
        for change in (b"more", b""):
            source = tmp_path / f"moving-{seal}-{len(change)}.bin"
            source.write_bytes(random.Random(7).randbytes(3 * max(SEGMENT, CHUNK)))

            def moved(_n: int, source: Path = source, change: bytes = change) -> None:
                if change:
                    with source.open("ab") as out:
                        out.write(change)
                else:
                    with source.open("r+b") as out:
                        out.truncate(SEGMENT)

            with pytest.raises(GatewayError) as caught:
                await alice.upload(source, source.name, seal=seal, on_bytes=moved)
            assert caught.value.code == "file_changed", caught.value
            assert source.name in caught.value.message
    assert alice.caps.pending() == []
    assert await alice.list() == []
    # Nothing committed. (A row may stay pending a while: a body that failed before its
    # first byte leaves aiohttp's connection open, and the validator waits out its stall
    # window before it abandons the upload.)
    with sessions() as session:
        states = session.scalars(select(StoredObject.state)).all()
    assert "committed" not in states
