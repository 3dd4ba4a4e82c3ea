"""The validator's dashboard at ``/``: its miners, the challenge-log explorer (with a check
of the hashes and signatures of what it shows), repair and at-risk segments, the objects'
health and the weights it set.

Only public figures: the same as ``/v1/audit/*`` and ``/metrics``, and aggregate counts of
what is stored. No object names, owners or keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web
from bittensor_wallet import Keypair
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from protocol import dashboard
from protocol.http import BadRequest
from protocol.inputs import query_int
from validator.audit import summarise
from validator.audit_log import LogEntry, check_proof
from validator.chain_sync import ChainSync
from validator.challenger import Challenger
from validator.log_store import LogFilter, to_entry
from validator.models import ChallengeRecord, Miner, Placement, Segment, StoredObject
from validator.repair import Repairer

ROWS: Final = 100  # log entries the explorer shows
# Log entries (by seq, newest first) one explorer request looks through: a filter that
# matches nothing must not read the whole log (~2M entries an hour for 256 miners). The
# page links to the next older stretch.
SCAN: Final = 200_000
VERDICTS: Final = ("pass", "wrong", "missing", "timeout", "repaired")
KINDS: Final = ("merkle", "retrieval", "read", "repair")
# Counting every object and placement is a scan; at a million placements it would take most
# of a page's time budget, so those counts are redone at most this often.
COUNTS_SECONDS: Final = 30.0
# The at-risk segments are what the repairer's latest run saw (every repair_seconds, 30 s
# by default), or a fresh look when that is older than this: never more than one look per
# this many seconds, however many pages are open.
AT_RISK_SECONDS: Final = 30.0


def install(
    app: web.Application,
    hotkey: str,
    challenger: Challenger | None,
    chain_sync: ChainSync | None,
    repairer: Repairer | None,
) -> None:
    panels = ValidatorPanels(hotkey, challenger, chain_sync, repairer)
    dashboard.install(
        app,
        dashboard.Dashboard(
            title=f"Validator {dashboard.short(hotkey)}",
            templates=Path(__file__).parent / "templates",
            panels={
                "miners": panels.miners,
                "log": panels.log,
                "repair": panels.repair,
                "objects": panels.objects,
                "weights": panels.weights,
            },
            refresh={"miners": 10, "repair": 15, "objects": 30, "weights": 15},
            wide=frozenset({"miners", "log"}),
            fragments={"verify": panels.verify},
        ),
    )


@dataclass(frozen=True, slots=True)
class Explorer:
    """The explorer's filters, from the query string (the API's names)."""

    where: LogFilter
    window: str
    before: int | None = None  # look at entries below this seq (None: from the newest)

    @classmethod
    def from_request(cls, request: web.Request, now: float) -> Explorer:
        q = request.query
        before = query_int(request, "before")
        verdict = q.get("verdict") or None
        kind = q.get("kind") or None
        if verdict is not None and verdict not in VERDICTS:
            raise BadRequest("bad_query", f"verdict is one of {', '.join(VERDICTS)}")
        if kind is not None and kind not in KINDS:
            raise BadRequest("bad_query", f"kind is one of {', '.join(KINDS)}")
        window = q.get("window", "")
        since = now - dashboard.WINDOWS[window] if window in dashboard.WINDOWS else None
        return cls(LogFilter(miner=q.get("miner") or None, verdict=verdict, kind=kind,
                             since=since), window if since else "", before)  # fmt: skip

    def older(self, seq: int) -> str:
        """The query string of the same filters, from ``seq`` down."""
        w = self.where
        shown = {"miner": w.miner, "verdict": w.verdict, "kind": w.kind, "window": self.window}
        return urlencode({**{k: v for k, v in shown.items() if v}, "before": seq})


@dataclass(frozen=True, slots=True)
class Found:
    entries: list[LogEntry]
    searched_from: int  # the oldest seq looked at
    searched_to: int  # the newest


def latest(sessions: sessionmaker[Session], where: LogFilter, limit: int) -> list[LogEntry]:
    """The newest ``limit`` entries matching ``where``, newest first (for a filter an index
    serves, such as a kind: it reads at most ``limit`` rows)."""
    with sessions() as session:
        query = where.apply(select(ChallengeRecord)).order_by(ChallengeRecord.seq.desc())
        return [to_entry(row) for row in session.scalars(query.limit(limit))]


def search(
    sessions: sessionmaker[Session], explorer: Explorer, limit: int = ROWS, scan: int = SCAN
) -> Found:
    """The newest ``limit`` entries matching the explorer's filters among the ``scan``
    entries below ``explorer.before`` (or the newest): a bounded range of the primary key
    (or of an index on miner, verdict or kind), whatever the filters."""
    c = ChallengeRecord
    with sessions() as session:
        top = explorer.before
        if top is None:
            top = (session.scalar(select(func.max(c.seq))) or -1) + 1
        bottom = max(0, top - scan)
        query = explorer.where.apply(select(c)).where(c.seq >= bottom, c.seq < top)
        rows = session.scalars(query.order_by(c.seq.desc()).limit(limit))
        return Found([to_entry(row) for row in rows], bottom, top - 1)


@dataclass(frozen=True, slots=True)
class Check:
    checked: int
    problems: list[tuple[int, str]]
    links: int  # consecutive pairs whose hash link was checked


def check_entries(entries: Sequence[LogEntry], validator: str) -> Check:
    """Each entry's signature (by ``validator``) and recorded proof, and the hash link of
    every two shown entries that follow each other in the log."""
    problems = []
    key = Keypair(ss58_address=validator)
    by_seq = {e.seq: e for e in entries}
    links = 0
    for entry in entries:
        why = None
        if entry.validator != validator:
            why = f"signed by {entry.validator}, not this validator"
        else:
            try:
                signature = bytes.fromhex(entry.signature.removeprefix("0x"))
                if not key.verify(entry.body(), signature):
                    why = "signature does not match the entry"
            except ValueError:
                why = "unreadable signature"
        why = why or check_proof(entry)
        before = by_seq.get(entry.seq - 1)
        if why is None and before is not None:
            links += 1
            if entry.prev_hash != before.entry_hash:
                why = "does not follow the entry before it"
        if why is not None:
            problems.append((entry.seq, why))
    return Check(len(entries), problems, links)


class ValidatorPanels:
    def __init__(
        self,
        hotkey: str,
        challenger: Challenger | None,
        chain_sync: ChainSync | None,
        repairer: Repairer | None,
    ) -> None:
        self.hotkey = hotkey
        self.challenger = challenger
        self.chain_sync = chain_sync
        self.repairer = repairer
        self._counts: tuple[float, dict[str, Any]] | None = None

    async def miners(self, request: web.Request) -> Mapping[str, Any]:
        if self.challenger is None:
            return {"rows": [], "window": "", "windows": []}
        challenger = self.challenger
        name, seconds = dashboard.window(request)
        standings = await asyncio.to_thread(challenger.standings)
        rows = await asyncio.to_thread(
            summarise,
            challenger.sessions,
            standings,
            since=time.time() - seconds,
            disqualify_below=challenger.policy.disqualify_below,
        )
        seen = await asyncio.to_thread(_miners_seen, challenger.sessions)
        return {
            "rows": [{**r.as_dict(), **seen.get(r.miner, {})} for r in rows],
            "window": name,
            "windows": list(dashboard.WINDOWS),
            "rounds": challenger.rounds,
        }

    async def log(self, request: web.Request) -> Mapping[str, Any]:
        explorer = Explorer.from_request(request, time.time())
        found = Found([], 0, -1)
        if self.challenger is not None:
            found = await asyncio.to_thread(search, self.challenger.sessions, explorer)
        older = None  # where the next search starts: below the last shown, or the stretch
        if len(found.entries) == ROWS and found.entries[-1].seq > 0:
            older = explorer.older(found.entries[-1].seq)
        elif found.searched_from > 0:
            older = explorer.older(found.searched_from)
        return {
            "entries": found.entries,
            "searched": (found.searched_from, found.searched_to),
            "older": older,
            "filter": explorer.where,
            "window": explorer.window,
            "verdicts": VERDICTS,
            "kinds": KINDS,
            "windows": list(dashboard.WINDOWS),
            "limit": ROWS,
        }

    async def verify(self, request: web.Request) -> Mapping[str, Any]:
        """What the explorer shows, with these filters, checked."""
        explorer = Explorer.from_request(request, time.time())
        if self.challenger is None:
            return {"check": Check(0, [], 0)}
        found = await asyncio.to_thread(search, self.challenger.sessions, explorer)
        check = await asyncio.to_thread(check_entries, found.entries, self.hotkey)
        return {"check": check}

    async def repair(self, _request: web.Request) -> Mapping[str, Any]:
        if self.challenger is None:
            return {"events": [], "at_risk": [], "short": 0, "enabled": False}
        where = LogFilter(kind="repair")
        events = await asyncio.to_thread(latest, self.challenger.sessions, where, 20)
        seen = None
        if self.repairer is not None:
            seen = await asyncio.to_thread(self.repairer.recent_at_risk, AT_RISK_SECONDS)
        return {
            "events": events,
            "at_risk": seen.most[:20] if seen else [],
            "short": seen.short if seen else 0,
            "age": time.time() - seen.at if seen else None,
            "enabled": self.repairer is not None,
        }

    async def objects(self, _request: web.Request) -> Mapping[str, Any]:
        now = time.monotonic()
        if self._counts is None or now - self._counts[0] > COUNTS_SECONDS:
            if self.challenger is None:
                return {}
            counts = await asyncio.to_thread(_counts, self.challenger.sessions)
            self._counts = (now, counts)
        at = self._counts[0]
        return {**self._counts[1], "age": now - at}

    async def weights(self, _request: web.Request) -> Mapping[str, Any]:
        if self.chain_sync is None:
            return {"on_chain": False}
        history = list(self.chain_sync.history)
        last = self.chain_sync.last_weights
        miners = sorted(last.weights.items(), key=lambda kv: -kv[1]) if last else []
        # One line per miner of the last send, over the sends kept.
        shown = [hotkey for hotkey, _ in miners[:6]]
        chart = dashboard.chart(
            [at for at, _ in history],
            {dashboard.short(h): [sent.weights.get(h) for _, sent in history] for h in shown},
        )
        return {
            "on_chain": True,
            "uid": self.chain_sync.uid,
            "last": last,
            "miners": miners,
            "history": history[::-1][:20],
            "chart": chart,
        }


def _miners_seen(sessions: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    with sessions() as session:
        rows = session.execute(
            select(Miner.hotkey, Miner.uid, Miner.host, Miner.port, Miner.last_seen)
        )
        return {
            hotkey: {
                "uid": uid,
                "address": f"{host}:{port}",
                "last_seen": None if seen is None else seen.timestamp(),
            }
            for hotkey, uid, host, port, seen in rows
        }


def _counts(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as session:
        objects, stored = session.execute(
            select(func.count(), func.coalesce(func.sum(StoredObject.size), 0)).where(
                StoredObject.state == "committed"
            )
        ).one()
        segments = session.scalar(select(func.count()).select_from(Segment)) or 0
        placements = dict(
            session.execute(select(Placement.state, func.count()).group_by(Placement.state)).all()
        )
    return {
        "objects": objects,
        "stored_bytes": int(stored),
        "segments": segments,
        "placements": placements,
    }
