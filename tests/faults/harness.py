"""The fault suite's side of a local net: inject faults, upload, and check nothing was lost.

One :class:`Harness` drives one :class:`~subnet.localnet.LocalNet` of real processes for
every scenario. It counts what it injects, remembers the sha256 of every object a validator
committed, and after each scenario checks, through the public APIs only, that

- each validator lists exactly the objects it committed (no half-written one, none missing),
  and every one downloads byte-identical;
- the chain closed every due epoch exactly once, in order, and each epoch's ledger credits
  sum exactly to its emission.

Nothing of ours is mocked: faults are signals to PIDs, files changed on a miner's disk, and
PostgreSQL backends terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from storage_miner.store import ShardKey
from subnet.gateway_client import GatewayClient, GatewayError
from subnet.localnet import LocalNet

MiB = 2**20
PATIENCE = 90.0  # the longest any one wait may take


@dataclass
class Totals:
    """What the suite did, for docs/benchmarks.md: written to ``faults.json``."""

    faults: Counter[str] = field(default_factory=Counter)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects_committed: int = 0
    downloads_verified: int = 0
    objects_lost: set[str] = field(default_factory=set)
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "faults_injected": sum(self.faults.values()),
            "faults": dict(sorted(self.faults.items())),
            "objects_committed": self.objects_committed,
            "downloads_verified": self.downloads_verified,
            "objects_lost": len(self.objects_lost),
            "lost": sorted(self.objects_lost),
            "scenarios": self.scenarios,
            "notes": self.notes,
        }


class Harness:
    def __init__(self, net: LocalNet, work: Path, pg_url: str | None) -> None:
        self.net = net
        self.work = work
        self.pg_url = pg_url  # validator1's database, when PostgreSQL is reachable
        self.totals = Totals()
        # validator service name -> object name -> sha256 of what was uploaded
        self.expected: dict[str, dict[str, str]] = defaultdict(dict)
        self._files = 0

    # --- names -------------------------------------------------------------------------

    @property
    def miners(self) -> list[str]:
        return [s.name for s in self.net.services if s.role == "miner"]

    def url(self, name: str) -> str:
        return self.net.service(name).url

    def hotkey(self, name: str) -> str:
        hotkey = self.net.service(name).hotkey
        assert hotkey is not None
        return hotkey

    def shard_path(self, miner: str, validator: str, shard_id: str) -> Path:
        key = ShardKey(self.hotkey(validator), shard_id)
        return self.net.root / "miners" / miner / "shards" / key.relative

    def shard_files(self, miner: str, validator: str) -> dict[str, Path]:
        """The shards a miner keeps on disk for a validator: shard id -> file."""
        folder = self.shard_path(miner, validator, "0" * 64).parents[2]
        if not folder.is_dir():
            return {}
        return {p.name: p for p in folder.glob("*/*/*") if p.suffix == ""}

    # --- faults ------------------------------------------------------------------------

    def fault(self, kind: str, count: int = 1) -> None:
        self.totals.faults[kind] += count

    def signal(self, sig: signal.Signals, *names: str) -> None:
        """Send ``sig`` to each service's process at once, counting each as a fault."""
        for name in names:
            pid = self.net.service(name).pid
            assert pid is not None, name
            os.kill(pid, sig)
            self.fault(f"{sig.name} {self.net.service(name).role}")

    def kill(self, *names: str) -> None:
        self.signal(signal.SIGKILL, *names)

    def resume(self, *names: str) -> None:
        """SIGCONT: the end of a SIGSTOP fault, not a fault of its own."""
        for name in names:
            pid = self.net.service(name).pid
            assert pid is not None, name
            os.kill(pid, signal.SIGCONT)

    async def restart(self, *names: str) -> None:
        """Start the services again, in parallel, and wait until each is healthy."""
        await asyncio.gather(*(asyncio.to_thread(self.net.restart, name) for name in names))

    async def heal(self) -> None:
        """Continue stopped services and restart dead ones, so that a scenario that failed
        half-way does not leave the next one a broken net."""
        status = await asyncio.to_thread(self.net.status)
        for service in status.services:
            if service.alive and not service.healthy and service.service.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(service.service.pid, signal.SIGCONT)  # it may be stopped
        dead = [s.service.name for s in status.services if not s.alive]
        if dead:
            await self.restart(*dead)

    # --- objects -----------------------------------------------------------------------

    def make_file(self, size: int, tag: str = "obj") -> tuple[Path, str]:
        """A new file of random bytes; returns its path and sha256."""
        self._files += 1
        path = self.work / "files" / f"{tag}-{self._files}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        return path, hashlib.sha256(data).hexdigest()

    async def client(self, http: aiohttp.ClientSession, validator: str) -> GatewayClient:
        client = GatewayClient(http, self.net.user, self.url(validator), self.work / "caps")
        await client.connect()
        return client

    async def upload(
        self,
        http: aiohttp.ClientSession,
        validator: str,
        name: str,
        path: Path,
        sha256: str,
        on_bytes: Callable[[int], None] = lambda _n: None,
    ) -> dict[str, Any]:
        """Upload and, once the validator says it committed, expect the object from now on."""
        client = await self.client(http, validator)
        result = await client.upload(path, name, on_bytes=on_bytes)
        self.committed(validator, name, sha256)
        return result

    def committed(self, validator: str, name: str, sha256: str) -> None:
        self.expected[validator][name] = sha256
        self.totals.objects_committed += 1

    async def listed(self, http: aiohttp.ClientSession, validator: str) -> dict[str, str]:
        """Object name -> id, as the validator lists them."""
        client = await self.client(http, validator)
        return {o["name"]: o["id"] for o in await client.list()}

    async def check_objects(
        self,
        http: aiohttp.ClientSession,
        *,
        validators: Iterable[str] | None = None,
        only: Iterable[str] | None = None,
    ) -> int:
        """Every validator lists exactly what it committed, and (of ``only``, if given)
        every object downloads with the sha256 that was uploaded. Returns the count."""
        checked = 0
        wanted = None if only is None else set(only)
        lost: list[str] = []
        for validator in validators or list(self.expected):
            expected = self.expected[validator]
            listed = await self.listed(http, validator)
            unexpected = sorted(set(listed) - set(expected))
            assert not unexpected, f"{validator} lists objects never committed: {unexpected}"
            client = await self.client(http, validator)
            for name, sha256 in sorted(expected.items()):
                if wanted is not None and name not in wanted:
                    continue
                target = self.work / "downloads" / validator / name
                if name not in listed:
                    lost.append(f"{validator}:{name}: not listed")
                    continue
                try:
                    await client.download(listed[name], target)
                except (GatewayError, aiohttp.ClientError) as exc:
                    lost.append(f"{validator}:{name}: {exc}")
                    continue
                digest = await asyncio.to_thread(_sha256, target)
                target.unlink()
                if digest != sha256:
                    lost.append(f"{validator}:{name}: sha256 {digest} != {sha256}")
                    continue
                checked += 1
        self.totals.downloads_verified += checked
        self.totals.objects_lost.update(lost)
        assert not lost, f"objects lost: {lost}"
        return checked

    # --- the chain ---------------------------------------------------------------------

    async def check_ledger(self, http: aiohttp.ClientSession) -> int:
        """Every due epoch closed exactly once and in order, issuance chained from one to the
        next, and each epoch's credits sum exactly to its emission. Returns the epochs."""
        chain = self.net.chain_url
        tempo = self.net.config.tempo
        before = (await _get(http, f"{chain}/v1/block"))["block"]
        epochs = (await _get(http, f"{chain}/v1/epochs", limit="1000"))["epochs"]
        after = (await _get(http, f"{chain}/v1/block"))["block"]
        credits = (await _get(http, f"{chain}/v1/ledger"))["credits"]
        epochs.sort(key=lambda e: e["number"])
        numbers = [e["number"] for e in epochs]
        assert numbers == list(range(1, len(numbers) + 1)), f"epochs closed: {numbers}"
        assert before // tempo <= numbers[-1] <= after // tempo, (before, numbers[-1], after)
        sums: dict[int, int] = defaultdict(int)
        for credit in credits:
            sums[credit["epoch"]] += credit["amount"]
        previous = None
        for epoch in epochs:
            assert epoch["emission"] == epoch["end_issuance"] - epoch["start_issuance"], epoch
            if previous is not None:
                assert epoch["start_issuance"] == previous["end_issuance"], (previous, epoch)
            assert sums[epoch["number"]] == epoch["emission"], (epoch, sums[epoch["number"]])
            previous = epoch
        # The per-epoch query agrees with the whole ledger (first and last epoch).
        for number in {numbers[0], numbers[-1]}:
            one = (await _get(http, f"{chain}/v1/ledger", epoch=str(number)))["credits"]
            assert sum(c["amount"] for c in one) == epochs[number - 1]["emission"]
        return len(epochs)

    async def check_all(self, http: aiohttp.ClientSession) -> None:
        """What every scenario ends with: all services healthy, every committed object
        byte-identical, the ledger exact."""
        await self.wait_until("every service healthy", self._all_healthy)
        await self.check_objects(http)
        await self.check_ledger(http)

    async def _all_healthy(self) -> bool:
        status = await asyncio.to_thread(self.net.status)
        return status.healthy

    # --- the challenge log -------------------------------------------------------------

    async def log(
        self, http: aiohttp.ClientSession, validator: str, *, after: int = -1, **where: str
    ) -> list[dict[str, Any]]:
        """Entries of the validator's signed log with seq > ``after``, all pages."""
        entries: list[dict[str, Any]] = []
        while True:
            page = await _get(
                http, f"{self.url(validator)}/v1/audit/log", after=str(after), **where
            )
            entries += page["entries"]
            if page["next"] is None:
                return entries
            after = page["next"]

    async def log_head(self, http: aiohttp.ClientSession, validator: str) -> int:
        """The sequence number of the validator's last log entry (-1 for none)."""
        entries = await self.log(http, validator)
        return entries[-1]["seq"] if entries else -1

    # --- metrics and logs --------------------------------------------------------------

    async def requests(
        self,
        http: aiohttp.ClientSession,
        name: str,
        route: str | None = None,
        method: str | None = None,
    ) -> Counter[str]:
        """A service's requests (to one route, by one method, if given) by HTTP status, from
        its /metrics."""
        async with http.get(f"{self.url(name)}/metrics") as response:
            text = await response.text()
        counts: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name.endswith("_requests_total")
                    and route in (None, labels.get("route"))
                    and method in (None, labels.get("method"))
                ):
                    counts[labels["status"]] += int(sample.value)
        return counts

    def log_size(self, name: str) -> int:
        return Path(self.net.service(name).log).stat().st_size

    def log_since(self, name: str, offset: int) -> str:
        with Path(self.net.service(name).log).open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    # --- waiting -----------------------------------------------------------------------

    async def wait_until(
        self, what: str, check: Callable[[], Awaitable[bool]], patience: float = PATIENCE
    ) -> float:
        """Poll ``check`` until it holds; returns the seconds it took."""
        started = time.monotonic()
        while not await check():
            waited = time.monotonic() - started
            assert waited < patience, (
                f"gave up waiting for {what} after {waited:.0f} s; logs: {self.net.root / 'logs'}"
            )
            await asyncio.sleep(0.25)
        return time.monotonic() - started

    def write(self, path: Path) -> dict[str, Any]:
        report = self.totals.to_dict()
        path.write_text(json.dumps(report, indent=2) + "\n")
        return report


class HttpError(Exception):
    """A public GET that did not answer 200."""

    def __init__(self, url: str, status: int, body: object) -> None:
        super().__init__(f"{url}: {status} {body}")
        self.status = status


async def _get(http: aiohttp.ClientSession, url: str, **query: str) -> dict[str, Any]:
    async with http.get(url, params=query or None) as response:
        body: dict[str, Any] = await response.json(content_type=None)
        if response.status != 200:
            raise HttpError(url, response.status, body)
        return body


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()
