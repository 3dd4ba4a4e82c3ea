"""The validator on the chain: register, take miners from the metagraph, send weights.

Miners are the neurons that serve an address and hold no validator permit. Weights go out
every ``weights_seconds``: verified bytes (time-weighted) x availability, from
:mod:`validator.scoring`, with the capacity and availability behind each weight attached
for the embedded chain's reward ledger. Subtensor has no place for those figures: they stay
in :attr:`ChainSync.last_weights` and the ``/metrics`` gauges, on either chain.

A refusal is logged with the chain's code and reason. When the chain says when it would
accept (subtensor's weights rate limit: ``ChainRequestError.retry_after``), the weights are
sent again then, else at the next ``weights_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from chain.axon import announce
from chain.client import Chain, ChainRequestError
from chain.metagraph import Metagraph
from validator.challenger import Challenger
from validator.gateway import Gateway
from validator.scoring import availability, weights

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
HISTORY = 100  # weight sends kept for the dashboard


@dataclass(frozen=True, slots=True)
class WeightsSent:
    block: int
    weights: dict[str, float]  # hotkey -> normalised weight
    figures: dict[str, tuple[int, float]]  # hotkey -> (verified bytes, availability)


class ChainSyncMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.weight = Gauge(
            "validator_miner_weight",
            "Normalised weight per miner, as last computed for the chain.",
            ["hotkey"],
            registry=registry,
        )
        self.capacity = Gauge(
            "validator_miner_capacity_bytes",
            "Verified bytes (time-weighted) behind each miner's weight.",
            ["hotkey"],
            registry=registry,
        )
        self.availability = Gauge(
            "validator_miner_availability",
            "Availability (wrong-answer x timeout score) behind each miner's weight.",
            ["hotkey"],
            registry=registry,
        )
        self.sent = Counter(
            "validator_weights_sent", "Weights the chain accepted.", registry=registry
        )
        self.refused = Counter(
            "validator_weights_refused",
            "Weights the chain refused, by its reason code.",
            ["code"],
            registry=registry,
        )
        self.block = Gauge(
            "validator_weights_block", "Block of the last weights accepted.", registry=registry
        )

    def computed(self, weights: dict[str, float], figures: dict[str, tuple[int, float]]) -> None:
        for gauge in (self.weight, self.capacity, self.availability):
            gauge.clear()  # miners that left the metagraph drop out
        for hotkey, weight in weights.items():
            capacity, availability = figures[hotkey]
            self.weight.labels(hotkey).set(weight)
            self.capacity.labels(hotkey).set(capacity)
            self.availability.labels(hotkey).set(availability)


class ChainSync:
    def __init__(
        self,
        chain: Chain,
        gateway: Gateway,
        challenger: Challenger,
        own_hotkey: str,
        *,
        metagraph_seconds: float,
        weights_seconds: float,
        disqualify_below: float,
        axon: tuple[str, int] | None = None,
    ) -> None:
        self.chain = chain
        self.axon = axon  # the address announced on the metagraph (None: none)
        self.gateway = gateway
        self.challenger = challenger
        self.own_hotkey = own_hotkey
        self.metagraph_seconds = metagraph_seconds
        self.weights_seconds = weights_seconds
        self.disqualify_below = disqualify_below
        self.graph: Metagraph | None = None
        self.uid: int | None = None
        self.last_weights: WeightsSent | None = None
        # (unix time, weights) of the last sends the chain accepted, for the dashboard.
        self.history: deque[tuple[float, WeightsSent]] = deque(maxlen=HISTORY)
        self.metrics: ChainSyncMetrics | None = None

    async def register(self) -> int:
        """Register (idempotent), retrying while the chain is unreachable."""
        while True:
            try:
                self.uid = await self.chain.register()
            except (OSError, TimeoutError, ChainRequestError) as exc:
                log.warning("registering on the chain failed; retrying", extra={"why": str(exc)})
                await asyncio.sleep(RETRY_SECONDS)
                continue
            log.info("registered on the chain", extra={"uid": self.uid})
            return self.uid

    async def sync_miners(self) -> Metagraph:
        graph = await self.chain.metagraph()
        if self.axon is not None:
            await self._announce(graph)
        miners = []
        for neuron in graph.neurons:
            if neuron.axon is None or neuron.validator_permit or neuron.hotkey == self.own_hotkey:
                continue
            host, _, port = neuron.axon.rpartition(":")
            if port.isdigit():
                miners.append((neuron.hotkey, host.strip("[]"), int(port), neuron.uid))
        await asyncio.to_thread(self.gateway.upsert_chain_miners, miners)
        self.graph = graph
        await self.gateway.refresh_miners()
        return graph

    async def _announce(self, graph: Metagraph) -> None:
        """As a miner announces its axon, and again whenever the metagraph has lost it. A
        refusal is logged and retried with the next read: the miners are synced anyway."""
        assert self.axon is not None
        where = f"{self.axon[0]}:{self.axon[1]}"
        try:
            self.uid, announced = await announce(self.chain, graph, self.own_hotkey, self.axon)
        except (OSError, TimeoutError, ChainRequestError) as exc:
            log.warning(
                "announcing the validator's address failed; retrying with the next metagraph",
                extra={"axon": where, "why": str(exc)},
            )
            return
        if announced:
            log.info("announced the validator's address", extra={"axon": where, "uid": self.uid})

    async def send_weights(self) -> WeightsSent | None:
        """Weights for every miner in the metagraph; None when nothing is verified yet."""
        graph = self.graph or await self.sync_miners()
        standings = await asyncio.to_thread(self.challenger.standings)
        normalised = weights(standings, disqualify_below=self.disqualify_below)
        uids: list[int] = []
        values: list[float] = []
        figures: dict[int, tuple[int, float]] = {}
        by_hotkey: dict[str, tuple[int, float]] = {}
        sent_weights: dict[str, float] = {}
        for neuron in graph.neurons:
            standing = standings.get(neuron.hotkey)
            if standing is None or neuron.hotkey == self.own_hotkey:
                continue
            uids.append(neuron.uid)
            values.append(normalised.get(neuron.hotkey, 0.0))
            shown = (
                standing.verified_bytes,
                availability(standing, disqualify_below=self.disqualify_below),
            )
            figures[neuron.uid] = shown
            by_hotkey[neuron.hotkey] = shown
            sent_weights[neuron.hotkey] = values[-1]
        if not sum(values) > 0:
            log.info("no verified bytes yet; weights not sent")
            return None
        if self.metrics is not None:
            self.metrics.computed(sent_weights, by_hotkey)
        try:
            block = await self.chain.set_weights(uids, values, graph.version_key, figures)
        except ChainRequestError as exc:
            if self.metrics is not None:
                self.metrics.refused.labels(exc.code).inc()
            raise
        sent = WeightsSent(block, sent_weights, by_hotkey)
        self.last_weights = sent
        self.history.append((time.time(), sent))
        if self.metrics is not None:
            self.metrics.sent.inc()
            self.metrics.block.set(block)
        log.info("weights sent", extra={"block": block, "miners": len(uids)})
        return sent

    async def run(self) -> None:
        """Sync miners and send weights on their intervals, forever; failures are retried."""
        next_sync = next_weights = time.monotonic()
        next_weights += self.weights_seconds
        while True:
            now = time.monotonic()
            try:
                if now >= next_sync:
                    next_sync = now + self.metagraph_seconds
                    await self.sync_miners()
                if now >= next_weights:
                    next_weights = now + self.weights_seconds
                    await self.send_weights()
            except ChainRequestError as exc:
                if exc.retry_after is not None:  # the chain said when it would accept
                    next_weights = time.monotonic() + exc.retry_after
                log.warning(
                    "the chain refused a request",
                    extra={"code": exc.code, "why": exc.message, "retry_after": exc.retry_after},
                )
            except Exception:  # the chain being down must not end the loop; logged, retried
                log.exception("talking to the chain failed")
            await asyncio.sleep(max(0.05, min(next_sync, next_weights) - time.monotonic()))
