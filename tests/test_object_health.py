"""What a user and an operator are told about redundancy, through real processes and the CLI.

Three miners (each on its own loopback address, so three distinct hosts) serve two
validators: ``short`` codes 2-of-4 (one more share than there are hosts: every segment is
stored with 3 of 4 shares), ``full`` codes 2-of-3 (every share placed). Both repair every
0.3 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from protocol.wallet import create_wallet, load_hotkey
from subnet.gateway_client import GatewayClient, GatewayError
from subnet.processes import free_port, running, start_subnet_command, wait_healthy

MINERS = 3
SEGMENT = 64 * 1024
SEGMENTS = 10

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("health")
    wallets = tmp / "wallets"
    env = {**os.environ, "HOME": str(tmp / "home")}
    hotkeys = {
        name: create_wallet(name, "default", wallets).ss58_address
        for name in ("short", "full", "alice", "bob")
    }
    with ExitStack() as stack:
        miners, entries = [], []
        for i in range(MINERS):
            hotkey = create_wallet(f"miner{i}", "default", wallets).ss58_address
            host, port = f"127.0.0.{i + 2}", free_port()
            log = tmp / f"miner{i}.log"
            argv = [
                "miner", "run", "--wallet-name", f"miner{i}", "--wallet-path", str(wallets),
                "--host", host, "--port", str(port), "--data-dir", str(tmp / f"m{i}"),
                "--validators", f"{hotkeys['short']},{hotkeys['full']}",
                "--log-level", "warning",
            ]  # fmt: skip
            proc = stack.enter_context(running(start_subnet_command(argv, log, env)))
            miners.append((proc, f"http://{host}:{port}", log))
            entries.append(f"{hotkey}@{host}:{port}")
        for proc, url, log in miners:
            wait_healthy(url, proc, log)
        urls, logs = {}, {}
        for name, (k, m) in {"short": (2, 4), "full": (2, 3)}.items():
            port = free_port()
            logs[name] = tmp / f"{name}.log"
            argv = [
                "validator", "run", "--wallet-name", name, "--wallet-path", str(wallets),
                "--port", str(port), "--data-dir", str(tmp / name),
                "--users", f"alice={hotkeys['alice']},bob={hotkeys['bob']}",
                "--miners", ",".join(entries), "--k", str(k), "--m", str(m),
                "--segment-size", f"{SEGMENT // 1024}KiB", "--leaf-size", "4KiB",
                "--repair-seconds", "0.3", "--challenge-seconds", "0.5",
                "--log-format", "json", "--log-level", "info",
            ]  # fmt: skip
            proc = stack.enter_context(running(start_subnet_command(argv, logs[name], env)))
            urls[name] = f"http://127.0.0.1:{port}"
            wait_healthy(urls[name], proc, logs[name])
        data = tmp / "data"
        data.mkdir()
        (data / "a.bin").write_bytes(os.urandom(SEGMENTS * SEGMENT - 100))
        (data / "b.bin").write_bytes(os.urandom(3 * SEGMENT))
        yield {"tmp": tmp, "wallets": wallets, "env": env, "urls": urls, "logs": logs,
               "data": data}  # fmt: skip


def cli(net: dict[str, Any], validator: str, *args: str, user: str = "alice") -> Any:
    return subprocess.run(
        [sys.executable, "-m", "subnet", *args, "--url", net["urls"][validator],
         "--wallet-name", user, "--wallet-path", str(net["wallets"])],
        capture_output=True, text=True, timeout=120, check=False, env=net["env"],
    )  # fmt: skip


def log_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def test_the_uploader_is_told_the_redundancy_it_got(net: dict[str, Any]) -> None:
    short = cli(net, "short", "upload", str(net["data"] / "a.bin"))
    assert short.returncode == 0, short.stderr
    warnings = [line for line in short.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, short.stderr
    assert f"{SEGMENTS} of {SEGMENTS} segments stored with 3 of 4 shares" in warnings[0]
    assert "--external-host" in warnings[0]
    as_json = cli(net, "short", "upload", str(net["data"] / "b.bin"), "--json")
    [stored] = json.loads(as_json.stdout)["objects"]
    assert "3 of 4 shares" in stored["warning"]

    full = cli(net, "full", "upload", str(net["data"] / "a.bin"))
    assert full.returncode == 0, full.stderr
    assert "warning" not in full.stderr
    assert "warning" not in full.stdout


def test_check_shows_shares_per_segment_and_exits_by_the_worst(net: dict[str, Any]) -> None:
    for validator in ("short", "full"):
        cli(net, validator, "upload", str(net["data"] / "b.bin"))
    at_risk = cli(net, "short", "check", "b.bin")
    assert at_risk.returncode == 3, at_risk.stderr
    assert "AT RISK" in at_risk.stdout
    assert "3 segments with 3 of 4" in at_risk.stdout
    assert "short of m:    segments 0-2" in at_risk.stdout
    healthy = cli(net, "full", "check", "b.bin", "--json")
    assert healthy.returncode == 0, healthy.stderr
    [report] = json.loads(healthy.stdout)["objects"]
    assert (report["status"], report["shares"], report["k"], report["m"]) == (
        "healthy", [3, 3, 3], 2, 3,
    )  # fmt: skip
    assert report["at_risk_segments"] == report["lost_segments"] == []
    # Challenges pass within a few rounds: the last verified time appears.
    deadline = time.monotonic() + 30
    while report["last_verified"] is None and time.monotonic() < deadline:
        time.sleep(0.5)
        [report] = json.loads(cli(net, "full", "check", "b.bin", "--json").stdout)["objects"]
    assert report["last_verified"] is not None
    assert "last verified: never" not in cli(net, "full", "check", "b.bin").stdout

    listed = cli(net, "short", "ls", "--health", "--json")
    assert listed.returncode == 3
    statuses = {o["name"]: o["status"] for o in json.loads(listed.stdout)["objects"]}
    assert statuses["b.bin"] == "at_risk"
    table = cli(net, "short", "ls", "--health")
    assert "AT RISK" in table.stdout and "3 of 4" in table.stdout

    # A folder: the objects under it, and only those.
    cli(net, "full", "upload", str(net["data"]))
    folder = cli(net, "full", "check", "data/", "--json")
    assert folder.returncode == 0, folder.stderr
    names = {o["name"] for o in json.loads(folder.stdout)["objects"]}
    assert names == {"data/a.bin", "data/b.bin"}
    listed = cli(net, "full", "ls", "--health", "data/", "--json")
    assert {o["name"] for o in json.loads(listed.stdout)["objects"]} == names
    assert cli(net, "full", "check", "nothing/").returncode == 1


def test_a_user_checks_only_their_own_objects(net: dict[str, Any]) -> None:
    cli(net, "full", "upload", str(net["data"] / "b.bin"))
    mine = cli(net, "full", "ls", "--health", "--json", user="bob")
    assert json.loads(mine.stdout)["objects"] == []
    assert mine.returncode == 0
    theirs = cli(net, "full", "check", "b.bin", user="bob")
    assert theirs.returncode == 1
    assert "not_found" in theirs.stderr


def test_a_segment_that_cannot_be_repaired_is_logged_once_per_change(
    net: dict[str, Any],
) -> None:
    cli(net, "short", "upload", str(net["data"] / "a.bin"))
    checked = json.loads(cli(net, "short", "ls", "--health", "--json").stdout)["objects"]
    short = sum(len(o["at_risk_segments"]) for o in checked)
    assert short >= SEGMENTS

    def stuck() -> list[dict[str, Any]]:
        return [
            r for r in log_records(net["logs"]["short"])
            if r["event"] == "segment repair incomplete"
        ]  # fmt: skip

    time.sleep(1.5)  # a few repair passes: every short segment has been tried
    before = stuck()
    # Each segment short of a share (no fourth host to take it) is named once, in a line
    # per change (one per upload here), never once per segment per pass.
    assert sum(r["segments"] for r in before) == short, before
    assert all("no eligible miner on a new host" in r["why"] for r in before)
    time.sleep(3)  # ten more passes
    assert stuck() == before


def test_uploads_and_deletes_are_logged(net: dict[str, Any]) -> None:
    cli(net, "full", "upload", str(net["data"] / "a.bin"))
    removed = cli(net, "full", "rm", "a.bin")
    assert removed.returncode == 0, removed.stderr
    records = log_records(net["logs"]["full"])
    [stored] = [r for r in records if r["event"] == "object stored"][:1]
    assert (stored["user"], stored["object_name"], stored["segments"]) == (
        "alice",
        "a.bin",
        SEGMENTS,
    )
    assert stored["size"] == SEGMENTS * SEGMENT - 100
    assert stored["shares"] == "3 of 3 (k=2)"
    [deleted] = [r for r in records if r["event"] == "object deleted"]
    assert (deleted["user"], deleted["object_name"]) == ("alice", "a.bin")


def test_a_skipped_file_shows_its_size_once_and_no_transfer(net: dict[str, Any]) -> None:
    folder = net["tmp"] / "skips"
    folder.mkdir()
    (folder / "old.bin").write_bytes(os.urandom(50_000))
    first = cli(net, "full", "upload", str(folder))
    assert first.returncode == 0, first.stderr
    (folder / "new.bin").write_bytes(os.urandom(20_000))
    again = cli(net, "full", "upload", str(folder))
    assert again.returncode == 0, again.stderr
    lines = {line.split()[1]: line for line in again.stdout.splitlines()[:2]}
    assert lines["skips/old.bin"].startswith("present")
    assert "50,000 B  (skipped: already stored, unchanged)" in lines["skips/old.bin"]
    assert lines["skips/new.bin"].startswith("stored")
    assert "skipped" not in lines["skips/new.bin"]
    # The bar counts what was sent: the new file alone, never 70.0 kB or more.
    assert "20.0/20.0 kB" in again.stderr, again.stderr
    assert "70.0" not in again.stderr


def test_download_gives_files_the_mode_they_were_uploaded_with(net: dict[str, Any]) -> None:
    folder = net["tmp"] / "modes"
    folder.mkdir()
    modes = {"run.sh": 0o755, "private.txt": 0o600, "shared.txt": 0o664}
    for name, mode in modes.items():
        (folder / name).write_bytes(os.urandom(1000))
        (folder / name).chmod(mode)
    assert cli(net, "full", "upload", str(folder)).returncode == 0
    copy = net["tmp"] / "modes-copy"
    got = cli(net, "full", "download", "modes/", "-o", str(copy))
    assert got.returncode == 0, got.stderr
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in copy.iterdir()} == modes
    one = cli(net, "full", "download", "modes/run.sh", "-o", str(net["tmp"] / "one.sh"))
    assert one.returncode == 0, one.stderr
    assert stat.S_IMODE((net["tmp"] / "one.sh").stat().st_mode) == 0o755


def test_an_object_stored_without_a_mode_downloads_with_the_default(
    net: dict[str, Any],
) -> None:
    source = net["tmp"] / "modeless.bin"
    source.write_bytes(os.urandom(1000))
    source.chmod(0o700)
    keypair = load_hotkey("alice", "default", net["wallets"])

    async def upload_without_mode() -> None:  # as a client from before modes were kept
        async with aiohttp.ClientSession() as session:
            client = GatewayClient(session, keypair, net["urls"]["full"])
            await client.connect()
            with pytest.raises(GatewayError) as refused:
                await client._put(
                    {"name": "bad-mode.bin", "seal": "none", "mode": "1777"}, 1000,
                    _chunks(source.read_bytes()), hashlib.sha256(source.read_bytes()),
                )  # fmt: skip
            assert (refused.value.status, refused.value.code) == (400, "bad_mode")
            await client._put(  # the request a client from before modes sent
                {"name": "modeless.bin", "seal": "none"}, 1000,
                _chunks(source.read_bytes()), hashlib.sha256(source.read_bytes()),
            )  # fmt: skip

    asyncio.run(upload_without_mode())
    [listed] = [
        o for o in json.loads(cli(net, "full", "ls", "--json").stdout)["objects"]
        if o["name"] == "modeless.bin"
    ]  # fmt: skip
    assert listed["mode"] is None
    target = net["tmp"] / "modeless-copy.bin"
    got = cli(net, "full", "download", "modeless.bin", "-o", str(target))
    assert got.returncode == 0, got.stderr
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert target.read_bytes() == source.read_bytes()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data
