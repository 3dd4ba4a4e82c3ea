"""The miner's place on the chain: registered, its axon announced, and the validators it serves.

:meth:`ChainPresence.run` (started and cancelled with the app) registers the hotkey and
serves the axon, then every ``metagraph_seconds`` reads the metagraph, which refreshes
:attr:`ChainPresence.policy` (the hotkeys holding a validator permit). Whenever the metagraph
does not show the miner at its axon (a chain that restarted empty, a UID lost to pruning)
it registers and announces again. While the chain is unreachable it retries with backoff
and keeps the last validators it knew.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from bittensor_wallet import Keypair

from chain.client import ChainClient, ChainRequestError, MetagraphPolicy
from chain.metagraph import Metagraph

log = logging.getLogger(__name__)

FIRST_RETRY = 0.5  # seconds; doubles per failure up to MAX_RETRY
MAX_RETRY = 30.0
REQUEST_TIMEOUT = 10.0


class ChainPresence:
    def __init__(
        self, url: str, keypair: Keypair, host: str, port: int, metagraph_seconds: float
    ) -> None:
        self.url = url
        self.keypair = keypair
        self.axon = (host, port)
        self.metagraph_seconds = metagraph_seconds
        self.policy = MetagraphPolicy(self, refresh_seconds=metagraph_seconds)
        self.uid: int | None = None
        self._client: ChainClient | None = None

    async def metagraph(self) -> Metagraph:
        """The policy's source: the chain, through the client :meth:`run` opened."""
        if self._client is None:
            raise RuntimeError("ChainPresence.run() has not started")
        return await self._client.metagraph()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._client = ChainClient(self.url, self.keypair, session)
            retry = FIRST_RETRY
            while True:
                try:
                    await self._step(self._client)
                except (aiohttp.ClientError, OSError, TimeoutError, ChainRequestError) as exc:
                    error = str(exc) or type(exc).__name__
                    log.warning(
                        "chain unreachable or refusing; retrying",
                        extra={"chain": self.url, "error": error, "retry_in": retry},
                    )
                except Exception:  # a malformed answer must not end the loop either
                    log.exception("reading the chain failed; retrying", extra={"chain": self.url})
                else:
                    retry = FIRST_RETRY
                    await asyncio.sleep(self.metagraph_seconds)
                    continue
                await asyncio.sleep(retry)
                retry = min(retry * 2, MAX_RETRY)

    async def _step(self, client: ChainClient) -> None:
        graph = await self.policy.refresh()
        host, port = self.axon
        me = graph.by_hotkey(client.hotkey)
        if me is not None and me.axon == f"{host}:{port}":
            self.uid = me.uid
            return
        # register() is idempotent on the chain: an existing UID is returned as is.
        self.uid = await client.register()
        await client.serve_axon(host, port)
        log.info(
            "registered on the chain and announced the axon",
            extra={"chain": self.url, "uid": self.uid, "axon": f"{host}:{port}"},
        )
        # Read again so validators that registered meanwhile are allowed without a wait.
        await self.policy.refresh()
