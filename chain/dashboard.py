"""The embedded chain's dashboard at ``/``: block, epoch, issuance, the next halving and its
estimated time, emission per era and per epoch, and the Yuma outputs per UID. All public,
like the chain's reads."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from chain.earnings import next_halving
from chain.emission import EmissionSchedule
from chain.service import ChainService
from protocol import dashboard

EPOCHS_SHOWN = 100


def install(app: web.Application, service: ChainService) -> None:
    panels = ChainPanels(service)
    dashboard.install(
        app,
        dashboard.Dashboard(
            title="Chain (embedded)",
            templates=Path(__file__).parent / "templates",
            panels={"chain": panels.chain, "emission": panels.emission, "yuma": panels.yuma},
            refresh={"chain": 2, "emission": 10, "yuma": 10},
            wide=frozenset({"yuma"}),
        ),
    )


class ChainPanels:
    def __init__(self, service: ChainService) -> None:
        self.service = service

    async def chain(self, _request: web.Request) -> Mapping[str, Any]:
        info = await self.service.run(self.service.chain.chain_info)
        block, tempo, issuance = int(info["block"]), int(info["tempo"]), int(info["issuance"])
        halving = next_halving(EmissionSchedule(), issuance, block, tempo)
        interval = self.service.block_interval
        return {
            "info": info,
            "epoch": block // tempo + 1,  # the open one; epoch n closes at block n * tempo
            "closes_at": (block // tempo + 1) * tempo,
            "interval": interval,
            "halving": halving,
            "halving_seconds": None
            if halving.blocks_left is None
            else halving.blocks_left * interval,
        }

    async def emission(self, _request: web.Request) -> Mapping[str, Any]:
        chain = self.service.chain
        epochs = await self.service.run(chain.epochs, EPOCHS_SHOWN)
        balances = await self.service.run(chain.balances)
        per_era: dict[int, int] = defaultdict(int)
        for eras in balances.values():
            for era, amount in eras.items():
                per_era[era] += amount
        ordered = epochs[::-1]
        return {
            "per_era": sorted(per_era.items()),
            "epochs": epochs[:20],
            "chart": dashboard.chart(
                [e.number for e in ordered],
                {"emission (TAO)": [e.emission / 1e9 for e in ordered]},
                time_axis=False,
            ),
        }

    async def yuma(self, _request: web.Request) -> Mapping[str, Any]:
        graph = await self.service.metagraph()
        return {"graph": graph}
