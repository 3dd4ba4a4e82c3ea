"""``subnet demo`` (what ``make demo`` runs): the whole story on one machine, for real.

A local net of separate processes (chain, 8 miners, 2 validators) with fast blocks and a
genesis issuance just below the first halving; a dataset uploaded and challenged; a miner
killed and a shard corrupted on another, both caught in the signed challenge log and
repaired; a halving; the rewards per era with the capacity and availability behind them;
the dataset downloaded and verified; everything stopped. Services log to files; the screen
gets steps and tables.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import click
from rich.console import Console
from rich.table import Table

from chain.emission import RAO_PER_TAO, TOTAL_SUPPLY
from storage_miner.store import ShardKey
from subnet.dataset import generate, verify
from subnet.gateway_client import GatewayClient
from subnet.localnet import LocalNet, LocalNetConfig
from subnet.objects_cmd import _files, _progress

HALVING_TAO = TOTAL_SUPPLY // 2 // RAO_PER_TAO
LEAF = 16 * 1024


@dataclass(frozen=True, slots=True)
class DemoPlan:
    miners: int = 8
    validators: int = 2
    block_time: float = 0.2
    tempo: int = 10
    blocks_to_halving: int = 450  # ~90 s of 0.2 s blocks: it lands around step 6
    dataset_mib: int = 48
    files: int = 24
    side_mib: int = 8  # validator1's own, smaller dataset
    settle_seconds: float = 12.0  # challenges before the faults: a few epochs' worth
    patience: float = 120.0  # the most any one wait may take

    @classmethod
    def quick(cls) -> DemoPlan:
        """The same story at test size (CI): small data, a halving close by."""
        return cls(block_time=0.1, blocks_to_halving=300, dataset_mib=6, files=8, side_mib=2,
                   settle_seconds=6.0)  # fmt: skip


@dataclass
class DemoReport:
    services: int = 0
    uploaded_bytes: int = 0
    killed: str = ""
    corrupted: dict[str, str] = field(default_factory=dict)
    detected: dict[str, dict[str, Any]] = field(default_factory=dict)
    repaired: int = 0
    halving_epoch: int | None = None
    eras: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    verified_files: int = 0
    ok: bool = False
    seconds: float = 0.0


class Demo:
    def __init__(self, root: Path, plan: DemoPlan, console: Console) -> None:
        self.root = root
        self.plan = plan
        self.console = console
        self.net = LocalNet(
            root / "net",
            LocalNetConfig(
                miners=plan.miners,
                validators=plan.validators,
                block_time=plan.block_time,
                tempo=plan.tempo,
                genesis_issuance=str(HALVING_TAO - plan.blocks_to_halving),
            ),
        )
        self.report = DemoReport()
        self.names: dict[str, str] = {}
        self.step_number = 0

    def step(self, title: str) -> None:
        self.step_number += 1
        self.console.rule(f"[bold cyan]{self.step_number}/9  {title}")

    def say(self, text: str) -> None:
        self.console.print(f"  {text}")

    # --- the story --------------------------------------------------------------------

    async def run(self) -> DemoReport:
        started = time.monotonic()
        self.step("Start a local net: a chain, 8 miners and 2 validators, each a process")
        self.net.up()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
                self.http = http
                await self._story()
        finally:
            self.step("Stop everything")
            stopped = self.net.down()
            self.say(f"stopped {len(stopped)} processes; state kept in {self.net.root}")
        self.report.seconds = round(time.monotonic() - started, 1)
        return self.report

    async def _story(self) -> None:
        self._services_table()
        self.console.print(self.net.dashboards(), highlight=False)
        for i in range(self.plan.miners):
            self.names[self.net.keypair(f"miner{i}").ss58_address] = f"miner{i}"
        for j in range(self.plan.validators):
            self.names[self.net.keypair(f"validator{j}").ss58_address] = f"validator{j}"

        self.step("Generate a test dataset and upload it")
        main = self.root / "dataset"
        side = self.root / "notes"
        generate(main, self.plan.dataset_mib * 2**20, self.plan.files, seed=7)
        generate(side, self.plan.side_mib * 2**20, 4, seed=8)
        v0, v1 = self.net.validator_urls[:2]
        self.report.uploaded_bytes = await self._upload(v0, main) + await self._upload(v1, side)

        self.step("Let challenges run for a few epochs")
        await asyncio.sleep(self.plan.settle_seconds)
        await self._wait("every miner answered a challenge", lambda: self._all_challenged(v0))
        self._summary_table(await self._get(f"{v0}/v1/audit/summary"))

        self.step("Kill one miner, and corrupt a shard on another")
        await self._faults(v0)

        self.step("Both show in the challenge log, and are repaired")
        await self._wait("the faults detected and repaired", lambda: self._detected(v0), 3)
        self._detection_table()

        self.step("Let a halving happen")
        await self._wait("the first halving", self._halving)
        self.say(f"issuance crossed {HALVING_TAO:,} TAO in epoch {self.report.halving_epoch}: "
                 "the block reward halved from 1 to 0.5 TAO")  # fmt: skip

        self.step("Rewards per era, with the capacity and availability behind them")
        await self._rewards_table()

        self.step("Download the dataset and verify it")
        self.report.verified_files = await self._download_and_verify(v0, main, "dataset") + (
            await self._download_and_verify(v1, side, "notes")
        )
        self.report.ok = True

    # --- steps ------------------------------------------------------------------------

    def _services_table(self) -> None:
        table = Table(box=None, padding=(0, 2))
        for column in ("service", "url", "pid", "log"):
            table.add_column(column)
        for service in self.net.services:
            table.add_row(service.name, service.url, str(service.pid), service.log)
        self.report.services = len(self.net.services)
        self.console.print(table)

    async def _upload(self, url: str, folder: Path) -> int:
        client = GatewayClient(self.http, self.net.user, url, self.root / "capabilities")
        await client.connect()
        files = [(path, name, path.stat().st_size) for path, name in _files((folder,))]
        total = sum(size for _, _, size in files)
        with _progress(self.console, disable=False) as progress:
            task = progress.add_task(f"upload {folder.name} to {url}", total=total)
            for path, name, _ in files:
                await client.upload(path, name, on_bytes=lambda n: progress.advance(task, n))
        self.say(f"{len(files)} files, {total / 2**20:.1f} MiB stored at {url}")
        return total

    async def _all_challenged(self, url: str) -> bool:
        summary = await self._get(f"{url}/v1/audit/summary")
        miners = [m for m in summary["miners"] if m["miner"] in self.names]
        return len(miners) >= self.plan.miners and all(m["challenges"] > 0 for m in miners)

    def _summary_table(self, summary: dict[str, Any]) -> None:
        table = Table(title="validator0's challenges so far", box=None, padding=(0, 2))
        for column in ("miner", "challenges", "pass rate", "p50 ms", "p99 ms", "verified",
                       "weight"):  # fmt: skip
            table.add_column(column, justify="left" if column == "miner" else "right")
        for row in summary["miners"]:
            table.add_row(
                self.names.get(row["miner"], row["miner"][:10]), str(row["challenges"]),
                f"{row['pass_rate']:.0%}" if row["pass_rate"] is not None else "-",
                _ms(row["p50_ms"]), _ms(row["p99_ms"]),
                f"{row['verified_bytes'] / 2**20:.1f} MiB", f"{row['weight']:.3f}",
            )  # fmt: skip
        self.console.print(table)

    async def _faults(self, url: str) -> None:
        victim = self.net.service("miner2")
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        self.report.killed = victim.hotkey or ""
        self.say(f"miner2 (pid {victim.pid}) killed with SIGKILL")
        target = self.net.service("miner5")
        log = await self._get(f"{url}/v1/audit/log", miner=target.hotkey or "", kind="merkle")
        shard_id = log["entries"][0]["shard_id"]
        validator = (await self._get(f"{url}/v1/info"))["hotkey"]
        path = (
            self.net.root / "miners" / "miner5" / "shards" / ShardKey(validator, shard_id).relative
        )
        with path.open("r+b") as shard:
            data = bytearray(shard.read())
            for offset in range(0, len(data), LEAF):
                data[offset] ^= 0xFF  # every leaf: whichever are challenged, all are wrong
            shard.seek(0)
            shard.write(data)
        self.report.corrupted = {"miner": target.hotkey or "", "shard": shard_id}
        self.say(f"shard {shard_id[:16]}… on miner5 corrupted in place ({len(data):,} bytes)")

    async def _detected(self, url: str) -> bool:
        killed, corrupt = self.report.killed, self.report.corrupted["shard"]
        found: dict[str, dict[str, Any]] = {}
        self.report.repaired = 0
        after = -1
        while True:
            page = await self._get(f"{url}/v1/audit/log", after=str(after))
            for entry in page["entries"]:
                if entry["verdict"] != "pass" and entry["kind"] != "repair":
                    if entry["miner"] == killed:
                        found.setdefault("killed", entry)
                        if entry["verdict"] == "timeout":
                            found["killed_lost"] = entry
                    if entry["shard_id"] == corrupt:
                        found.setdefault("corrupt", entry)
                if entry["kind"] == "repair":
                    found.setdefault("repaired_first", entry)
                    if killed in entry["reason"]:
                        found["killed_repaired"] = entry
                    if entry["shard_id"] == corrupt:
                        found["corrupt_repaired"] = entry
                    self.report.repaired += 1
            if page["next"] is None:
                break
            after = page["next"]
        self.report.detected = found
        return {"killed_repaired", "corrupt_repaired", "corrupt"} <= set(found)

    def _detection_table(self) -> None:
        table = Table(title="from validator0's signed challenge log", box=None, padding=(0, 2))
        for column in ("what", "seq", "miner", "kind", "verdict"):
            table.add_column(column)
        labels = {
            "killed": "miner2 first missed a deadline",
            "killed_lost": "…and after 3 rechecks counts as lost",
            "corrupt": "the corrupt shard was caught",
            "killed_repaired": "a share miner2 held, rebuilt",
            "corrupt_repaired": "the corrupt share, rebuilt",
        }
        for key, label in labels.items():
            entry = self.report.detected.get(key)
            if entry is not None:
                table.add_row(
                    label, str(entry["seq"]), self.names.get(entry["miner"], entry["miner"][:10]),
                    entry["kind"], entry["verdict"],
                )  # fmt: skip
        self.console.print(table)
        corrupt = self.report.detected.get("corrupt")
        if corrupt is not None:
            self.say(f"why the corrupt shard failed: {corrupt['reason']}")
        self.say(f"{self.report.repaired} shares rebuilt and placed on new miners so far")
        self.say("check the log yourself: subnet audit verify --url " + self.net.validator_urls[0])

    async def _halving(self) -> bool:
        epochs = (await self._get(f"{self.net.chain_url}/v1/epochs"))["epochs"]
        crossed = [e["number"] for e in epochs if e["last_era"] >= 1]
        if crossed:
            self.report.halving_epoch = min(crossed)
        return bool(crossed)

    async def _rewards_table(self) -> None:
        credits = (await self._get(f"{self.net.chain_url}/v1/ledger"))["credits"]
        earned: dict[tuple[int, str], int] = defaultdict(int)
        latest: dict[tuple[int, str], tuple[int, Any, Any]] = {}
        for c in credits:
            key = (c["era"], c["hotkey"])
            earned[key] += c["amount"]
            if key not in latest or c["epoch"] >= latest[key][0]:
                latest[key] = (c["epoch"], c["capacity_bytes"], c["availability"])
        eras = sorted({era for era, _ in earned})
        table = Table(title="credits from the chain's ledger", box=None, padding=(0, 2))
        table.add_column("hotkey")
        for era in eras:
            table.add_column(f"era {era} TAO", justify="right")
        table.add_column("capacity", justify="right")
        table.add_column("availability", justify="right")
        hotkeys = sorted({h for _, h in earned}, key=lambda h: self.names.get(h, "~" + h))
        for hotkey in hotkeys:
            last_era = max(e for e in eras if (e, hotkey) in earned)
            _, capacity, available = latest[(last_era, hotkey)]
            self.report.eras.setdefault(self.names.get(hotkey, hotkey), {})
            for era in eras:
                self.report.eras[self.names.get(hotkey, hotkey)][str(era)] = {
                    "tao": earned.get((era, hotkey), 0) / RAO_PER_TAO
                }
            table.add_row(
                self.names.get(hotkey, "subnet owner"),
                *(f"{earned.get((era, hotkey), 0) / RAO_PER_TAO:,.3f}" for era in eras),
                "-" if capacity is None else f"{capacity / 2**20:.1f} MiB",
                "-" if available is None else f"{available:.3f}",
            )
        self.console.print(table)
        total = sum(earned.values()) / RAO_PER_TAO
        self.say(f"{total:,.3f} TAO credited over {len({c['epoch'] for c in credits})} epochs; "
                 "each epoch's credits sum exactly to its emission")  # fmt: skip

    async def _download_and_verify(self, url: str, source: Path, name: str) -> int:
        client = GatewayClient(self.http, self.net.user, url, self.root / "capabilities")
        await client.connect()
        objects = [o for o in await client.list() if o["name"].startswith(name + "/")]
        out = self.root / "downloaded" / name
        with _progress(self.console, disable=False) as progress:
            task = progress.add_task(f"download {name}", total=sum(o["size"] for o in objects))
            for o in objects:
                target = out / o["name"][len(name) + 1 :]
                await client.download(o["id"], target, lambda n: progress.advance(task, n))
        result = await asyncio.to_thread(verify, out)
        if not result.ok:
            raise click.ClickException(f"{name}: downloaded files differ: {result}")
        self.say(f"{name}: {len(objects)} files downloaded, every sha256 matches {source.name}")
        return len(objects)

    # --- helpers ----------------------------------------------------------------------

    async def _get(self, url: str, **query: str) -> dict[str, Any]:
        async with self.http.get(url, params=query or None) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            if response.status != 200:
                raise click.ClickException(f"{url}: {response.status} {body}")
            return body

    async def _wait(
        self, what: str, check: Callable[[], Awaitable[bool]], every: float = 1.0
    ) -> None:
        deadline = time.monotonic() + self.plan.patience
        with self.console.status(f"waiting for {what}…"):
            while not await check():
                if time.monotonic() > deadline:
                    raise click.ClickException(
                        f"gave up waiting for {what} after {self.plan.patience:.0f} s; "
                        f"the services' logs are in {self.net.root / 'logs'}"
                    )
                await asyncio.sleep(every)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@click.command()
@click.option(
    "--dir",
    "work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-data"),
    show_default=True,
    help="Work folder (wiped first): the local net, the dataset and what comes back.",
)
@click.option("--quick", is_flag=True, help="Small data and a near halving (what CI runs).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report at the end.")
def demo(work: Path, quick: bool, as_json: bool) -> None:
    """Run the whole subnet locally and tell its story in about three minutes.

    \b
    1. a chain, 8 miners and 2 validators as processes on loopback
    2. a test dataset generated and uploaded
    3. challenges for a few epochs
    4. one miner killed, a shard corrupted on another
    5. both caught in the signed challenge log, and repaired
    6. a halving
    7. the rewards per era, with capacity and availability
    8. the dataset downloaded and verified
    9. everything stopped
    """
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    console = Console(stderr=as_json)
    plan = DemoPlan.quick() if quick else DemoPlan()
    report = asyncio.run(Demo(work.absolute(), plan, console).run())
    if as_json:
        click.echo(json.dumps(report.__dict__, default=str))
    console.print(f"[bold green]done in {report.seconds:.0f} s")
