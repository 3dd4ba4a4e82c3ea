"""The chain as an asyncio service: :class:`LocalChain` on one database thread, and the
block producer.

All database work runs on one worker thread, in order: the event loop never blocks on the
database, and writes never race each other (the database would serialise them anyway).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from chain.metagraph import Metagraph
from chain.state import Credit, EpochSummary, LocalChain, MinerFigures, Registration

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
MAX_LAG_BLOCKS = 10  # further behind than this, the producer skips ahead rather than bursts


class ChainService:
    def __init__(self, chain: LocalChain, block_interval: float) -> None:
        if not block_interval > 0:
            raise ValueError(f"block_interval must be positive, got {block_interval}")
        self.chain = chain
        self.block_interval = block_interval
        self.last_block = 0
        self.epochs_closed = 0
        self.rows_skipped = 0  # malformed stored rows epoch closes left out
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain-db")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args, **kwargs))

    async def register(self, hotkey: str) -> Registration:
        return await self.run(self.chain.register, hotkey)

    async def serve_axon(self, hotkey: str, host: str, port: int) -> int:
        return await self.run(self.chain.serve_axon, hotkey, host, port)

    async def set_weights(
        self,
        hotkey: str,
        uids: Sequence[int],
        weights: Sequence[float],
        version_key: int,
        figures: Mapping[int, MinerFigures] | None,
    ) -> int:
        return await self.run(self.chain.set_weights, hotkey, uids, weights, version_key, figures)

    async def metagraph(self) -> Metagraph:
        return await self.run(self.chain.metagraph)

    async def ledger(
        self, *, epoch: int | None, era: int | None, hotkey: str | None,
        since_epoch: int | None = None,
    ) -> list[Credit]:  # fmt: skip
        return await self.run(
            self.chain.ledger, epoch=epoch, era=era, hotkey=hotkey, since_epoch=since_epoch
        )

    async def advance(self, blocks: int = 1) -> list[EpochSummary]:
        closed = await self.run(self.chain.advance, blocks)
        self.last_block = await self.run(self.chain.block)
        for epoch in closed:
            self.epochs_closed += 1
            log.info("epoch closed", extra=epoch.to_dict())
            self._report_skipped(epoch)
        return closed

    async def catch_up(self) -> list[EpochSummary]:
        """Close epochs a previous run produced the last block of but did not close."""
        closed = await self.run(self.chain.close_due_epochs)
        self.last_block = await self.run(self.chain.block)
        for epoch in closed:
            log.info("epoch closed on restart", extra=epoch.to_dict())
            self._report_skipped(epoch)
        return closed

    def _report_skipped(self, epoch: EpochSummary) -> None:
        for why in epoch.skipped:
            log.warning(
                "epoch close left out a malformed row", extra={"epoch": epoch.number, "why": why}
            )
        self.rows_skipped += len(epoch.skipped)

    async def produce_blocks(self) -> None:
        """One block every ``block_interval`` seconds, until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.block_interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self.block_interval
            if loop.time() - next_at > MAX_LAG_BLOCKS * self.block_interval:
                next_at = loop.time() + self.block_interval
            try:
                await self.advance()
            except Exception:  # a database hiccup must not stop the chain; logged, retried
                log.exception("producing a block failed; retrying at the next one")

    def close(self) -> None:
        self._db.shutdown(wait=True)
        self.chain.engine.dispose()
