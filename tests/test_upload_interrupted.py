"""``subnet upload`` interrupted at seeded random moments, then run once more: every file is
stored, downloads and matches its sha256, nothing is left pending, and every capability is
in the user's store. Real processes: a local net, the CLI as a user runs it.

The interruptions are SIGINT and SIGKILL of the CLI, and SIGKILL of the validator (restarted
at once, so its ``recover()`` frees what it held). Eight moments here, not the issue's 20:
each costs a multi-file upload, a re-run and a download (~5 s), and the suite has a budget.
The CLI-side moments rely on the validator abandoning an upload whose client hung up
(issue 14); until that lands they may see ``upload_in_progress`` on the re-run, so they are
an xfail (non-strict) test of their own.

Then the validator's database and logs are searched for every key the client made: a
client-sealed object's key never reaches the validator.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from subnet.localnet import LocalNet, LocalNetConfig

NET = LocalNetConfig(miners=6, validators=1, block_time=0.1, tempo=20, capacity="512MiB")
SEED = 15
SIZES = (0, 1, 200_000, 1_500_000, 2_600_000, 700_000)  # a 1 MiB segment: several per file


class Net:
    def __init__(self, net: LocalNet, home: Path) -> None:
        self.net = net
        self.home = home
        self.url = net.service("validator0").url
        self.env = {**os.environ, "HOME": str(home)}

    def cli(self, *args: str) -> list[str]:
        connection = ["--url", self.url, "--wallet-name", "user",
                      "--wallet-path", str(self.net.wallet_path)]  # fmt: skip
        return [sys.executable, "-m", "subnet", *args, *connection]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.cli(*args), env=self.env, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip

    def store(self) -> dict[str, Any]:
        files = list((self.home / ".subnet" / "capabilities").glob("*.json"))
        assert len(files) == 1, files
        data: dict[str, Any] = json.loads(files[0].read_text())
        return data


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("upload-net")
    local = LocalNet(root / "net", NET, service_args={"validator0": ["--segment-size", "1MiB"]})
    local.up()
    try:
        yield Net(local, root / "home")
    finally:
        local.down()


def dataset(folder: Path, seed: int) -> dict[str, str]:
    """Files of SIZES under ``folder``; their sha256 by object name."""
    rng = random.Random(seed)
    sums = {}
    for i, size in enumerate(SIZES):
        path = folder / f"file-{i:02}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        sums[f"{folder.name}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def interrupt_and_finish(net: Net, work: Path, moment: int, kind: str, delay: float) -> None:
    folder = work / f"set-{moment:02}-{kind}"
    sums = dataset(folder, SEED * 100 + moment)
    proc = subprocess.Popen(
        net.cli("upload", str(folder), "--json"), env=net.env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(delay)
    if kind == "validator":
        os.kill(net.net.service("validator0").pid or 0, signal.SIGKILL)
        net.net.restart("validator0")
    else:
        proc.send_signal(signal.SIGINT if kind == "sigint" else signal.SIGKILL)
    proc.wait(timeout=60)

    rerun = net.run("upload", str(folder), "--json")
    report = json.loads(rerun.stdout) if rerun.stdout else {"objects": []}
    failed = [(o["name"], o.get("error")) for o in report["objects"] if o["status"] == "failed"]
    why = f"moment {moment} ({kind}, {delay:.2f} s): {failed} {rerun.stderr}"
    assert rerun.returncode == 0, why
    assert {o["status"] for o in report["objects"]} <= {"stored", "recovered", "present"}
    store = net.store()
    assert store["pending"] == {}, f"moment {moment}: pending left {store['pending']}"
    listed = json.loads(net.run("ls", "--json").stdout)["objects"]
    mine = {o["name"]: o for o in listed if o["name"].startswith(folder.name + "/")}
    assert set(mine) == set(sums)
    for name, obj in mine.items():
        entry = store["objects"][obj["id"]]
        assert entry["name"] == name and entry["capability"].startswith("URI:SN-CHK:")
    out = work / f"out-{moment:02}"
    got = net.run("download", folder.name + "/", "-o", str(out), "--json")
    assert got.returncode == 0, got.stderr
    for name, digest in sums.items():
        data = (out / name.split("/", 1)[1]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"moment {moment}: {name}"


def moments(kinds: tuple[str, ...], count: int, salt: int) -> list[tuple[int, str, float]]:
    rng = random.Random(SEED + salt)
    return [(salt * 10 + i, rng.choice(kinds), rng.uniform(0.6, 3.0)) for i in range(count)]


def test_validator_killed_mid_upload_then_one_rerun_finishes(net: Net, tmp_path: Path) -> None:
    for moment, kind, delay in moments(("validator",), 3, 1):
        interrupt_and_finish(net, tmp_path, moment, kind, delay)


def test_cli_interrupted_then_one_rerun_finishes(net: Net, tmp_path: Path) -> None:
    for moment, kind, delay in moments(("sigint", "sigkill"), 5, 2):
        interrupt_and_finish(net, tmp_path, moment, kind, delay)


def test_the_validator_never_holds_a_client_key(net: Net, tmp_path: Path) -> None:
    """Runs after the others (file order): every key this user made, pending or not."""
    sums = dataset(tmp_path / "keys", 1)
    assert net.run("upload", str(tmp_path / "keys")).returncode == 0
    store = net.store()
    keys = [_key(e["capability"]) for e in store["objects"].values()]
    assert len(keys) >= len(sums)
    data_dir = net.net.root / "validators" / "validator0"
    logs = net.net.root / "logs"
    haystack = b"".join(
        p.read_bytes() for folder in (data_dir, logs) for p in folder.rglob("*") if p.is_file()
    )
    assert b"validator.sqlite" in b"".join(p.name.encode() for p in data_dir.iterdir())
    for key in keys:
        b32 = base64.b32encode(key).decode().rstrip("=").lower().encode()
        for form in (key, key.hex().encode(), b32, b32.upper()):
            assert form not in haystack


def _key(capability: str) -> bytes:
    text = capability.split(":")[2]
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))
