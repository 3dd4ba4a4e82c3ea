"""Assemble a miner from its settings and serve it (what ``subnet miner run`` does)."""

from __future__ import annotations

import logging

from aiohttp import web

from protocol.http import SHUTDOWN_GRACE_SECONDS
from protocol.listen import check_free, explained
from protocol.memory import return_large_buffers_to_the_os
from protocol.wallet import load_hotkey
from storage_miner.app import make_app
from storage_miner.fs_store import FsShardStore
from storage_miner.index import ShardIndex
from storage_miner.s3_store import S3Location, S3ShardStore
from storage_miner.service import MinerService, capacity_warning
from storage_miner.settings import MinerSettings
from storage_miner.store import ShardStore

log = logging.getLogger(__name__)


def build_store(settings: MinerSettings) -> ShardStore:
    if settings.backend == "s3":
        location = S3Location(
            endpoint=settings.s3_endpoint,
            bucket=settings.s3_bucket,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
        )
        return S3ShardStore(location, staging=settings.data_dir, reach_now=False)
    return FsShardStore(settings.data_dir)


def build_service(settings: MinerSettings) -> MinerService:
    return_large_buffers_to_the_os()
    keypair = load_hotkey(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    index = ShardIndex(settings.data_dir / "index.sqlite")
    return MinerService(settings, keypair, build_store(settings), index)


def serve(settings: MinerSettings) -> None:
    check_free(settings.host, settings.port)  # before the store and the chain are touched
    service = build_service(settings)
    warning = capacity_warning(settings, service.index.used_bytes)
    if warning:
        log.warning(warning, extra={"capacity": settings.capacity})
    log.info(
        "miner starting",
        extra={
            "hotkey": service.hotkey,
            "host": settings.host,
            "port": settings.port,
            "chain": settings.chain_url or settings.network or None,
        },
    )
    with explained(settings.host, settings.port):
        web.run_app(
            make_app(service),
            host=settings.host,
            port=settings.port,
            print=None,
            handle_signals=True,
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        )
