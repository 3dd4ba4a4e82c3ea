"""Assemble the local chain from its settings and serve it (what ``subnet chain run`` does)."""

from __future__ import annotations

import logging

from aiohttp import web

from chain.app import make_app
from chain.db import make_engine, upgrade
from chain.genesis import load_genesis
from chain.service import ChainService
from chain.settings import DEFAULT_BLOCK_INTERVAL, ChainSettings
from chain.state import ChainError, LocalChain
from protocol.http import SHUTDOWN_GRACE_SECONDS
from protocol.listen import check_free, explained

log = logging.getLogger(__name__)


def build_service(settings: ChainSettings) -> ChainService:
    """Migrate the database, write genesis on first start, and wrap the chain."""
    genesis = load_genesis(settings.genesis) if settings.genesis is not None else None
    upgrade(settings.url)
    chain = LocalChain(make_engine(settings.url), settings.params())
    if genesis is not None and chain.initialise(genesis):
        log.info("genesis written", extra={"owner": genesis.owner_hotkey, "tempo": genesis.tempo})
    try:
        chain.block()
    except ChainError:
        chain.engine.dispose()
        raise ChainError(
            f"{settings.url} holds no chain yet: start it once with --genesis FILE"
        ) from None
    interval = settings.block_interval
    if interval is None:
        interval = genesis.block_interval if genesis is not None else DEFAULT_BLOCK_INTERVAL
    return ChainService(chain, interval)


def serve(settings: ChainSettings) -> None:
    check_free(settings.host, settings.port)  # before the database is touched
    service = build_service(settings)
    log.info(
        "chain starting",
        extra={
            "host": settings.host,
            "port": settings.port,
            "block_interval": service.block_interval,
        },
    )
    try:
        with explained(settings.host, settings.port):
            web.run_app(
                make_app(service, signature_window_ms=settings.signature_window_ms),
                host=settings.host,
                port=settings.port,
                print=None,
                handle_signals=True,
                shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
            )
    finally:
        service.close()
