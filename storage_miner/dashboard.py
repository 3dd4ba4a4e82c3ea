"""The miner's dashboard at ``/``: space, challenges over time, its validators, quarantined
shards, the store's health, earnings from the chain, and alerts.

What the miner saw of its validators (challenge batches answered, when each validator last
called) is kept by :class:`MinerActivity` in memory, bounded: a per-minute history for 7 days
and at most ``MAX_CALLERS`` validators. The history is also saved in the shard index's
database (every ``HISTORY_SAVE_SECONDS``, in a thread, and at a clean stop) and read back
at start, so a restart keeps the chart; who called and the bytes proven start afresh. The
validators' own verdicts are in their public audit logs (the validator's dashboard).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from chain.client import ChainClient
from chain.earnings import epoch_credit, next_halving
from chain.emission import EmissionSchedule
from protocol import dashboard
from protocol.http import VERIFIED
from storage_miner.index import MinuteRecord, ShardIndex
from storage_miner.on_chain import ChainPresence
from storage_miner.service import MinerService
from storage_miner.store import ShardKey

MAX_CALLERS: Final = 256
HISTORY_SECONDS: Final = 7 * 86400.0  # the longest chart window
HISTORY_SAVE_SECONDS: Final = 60.0  # a crash (not a clean stop) loses at most this much
PROBE_SECONDS: Final = 3.0  # a store or chain slower than this is shown as unreachable
CHAIN_SECONDS: Final = 3.0
QUIET_SECONDS: Final = 600.0  # no validator call for this long is an alert
FAILING_RATE: Final = 0.95  # answered share of challenges below this in the window: an alert
NEAR_FULL: Final = 0.9
# A key no validator can hold (ids are Merkle roots): asking the store whether it exists
# exercises the backend (the disk, or the S3 endpoint and bucket) without side effects.
_PROBE = ShardKey("5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM", "0" * 64)


@dataclass(slots=True)
class Caller:
    hotkey: str
    first_seen: float
    last_seen: float
    requests: int = 0
    challenges: int = 0
    answered: int = 0


class MinerActivity:
    """What the miner saw of its validators, for the dashboard (bounded, in memory; the
    challenge history saved to ``index`` when given)."""

    def __init__(
        self, clock: Callable[[], float] = time.time, index: ShardIndex | None = None
    ) -> None:
        self.clock = clock
        self.index = index
        self.started = clock()
        self.challenges = dashboard.Buckets(keep=int(HISTORY_SECONDS // 60))
        self.bytes_proven = 0
        self.callers: OrderedDict[str, Caller] = OrderedDict()
        # Minutes from this start on may differ from what is saved (only the newest changes).
        self._unsaved_from = -math.inf

    def restore(self) -> None:
        """Read the saved history back (blocking: at start, in a thread)."""
        if self.index is None:
            return
        rows = self.index.minutes(self.clock() - HISTORY_SECONDS)
        self.challenges.load(dashboard.Bucket(*row) for row in rows)
        if rows:
            self._unsaved_from = rows[-1].start

    async def save(self) -> None:
        """Write the minutes changed since the last save, off the event loop; forget those
        older than the history keeps."""
        if self.index is None:
            return
        changed = [  # copied here, on the loop: the thread must not see a minute half-added
            MinuteRecord(b.start, b.ok, b.failed, b.latency_ms_sum, b.batches)
            for b in self.challenges.starting_from(self._unsaved_from)
        ]
        if not changed:
            return
        await asyncio.to_thread(self.index.save_minutes, changed, self.clock() - HISTORY_SECONDS)
        self._unsaved_from = changed[-1].start  # the newest may still grow: saved again

    def called(self, hotkey: str) -> Caller:
        now = self.clock()
        caller = self.callers.pop(hotkey, None) or Caller(hotkey, now, now)
        caller.last_seen = now
        caller.requests += 1
        self.callers[hotkey] = caller  # most recent last; the least recent is dropped
        while len(self.callers) > MAX_CALLERS:
            self.callers.popitem(last=False)
        return caller

    def challenged(
        self, hotkey: str, asked: int, answered: int, seconds: float, proven: int
    ) -> None:
        caller = self.callers.get(hotkey) or self.called(hotkey)
        caller.challenges += asked
        caller.answered += answered
        self.bytes_proven += proven
        self.challenges.add(
            self.clock(), ok=answered, failed=asked - answered, latency_ms=seconds * 1000
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Notes each signed caller (runs after the signature check)."""
        if VERIFIED in request:
            self.called(request[VERIFIED].signed_by)
        return await handler(request)


def install(
    app: web.Application,
    service: MinerService,
    activity: MinerActivity,
    presence: ChainPresence | None,
) -> None:
    panels = MinerPanels(service, activity, presence)
    app.middlewares.append(activity.middleware)
    dashboard.install(
        app,
        dashboard.Dashboard(
            title=f"Miner {dashboard.short(service.hotkey)}",
            templates=Path(__file__).parent / "templates",
            panels={
                "alerts": panels.alerts,
                "space": panels.space,
                "challenges": panels.challenges,
                "earnings": panels.earnings,
                "validators": panels.validators,
                "quarantine": panels.quarantine,
            },
            refresh={"alerts": 5, "space": 10, "challenges": 10, "earnings": 10, "validators": 10},
            wide=frozenset({"alerts", "challenges"}),
        ),
    )


class MinerPanels:
    def __init__(
        self, service: MinerService, activity: MinerActivity, presence: ChainPresence | None
    ) -> None:
        self.service = service
        self.activity = activity
        self.presence = presence

    async def space(self, _request: web.Request) -> Mapping[str, Any]:
        info = await asyncio.to_thread(self.service.info)
        health = await self._store_health()
        disk = None
        if self.service.settings.backend == "fs":
            usage = await asyncio.to_thread(shutil.disk_usage, self.service.settings.data_dir)
            disk = {"free": usage.free, "total": usage.total}
        return {"info": info, "store_error": health, "disk": disk}

    async def _store_health(self) -> str | None:
        """Why the store cannot be reached, or None when it answers."""
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.service.store.exists, _PROBE), PROBE_SECONDS
            )
        except TimeoutError:
            return f"no answer within {PROBE_SECONDS:.0f} s"
        except Exception as exc:  # noqa: BLE001 - any backend failure is what it reports
            return f"{type(exc).__name__}: {exc}"[:300]
        return None

    async def challenges(self, request: web.Request) -> Mapping[str, Any]:
        name, seconds = dashboard.window(request)
        since = self.activity.clock() - seconds
        buckets = self.activity.challenges.since(since)
        total = self.activity.challenges.totals(since)
        return {
            "window": name,
            "windows": list(dashboard.WINDOWS),
            "total": total,
            "bytes_proven": self.activity.bytes_proven,
            "rate_chart": dashboard.chart(
                [b.start for b in buckets],
                {
                    "answered %": [
                        None if b.rate is None else round(b.rate * 100, 2) for b in buckets
                    ]
                },
                x_range=(since, since + seconds),
            ),
            "latency_chart": dashboard.chart(
                [b.start for b in buckets],
                {"batch ms (mean)": [b.mean_latency_ms for b in buckets]},
                x_range=(since, since + seconds),
            ),
        }

    async def validators(self, _request: web.Request) -> Mapping[str, Any]:
        permitted = None
        if self.presence is not None:
            permitted = self.presence.policy
        callers = sorted(self.activity.callers.values(), key=lambda c: -c.last_seen)
        return {
            "callers": [
                {
                    "caller": c,
                    "permitted": None if permitted is None else permitted.is_allowed(c.hotkey),
                    "listed": c.hotkey in self.service.settings.validators,
                }
                for c in callers
            ],
            "static": self.service.settings.validators,
        }

    async def quarantine(self, _request: web.Request) -> Mapping[str, Any]:
        records = await asyncio.to_thread(self.service.index.quarantined, None, 50)
        return {"records": records}

    async def earnings(self, _request: web.Request) -> Mapping[str, Any]:
        return await earnings(self.presence, self.service.hotkey)

    async def alerts(self, request: web.Request) -> Mapping[str, Any]:
        space, earned = await asyncio.gather(self.space(request), self.earnings(request))
        now = self.activity.clock()
        alerts: list[tuple[str, str]] = []
        total = self.activity.challenges.totals(now - 3600)
        if total.rate is not None and total.rate < FAILING_RATE:
            alerts.append(
                ("bad", f"failing challenges: {total.failed} of {total.ok + total.failed} in the "
                 "last hour had no proof (lost or unreadable shards)")
            )  # fmt: skip
        if space["store_error"]:
            alerts.append(("bad", f"the store is unreachable: {space['store_error']}"))
        info = space["info"]
        if info["used"] >= NEAR_FULL * info["capacity"]:
            alerts.append(
                (
                    "warn",
                    f"capacity nearly full: {dashboard.pct(info['used'] / info['capacity'])} used",
                )
            )
        disk = space["disk"]
        if disk is not None and disk["free"] < info["free"]:
            alerts.append(
                ("warn" if disk["free"] > (1 - NEAR_FULL) * disk["total"] else "bad",
                 f"the disk has {dashboard.size(disk['free'])} free, less than the "
                 f"{dashboard.size(info['free'])} this miner offers")
            )  # fmt: skip
        if self.presence is None:
            alerts.append(("warn", "not on a chain (no --chain-url or --network): not registered"))
        elif earned.get("uid") is None:
            alerts.append(("bad", "not registered on the chain (or the chain is unreachable)"))
        recent = [c for c in self.activity.callers.values() if c.last_seen >= now - QUIET_SECONDS]
        if not recent:
            alerts.append(
                ("warn", f"no validator has called in the last {dashboard.duration(QUIET_SECONDS)}")
            )
        return {"alerts": alerts}


async def earnings(presence: ChainPresence | None, hotkey: str) -> dict[str, Any]:
    """The miner's earnings from the chain's ledger, and estimates for the next epoch and era
    (the embedded chain; subtensor has no ledger, so only the incentive is shown there)."""
    if presence is None or presence.chain is None:
        return {"chain": None, "uid": None}
    chain = presence.chain
    try:
        graph = await asyncio.wait_for(chain.metagraph(), CHAIN_SECONDS)
    except Exception as exc:  # noqa: BLE001 - an unreachable chain is shown, not raised
        return {"chain": presence.name, "uid": None, "error": str(exc) or type(exc).__name__}
    me = graph.by_hotkey(hotkey)
    result: dict[str, Any] = {
        "chain": presence.name,
        "uid": None if me is None else me.uid,
        "incentive": None if me is None else me.incentive,
        "block": graph.block,
        "tempo": graph.tempo,
    }
    if me is None or not isinstance(chain, ChainClient):
        return result
    try:
        block, epochs, balances = await asyncio.wait_for(
            asyncio.gather(
                chain.get("/v1/block"),
                chain.get("/v1/epochs", limit=1),
                chain.get("/v1/balances", hotkey=hotkey),
            ),
            CHAIN_SECONDS,
        )
        last = epochs["epochs"][0] if epochs["epochs"] else None
        ledger = (
            await asyncio.wait_for(
                chain.get("/v1/ledger", epoch=last["number"], hotkey=hotkey), CHAIN_SECONDS
            )
            if last
            else {"credits": []}
        )
    except Exception as exc:  # noqa: BLE001 - an unreachable chain is shown, not raised
        result["error"] = str(exc) or type(exc).__name__
        return result
    schedule = EmissionSchedule()
    incentive = [n.incentive for n in graph.neurons]
    issuance, tempo = int(block["issuance"]), graph.tempo
    halving = next_halving(schedule, issuance, int(block["block"]), tempo)
    entry: dict[str, Any] = (
        balances["balances"][0] if balances["balances"] else {"total": 0, "eras": {}}
    )
    result.update(
        {
            "issuance": issuance,
            "era": int(block["era"]),
            "total": entry["total"],
            "eras": {int(era): amount for era, amount in entry["eras"].items()},
            "last_epoch": last,
            "last_ledger": sum(c["incentive"] for c in ledger["credits"]),
            "last_model": (
                sum(
                    p.credit
                    for p in epoch_credit(
                        schedule, last["start_issuance"], tempo, incentive, me.uid
                    )
                )
                if last
                else None
            ),
            "next_epoch": epoch_credit(schedule, issuance, tempo, incentive, me.uid),
            "halving": halving,
            "halving_seconds": (
                None
                if halving.blocks_left is None
                else halving.blocks_left * float(block.get("block_interval", 12.0))
            ),
            "next_era_epoch": epoch_credit(schedule, halving.threshold, tempo, incentive, me.uid),
        }
    )
    return result
