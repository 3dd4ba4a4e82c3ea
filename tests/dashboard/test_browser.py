"""The three dashboards in a real browser (Debian's chromium, driven by Playwright) against
a running local net: no console error, the log explorer's filter narrows its rows, a chart
has points, the miner's earnings estimate matches the chain's ledger, the pages work from
the keyboard. Screenshots go to pytest's temporary folder (and to ``docs/`` with
``SUBNET_DOCS_SCREENSHOTS=1``).

Skipped when chromium is absent, except under ``CI=true``, where it must run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from subnet.gateway_client import GatewayClient
from subnet.localnet import LocalNet, LocalNetConfig

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
DOCS = Path(__file__).parents[2] / "docs"

if not CHROMIUM.exists() and os.environ.get("CI") != "true":
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import ConsoleMessage, Page, sync_playwright  # noqa: E402


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait(what: str, check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


async def upload(net: LocalNet, folder: Path) -> None:
    async with aiohttp.ClientSession() as session:
        client = GatewayClient(session, net.user, net.validator_urls[0], folder / "caps")
        await client.connect()
        data = folder / "data.bin"
        data.write_bytes(os.urandom(3 * 2**20))
        await client.upload(data, "data.bin")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("dashboards")
    config = LocalNetConfig(miners=4, validators=1, block_time=0.05, tempo=10, capacity="1GiB")
    local = LocalNet(
        root / "net", config, service_args={"validator0": ["--challenge-seconds", "1"]}
    )
    local.up()
    try:
        asyncio.run(upload(local, root))
        yield local
    finally:
        local.down()


def credited(net: LocalNet, hotkey: str) -> bool:
    balances = get(f"{net.chain_url}/v1/balances?hotkey={hotkey}")["balances"]
    return bool(balances) and balances[0]["total"] > 0


def figure(page: Page, key: str) -> str:
    return str(page.get_attribute(f'[data-k="{key}"]', "data-value"))


def test_dashboards_in_a_browser(net: LocalNet, tmp_path: Path) -> None:
    miner = net.service("miner0")
    wait("miner0 earning", lambda: credited(net, miner.hotkey or ""))
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if _is_error(m) else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        # The miner: a chart with points, and the estimate against the chain's ledger.
        page.goto(f"{miner.url}/")
        chart = page.locator("#challenges [data-chart]").first
        assert int(chart.get_attribute("data-points") or 0) > 0
        assert page.locator("#challenges canvas").count() >= 1
        epoch = figure(page, "last_epoch")
        ledger = get(f"{net.chain_url}/v1/ledger?epoch={epoch}&hotkey={miner.hotkey}")
        assert figure(page, "last_ledger") == str(sum(c["incentive"] for c in ledger["credits"]))
        assert figure(page, "last_model") == figure(page, "last_ledger")
        assert int(figure(page, "next_epoch")) > 0
        page.screenshot(path=tmp_path / "miner.png", full_page=True)

        # The validator: the explorer's filter narrows the rows, from the keyboard too.
        validator = net.service("validator0")
        page.goto(f"{validator.url}/")
        rows = page.locator("#log tr.entry")
        before = rows.count()
        assert before > 0
        page.focus("#log input[name=miner]")
        page.keyboard.type(miner.hotkey or "")
        page.keyboard.press("Enter")  # submits the filter form
        page.wait_for_function(
            "n => document.querySelectorAll('#log tr.entry').length < n", arg=before
        )
        shown = page.locator("#log tr.entry td:nth-child(3)").evaluate_all(
            "cells => cells.map(c => c.title)"
        )
        assert shown and set(shown) == {miner.hotkey}
        page.click("button[data-fetch=verify]")
        page.wait_for_selector('#verify-result [data-k="problems"]')
        assert figure(page, "problems") == "0"
        _sort_from_the_keyboard(page, "#miners-table")
        page.screenshot(path=tmp_path / "validator.png", full_page=True)

        page.goto(f"{net.chain_url}/")
        assert int(page.locator("#emission [data-chart]").get_attribute("data-points") or 0) > 0
        _sort_from_the_keyboard(page, "#yuma-table")
        page.screenshot(path=tmp_path / "chain.png", full_page=True)
        browser.close()
    assert errors == []
    if os.environ.get("SUBNET_DOCS_SCREENSHOTS") == "1":
        for name in ("miner", "validator", "chain"):
            shutil.copy(tmp_path / f"{name}.png", DOCS / f"dashboard-{name}.png")


def _is_error(message: ConsoleMessage) -> bool:
    return message.type == "error"


def _sort_from_the_keyboard(page: Page, table: str) -> None:
    """Tab from the top of the page to the table's first sort button, press Enter."""
    page.locator("body").focus()
    first = f"{table} th:first-child button"
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement === document.querySelector('{first}')"):
            break
    else:
        raise AssertionError(f"Tab never reached {first}")
    page.keyboard.press("Enter")
    assert page.get_attribute(f"{table} th:first-child", "aria-sort") == "ascending"
