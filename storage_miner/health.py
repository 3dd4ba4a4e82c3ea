"""Whether the miner can serve: its shard store reachable (an S3 endpoint up).

``GET /healthz`` answers 503 with the reason while the store is down, so a load balancer or
an operator sees it, and the store is probed again with backoff like the chain (see
``on_chain.py``) until it is back.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from storage_miner.store import ShardStore, StoreUnavailable

log = logging.getLogger(__name__)

FIRST_RETRY = 0.5  # seconds; doubles per failure up to MAX_RETRY
MAX_RETRY = 30.0
HEALTHY_PROBE = 15.0  # seconds between probes while healthy


@dataclass(slots=True)
class StoreHealth:
    ok: bool = True
    detail: str = ""

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "store": "ok" if self.ok else self.detail}


def probe(store: ShardStore) -> StoreHealth:
    """One look at the store; a store with nothing to reach (a local disk) is healthy."""
    reach = getattr(store, "probe", None)
    if reach is None:
        return StoreHealth()
    try:
        reach()
    except StoreUnavailable as exc:
        return StoreHealth(ok=False, detail=str(exc))
    return StoreHealth()


async def watch(store: ShardStore, health: StoreHealth) -> None:
    """Probe forever, logging each change once (not each failed probe)."""
    retry = FIRST_RETRY
    first = True
    while True:
        seen = await asyncio.to_thread(probe, store)
        if seen.ok != health.ok or (first and not seen.ok):
            if seen.ok:
                log.info("the shard store is reachable")
            else:
                log.warning(
                    "the shard store is unreachable; retrying", extra={"error": seen.detail}
                )
        health.ok, health.detail, first = seen.ok, seen.detail, False
        if health.ok:
            retry = FIRST_RETRY
            await asyncio.sleep(HEALTHY_PROBE)
        else:
            await asyncio.sleep(retry)
            retry = min(retry * 2, MAX_RETRY)
