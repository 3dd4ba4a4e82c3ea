"""The validator's dashboard against a real validator and miners on loopback: the page's
figures are what the audit API says, the explorer's filters narrow it, "verify" checks it."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tests.dashboard.figures import figures
from tests.validator.conftest import LiveMiner
from tests.validator.test_challenger import audit_api, stored  # noqa: F401 - fixtures
from validator.challenger import Challenger
from validator.dashboard import Explorer, search
from validator.log_store import LogFilter
from validator.models import ChallengeRecord

_ROW = re.compile(r'<tr data-miner="([^"]+)">(.*?)</tr>', re.S)
_CELL = re.compile(r'data-value="([^"]*)" data-k="([a-z_]+)"')
_SEQ = re.compile(r'<tr class="entry" data-seq="(\d+)" data-verdict="(\w+)"')


async def test_page_matches_the_audit_api_and_the_explorer_filters(
    audit_api: tuple[TestClient[Any, Any], Challenger],  # noqa: F811
    live_miners: list[LiveMiner],
    sessions: sessionmaker[Session],
) -> None:
    client, checker = audit_api
    await checker.run_round()
    await checker.run_round()
    page = await client.get("/")
    assert page.status == 200
    # timed, not judged: speed lives in bench.dashboard
    assert float(page.headers["X-Render-Ms"]) >= 0
    html = await page.text()
    summary = await (await client.get("/v1/audit/summary")).json()
    rows = {m: {k: v for v, k in _CELL.findall(body)} for m, body in _ROW.findall(html)}
    assert set(rows) == {r["miner"] for r in summary["miners"]}
    for r in summary["miners"]:
        shown = rows[r["miner"]]
        assert float(shown["pass_rate"]) == r["pass_rate"]
        assert int(shown["verified_bytes"]) == r["verified_bytes"]
        assert abs(float(shown["weight"]) - r["weight"]) < 1e-9
    assert figures(html)["rounds"] == str(summary["rounds"])
    assert len(_SEQ.findall(html)) == 48  # the whole log so far, newest first
    assert figures(html)["segments"] != "0"

    hotkey = live_miners[2].key.ss58_address
    narrowed = await (await client.get("/dashboard/log", params={"miner": hotkey})).text()
    api = await (await client.get("/v1/audit/log", params={"miner": hotkey})).json()
    assert [int(s) for s, _ in _SEQ.findall(narrowed)] == sorted(
        (e["seq"] for e in api["entries"]), reverse=True
    )
    none = await (await client.get("/dashboard/log", params={"verdict": "wrong"})).text()
    assert _SEQ.findall(none) == []
    assert (await client.get("/dashboard/log", params={"verdict": "maybe"})).status == 400

    checked = await (await client.get("/dashboard/verify", params={"miner": hotkey})).text()
    assert figures(checked)["problems"] == "0"
    with sessions.begin() as session:  # rewrite history: the check must notice
        session.execute(
            update(ChallengeRecord).where(ChallengeRecord.seq == 5).values(verdict="wrong")
        )
    checked = await (await client.get("/dashboard/verify")).text()
    assert figures(checked)["problems"] == "2"  # the edited entry, and the link after it
    assert "entry 5: signature does not match" in checked
    assert "entry 6: does not follow the entry before it" in checked

    for panel in ("miners", "repair", "objects", "weights"):
        assert (await client.get(f"/dashboard/{panel}")).status == 200, panel


async def test_the_explorer_reads_a_bounded_stretch_and_pages_back_through_all_of_it(
    audit_api: tuple[TestClient[Any, Any], Challenger],  # noqa: F811
    live_miners: list[LiveMiner],
) -> None:
    client, checker = audit_api
    await checker.run_round()
    await checker.run_round()
    hotkey = live_miners[2].key.ss58_address
    api = await (await client.get("/v1/audit/log", params={"miner": hotkey})).json()
    for where, expected in (
        (LogFilter(miner=hotkey), [e["seq"] for e in api["entries"]]),
        (LogFilter(), list(range(48))),
        (LogFilter(verdict="wrong"), []),
    ):
        seen: list[int] = []
        explorer = Explorer(where, "")
        for _ in range(20):  # each page looks at 10 entries at most: 5 pages cover 48
            found = search(checker.sessions, explorer, limit=4, scan=10)
            assert found.searched_to - found.searched_from < 10
            assert all(found.searched_from <= e.seq <= found.searched_to for e in found.entries)
            seen += [e.seq for e in found.entries]
            if found.searched_from == 0 and len(found.entries) < 4:
                break
            below = found.entries[-1].seq if len(found.entries) == 4 else found.searched_from
            explorer = replace(explorer, before=below)
        assert seen == sorted(expected, reverse=True), where

    page = await (await client.get("/dashboard/log")).text()
    assert "entries 0 to 47" in page
    assert "look further back" not in page  # all 48 were looked at, 100 may be shown
    older = await (await client.get("/dashboard/log", params={"before": "20"})).text()
    assert [int(s) for s, _ in _SEQ.findall(older)] == list(range(19, -1, -1))
    assert (await client.get("/dashboard/log", params={"before": "-1"})).status == 400
