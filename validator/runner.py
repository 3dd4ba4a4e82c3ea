"""Assemble a validator from its settings and serve it (what ``subnet validator run`` does)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from sqlalchemy.orm import sessionmaker

from chain.client import Chain, ChainClient
from erasure import ErasureParams
from protocol.db import make_engine, upgrade
from protocol.http import SHUTDOWN_GRACE_SECONDS
from protocol.listen import check_free, explained
from protocol.memory import return_large_buffers_to_the_os
from protocol.signing import SigningClient
from protocol.wallet import load_hotkey
from validator.app import make_app
from validator.budget import TransferBudget
from validator.chain_sync import ChainSync
from validator.challenger import ChallengePolicy, Challenger
from validator.gateway import Gateway
from validator.log_store import ChallengeLogStore
from validator.miner_client import MinerClient
from validator.repair import Repairer
from validator.settings import ValidatorSettings
from validator.synthetic import SyntheticFiller, load_seed

log = logging.getLogger(__name__)


async def build_app(settings: ValidatorSettings) -> web.Application:
    return_large_buffers_to_the_os()
    keypair = load_hotkey(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url, "validator")
    engine = make_engine(settings.db_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=None)
    )
    miners = MinerClient(SigningClient(http, keypair))
    gateway = Gateway(
        sessions,
        miners,
        network_prefix=settings.placement_network_prefix,
        unproven_bytes=settings.placement_unproven_bytes,
        upload_slots_per_user=settings.upload_slots_per_user,
        budget=TransferBudget(*settings.transfer_budget),
    )
    gateway.sync_users(settings.users)
    gateway.sync_tokens(settings.tokens)
    gateway.sync_miners(settings.miners)
    policy = ChallengePolicy.from_settings(settings)
    closers: list[Callable[[], Awaitable[None]]] = []
    challenger = Challenger(sessions, miners, ChallengeLogStore(sessions, keypair), policy)
    gateway.downloader.reads = challenger.observe_read  # users' reads are evidence too
    chain_sync = None
    chain: Chain | None = None
    if settings.chain_url:
        chain = ChainClient(settings.chain_url, keypair, http)
    elif settings.network:
        from chain.subtensor import SubtensorChain  # noqa: PLC0415 - the SDK loads only here

        assert settings.netuid is not None  # the settings check it
        chain = subtensor = SubtensorChain(
            settings.network,
            settings.netuid,
            wallet_name=settings.wallet_name,
            wallet_hotkey=settings.wallet_hotkey,
            wallet_path=settings.wallet_path,
            confirm=(lambda _quote: True) if settings.yes else None,
        )
        closers.append(subtensor.close)
    if chain is not None:
        chain_sync = ChainSync(
            chain,
            gateway,
            challenger,
            keypair.ss58_address,
            metagraph_seconds=settings.metagraph_seconds,
            weights_seconds=settings.weights_seconds,
            disqualify_below=settings.disqualify_below,
            axon=settings.axon,
        )
    filler = None
    if settings.synthetic_share > 0:
        filler = SyntheticFiller(
            sessions,
            gateway.uploader,
            load_seed(settings.data_dir / "synthetic.seed"),
            share=settings.synthetic_share,
            object_size=settings.synthetic_object_size,
            params=ErasureParams(
                settings.k, settings.m, settings.segment_size, settings.leaf_size, settings.codec
            ),
        )
    repairer = Repairer(
        sessions,
        miners,
        gateway.candidates,
        threshold=settings.repair_threshold,
        unseen_after=settings.repair_unseen_after,
        max_segments=settings.repair_max_segments,
        network_prefix=settings.placement_network_prefix,
        reads=challenger.observe_read,
    )
    app = make_app(
        gateway,
        settings,
        keypair.ss58_address,
        challenger=challenger,
        chain_sync=chain_sync,
        filler=filler,
        repairer=repairer,
    )

    async def close(_app: web.Application) -> None:
        for closer in closers:
            await closer()
        await http.close()
        engine.dispose()

    if settings.s3_port is not None:
        from validator.s3.app import s3_server  # noqa: PLC0415 - botocore loads only if used

        app.cleanup_ctx.append(s3_server(gateway, settings))
    app.on_cleanup.append(close)
    log.info("validator starting", extra={"hotkey": keypair.ss58_address, "db": settings.db_url})
    return app


def serve(settings: ValidatorSettings) -> None:
    # Before the database is migrated; the S3 port is bound by its own server.
    check_free(settings.host, settings.port)
    if settings.s3_port is not None:
        check_free(settings.host, settings.s3_port, "--s3-port")
    with explained(settings.host, settings.port):
        web.run_app(
            build_app(settings),
            host=settings.host,
            port=settings.port,
            print=None,
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        )
