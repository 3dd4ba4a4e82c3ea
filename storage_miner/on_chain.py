"""The miner's place on the chain: registered, its axon announced, and the validators it serves.

:meth:`ChainPresence.run` (started and cancelled with the app) registers the hotkey and
serves the axon, then every ``metagraph_seconds`` reads the metagraph, which refreshes
:attr:`ChainPresence.policy` (the hotkeys holding a validator permit). Whenever the metagraph
does not show the miner at its axon (a chain that restarted empty, a UID lost to pruning)
it registers and announces again. While the chain is unreachable it retries with backoff
and keeps the last validators it knew.

The chain is any :class:`~chain.client.Chain`, opened by :meth:`run`: the embedded chain's
client (:func:`embedded_chain`) or subtensor's (``chain.subtensor``, with ``--network``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
from bittensor_wallet import Keypair

from chain.axon import announce
from chain.client import Chain, ChainClient, ChainRequestError, MetagraphPolicy
from chain.metagraph import Metagraph

log = logging.getLogger(__name__)

FIRST_RETRY = 0.5  # seconds; doubles per failure up to MAX_RETRY
MAX_RETRY = 30.0
REQUEST_TIMEOUT = 10.0


OpenChain = Callable[[], AbstractAsyncContextManager[Chain]]


def embedded_chain(url: str, keypair: Keypair) -> OpenChain:
    """Opens the embedded chain's client at ``url``, signing as ``keypair``."""

    @contextlib.asynccontextmanager
    async def open_chain() -> AsyncIterator[Chain]:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            yield ChainClient(url, keypair, session)

    return open_chain


def subtensor_chain(
    network: str,
    netuid: int,
    wallet: tuple[str, str, Path],
    *,
    yes: bool,
) -> OpenChain:
    """Opens subtensor's client for ``netuid`` as the wallet ``(name, hotkey, path)``. With
    ``yes`` a hotkey that lost its UID is registered again (it costs TAO); else that is
    refused, with the cost, and logged until someone registers it."""

    def open_chain() -> AbstractAsyncContextManager[Chain]:
        from chain.subtensor import SubtensorChain  # noqa: PLC0415 - the SDK loads only here

        name, hotkey, path = wallet
        return SubtensorChain(
            network,
            netuid,
            wallet_name=name,
            wallet_hotkey=hotkey,
            wallet_path=path,
            confirm=(lambda _quote: True) if yes else None,
        )

    return open_chain


class ChainPresence:
    def __init__(
        self,
        open_chain: OpenChain,
        hotkey: str,
        host: str,
        port: int,
        metagraph_seconds: float,
        *,
        name: str,
    ) -> None:
        self.open_chain = open_chain
        self.hotkey = hotkey
        self.name = name  # the chain, for logs: its URL or network/netuid
        self.axon = (host, port)
        self.metagraph_seconds = metagraph_seconds
        self.policy = MetagraphPolicy(self, refresh_seconds=metagraph_seconds)
        self.uid: int | None = None
        self._chain: Chain | None = None

    @property
    def chain(self) -> Chain | None:
        """The chain :meth:`run` opened (None before): the dashboard reads earnings from it."""
        return self._chain

    async def metagraph(self) -> Metagraph:
        """The policy's source: the chain, through the client :meth:`run` opened."""
        if self._chain is None:
            raise RuntimeError("ChainPresence.run() has not started")
        return await self._chain.metagraph()

    async def run(self) -> None:
        async with self.open_chain() as chain:
            self._chain = chain
            retry = FIRST_RETRY
            while True:
                try:
                    await self._step(chain)
                except (aiohttp.ClientError, OSError, TimeoutError, ChainRequestError) as exc:
                    error = str(exc) or type(exc).__name__
                    log.warning(
                        "chain unreachable or refusing; retrying",
                        extra={"chain": self.name, "error": error, "retry_in": retry},
                    )
                except Exception:  # a malformed answer must not end the loop either
                    log.exception("reading the chain failed; retrying", extra={"chain": self.name})
                else:
                    retry = FIRST_RETRY
                    await asyncio.sleep(self.metagraph_seconds)
                    continue
                await asyncio.sleep(retry)
                retry = min(retry * 2, MAX_RETRY)

    async def _step(self, chain: Chain) -> None:
        graph = await self.policy.refresh()
        self.uid, announced = await announce(chain, graph, self.hotkey, self.axon)
        if not announced:
            return
        host, port = self.axon
        log.info(
            "registered on the chain and announced the axon",
            extra={"chain": self.name, "uid": self.uid, "axon": f"{host}:{port}"},
        )
        # Read again so validators that registered meanwhile are allowed without a wait.
        await self.policy.refresh()
