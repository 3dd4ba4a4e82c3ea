"""The erasure codec per upload: chosen with ?codec= (or the validator's default), recorded on
the object row and in the manifest, and used by the downloader and the repairer."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from alembic import command
from bittensor_wallet import Keypair
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from erasure import Capability, ErasureParams, Manifest, encode_segment_shards
from protocol.db import alembic_config, make_engine, upgrade
from protocol.settings import SettingsError, load_settings
from protocol.signing import SigningClient
from subnet.gateway_client import GatewayClient
from subnet.objects_cmd import upload as upload_command
from tests.validator.conftest import VALIDATOR, LiveMiner
from validator.app import make_app
from validator.downloads import Downloader
from validator.gateway import Gateway
from validator.miner_client import MinerClient
from validator.models import Placement, Shard, StoredObject
from validator.repair import RebuildError, Repairer, rebuild_shares
from validator.settings import ValidatorSettings
from validator.uploads import Uploader, UploadOptions

from .test_uploads import stream

ALICE = Keypair.create_from_uri("//CodecAlice")
Client = TestClient[Any, Any]
PARAMS = ErasureParams(k=4, m=6, segment_size=256 * 1024, leaf_size=4096, codec="isal")
DATA = random.Random(11).randbytes(700_001)  # 3 segments


async def make_api(
    aiohttp_client: Any,
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    **settings: Any,
) -> Client:
    config = ValidatorSettings(
        users=(f"alice={ALICE.ss58_address}",),
        miners=tuple(f"{m.key.ss58_address}@{m.server.host}:{m.server.port}" for m in live_miners),
        segment_size=256 * 1024,
        leaf_size=4096,
        **settings,
    )
    gateway = Gateway(sessions, miner_client)
    gateway.sync_users(config.users)
    gateway.sync_miners(config.miners)
    await gateway.refresh_miners()
    app = make_app(gateway, config, VALIDATOR.ss58_address, background=False)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def put(api: Client, name: str, data: bytes, **query: str) -> tuple[int, dict[str, Any]]:
    signer = SigningClient(api.session, ALICE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with signer.request_stream(
        "PUT", api.make_url("/v1/objects").with_query({"name": name, **query}),
        signed_for=VALIDATOR.ss58_address, content_hash=digest, body=data,
    ) as r:  # fmt: skip
        return r.status, await r.json()


def stored_codec(sessions: sessionmaker[Session], object_id: str) -> tuple[str, str]:
    """(the row's codec, the manifest's codec) of a committed object."""
    with sessions() as session:
        row = session.get(StoredObject, object_id)
        assert row is not None
        assert row.manifest_json is not None
        return row.codec, Manifest.from_json(row.manifest_json).params.codec


@pytest.mark.parametrize(("query", "default", "expected"), [
    ({}, "zfec", "zfec"),
    ({"codec": "isal"}, "zfec", "isal"),
    ({}, "isal", "isal"),
    ({"codec": "zfec"}, "isal", "zfec"),
])  # fmt: skip
async def test_the_upload_chooses_the_codec_and_the_object_reads_back(
    aiohttp_client: Any,
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    query: dict[str, str],
    default: str,
    expected: str,
) -> None:
    api = await make_api(aiohttp_client, sessions, miner_client, live_miners, codec=default)
    status, body = await put(api, "obj", DATA, **query)
    assert status == 201, body
    assert stored_codec(sessions, body["object_id"]) == (expected, expected)
    alice = SigningClient(api.session, ALICE)
    sign = {"signed_for": VALIDATOR.ss58_address}
    async with alice.request("GET", api.make_url("/v1/objects"), **sign) as r:
        assert [o["codec"] for o in (await r.json())["objects"]] == [expected]
    url = api.make_url(f"/v1/objects/{body['object_id']}")
    async with alice.request("GET", url, headers={"X-Capability": body["capability"]}, **sign) as r:
        assert (r.status, await r.read()) == (200, DATA)


@pytest.mark.parametrize("codec", ["rs", "ISAL", "", "zfec,isal"])
async def test_an_unknown_codec_is_a_400_that_names_the_choices(
    aiohttp_client: Any,
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    codec: str,
) -> None:
    api = await make_api(aiohttp_client, sessions, miner_client, live_miners)
    status, body = await put(api, "obj", b"data" * 1000, codec=codec)
    assert (status, body["error"]) == (400, "bad_codec")
    assert "zfec, isal" in body["message"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoredObject)) == 0


async def test_the_cli_client_sends_the_codec(
    aiohttp_client: Any,
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    tmp_path: Path,
) -> None:
    api = await make_api(aiohttp_client, sessions, miner_client, live_miners)
    client = GatewayClient(api.session, ALICE, str(api.make_url("")), tmp_path / "caps")
    await client.connect()
    source = tmp_path / "file.bin"
    source.write_bytes(DATA)
    reply = await client.upload(source, "via-client", codec="isal")
    assert stored_codec(sessions, reply["object_id"]) == ("isal", "isal")
    await client.download("via-client", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == DATA


def test_subnet_upload_takes_a_codec_flag() -> None:
    runner = CliRunner()
    assert "--codec [zfec|isal]" in runner.invoke(upload_command, ["--help"]).output
    refused = runner.invoke(upload_command, ["--codec", "rs", "."])
    assert refused.exit_code == 2
    assert "'rs' is not one of 'zfec', 'isal'" in refused.output


def test_the_validator_setting_defaults_to_zfec_and_is_checked() -> None:
    assert ValidatorSettings().codec == "zfec"
    assert (
        load_settings(
            ValidatorSettings, env_prefix="SUBNET_VALIDATOR", env={"SUBNET_VALIDATOR_CODEC": "isal"}
        ).codec
        == "isal"
    )
    with pytest.raises(SettingsError, match="codec"):
        load_settings(
            ValidatorSettings, env_prefix="SUBNET_VALIDATOR", env={"SUBNET_VALIDATOR_CODEC": "rs"}
        )


async def upload_isal(
    sessions: sessionmaker[Session], client: MinerClient, miners: list[LiveMiner], owner: int
) -> str:
    up = Uploader(sessions, client, lambda: [m.candidate for m in miners], rng=random.Random(1))
    result = await up.upload(owner, "obj", stream(DATA), UploadOptions(PARAMS))
    return result.capability


async def test_the_downloader_decodes_isal_from_check_shares(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    capability = await upload_isal(sessions, miner_client, live_miners, seeded)
    down = Downloader(sessions, miner_client)
    with sessions() as session:
        object_id = session.scalars(select(StoredObject.id)).one()
    plan = await asyncio.to_thread(down.plan, object_id)
    assert plan.manifest.params.codec == "isal"
    # Only shares 2..5 (two primaries, both check shares) are offered: isal must decode.
    narrowed = dataclasses.replace(
        plan, sources=tuple(tuple(s for s in seg if s.share >= 2) for seg in plan.sources)
    )
    key = Capability.parse(capability).key
    assert b"".join([c async for c in down.stream(narrowed, key)]) == DATA


async def test_the_repairer_rebuilds_isal_shares(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    capability = await upload_isal(sessions, miner_client, live_miners, seeded)
    # Lose a primary and a check share of every segment: the rebuild must decode with isal
    # (from 4 of the 6) and re-encode a check share with isal, or the ids would not match.
    with sessions.begin() as session:
        assert session.scalars(select(StoredObject.codec)).one() == "isal"
        for placement in session.scalars(
            select(Placement).join(Shard).where(Shard.share.in_([0, 5]))
        ):
            placement.state, placement.last_verdict = "lost", "wrong"
    fixer = Repairer(
        sessions,
        miner_client,
        lambda: [m.candidate for m in live_miners],
        retry_after=0,
        rng=random.Random(3),
    )
    report = await fixer.run_once()
    assert (report.segments_repaired, report.shards_rebuilt, report.segments_failed) == (3, 6, 0)
    down = Downloader(sessions, miner_client)
    with sessions() as session:
        object_id = session.scalars(select(StoredObject.id)).one()
    plan = await asyncio.to_thread(down.plan, object_id)
    # Read through the rebuilt check share 5 and the rebuilt primary 0.
    narrowed = dataclasses.replace(
        plan,
        sources=tuple(tuple(s for s in seg if s.share in {0, 3, 4, 5}) for seg in plan.sources),
    )
    key = Capability.parse(capability).key
    assert b"".join([c async for c in down.stream(narrowed, key)]) == DATA


@pytest.mark.parametrize("codec", ["zfec", "isal"])
def test_rebuild_shares_uses_the_codec_it_is_given(codec: str) -> None:
    params = dataclasses.replace(PARAMS, codec=codec)
    segment = encode_segment_shards(params, 0, DATA[: params.segment_size], False, None)
    ids = [s.id for s in segment.shards]
    have = {s.share: s.data for s in segment.shards if s.share >= 2}
    common = {"k": 4, "m": 6, "size": segment.info.size, "leaf_size": params.leaf_size}
    wanted = {0: ids[0], 1: ids[1]}
    rebuilt = rebuild_shares(have, wanted=wanted, codec=codec, **common)
    assert {n: b"".join(p) for n, p in rebuilt.items()} == {0: segment.shards[0].data,
                                                           1: segment.shards[1].data}  # fmt: skip
    other = "zfec" if codec == "isal" else "isal"
    with pytest.raises(RebuildError, match="share 0 rebuilt to"):
        rebuild_shares(have, wanted=wanted, codec=other, **common)


def test_objects_stored_before_the_codec_column_are_zfec(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'validator.sqlite'}"
    command.upgrade(alembic_config(url, "validator"), "0002_validator")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO users (id, name, created_at) VALUES (1, 'old', :now)"),
                {"now": datetime.now(UTC)},
            )
            connection.execute(
                text(
                    "INSERT INTO objects (id, owner_id, name, state, size, k, m, segment_size, "
                    "leaf_size, encryption, created_at) VALUES ('o1', 1, 'old', 'committed', 0, "
                    "4, 8, 1024, 64, 'none', :now)"
                ),
                {"now": datetime.now(UTC)},
            )
        upgrade(url, "validator")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT codec FROM objects")).scalar_one() == "zfec"
        command.downgrade(alembic_config(url, "validator"), "0002_validator")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT name FROM objects")).scalar_one() == "old"
    finally:
        engine.dispose()
