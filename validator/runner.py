"""Assemble a validator from its settings and serve it (what ``subnet validator run`` does)."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from sqlalchemy.orm import sessionmaker

from chain.client import ChainClient
from erasure import ErasureParams
from protocol.db import make_engine, upgrade
from protocol.http import SHUTDOWN_GRACE_SECONDS, SigningClient
from protocol.memory import return_large_buffers_to_the_os
from protocol.wallet import load_hotkey
from validator.app import make_app
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
    gateway = Gateway(sessions, miners, upload_slots_per_user=settings.upload_slots_per_user)
    gateway.sync_users(settings.users)
    gateway.sync_tokens(settings.tokens)
    gateway.sync_miners(settings.miners)
    policy = ChallengePolicy.from_settings(settings)
    challenger = Challenger(sessions, miners, ChallengeLogStore(sessions, keypair), policy)
    chain_sync = None
    if settings.chain_url:
        chain_sync = ChainSync(
            ChainClient(settings.chain_url, keypair, http),
            gateway,
            challenger,
            keypair.ss58_address,
            metagraph_seconds=settings.metagraph_seconds,
            weights_seconds=settings.weights_seconds,
            disqualify_below=settings.disqualify_below,
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
        await http.close()
        engine.dispose()

    app.on_cleanup.append(close)
    log.info("validator starting", extra={"hotkey": keypair.ss58_address, "db": settings.db_url})
    return app


def serve(settings: ValidatorSettings) -> None:
    web.run_app(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
    )
