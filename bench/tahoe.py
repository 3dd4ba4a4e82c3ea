"""A Tahoe-LAFS grid on loopback, for bench/peers.py: introducer, storage nodes, one client.

Tahoe is installed from PyPI (the latest ``tahoe-lafs``) into its own virtualenv under
``.peers/tahoe`` on first use and reused afterwards; it never enters the project's venv.
Every node is a ``tahoe run NODEDIR`` process of its own, stopped when the grid closes, on
success or failure. The client is made with ``create-client`` and the grid's k-of-m, and the
grid is ready once the client sees every storage node connected.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import process_group
from subnet.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
TAHOE_VENV = ROOT / ".peers" / "tahoe"
_STAMP = ".installed"
HOST = "127.0.1.1"  # the introducer's and the client's address; storage nodes follow it


class TahoeError(RuntimeError):
    pass


def tahoe_binary(venv: Path = TAHOE_VENV) -> Path | None:
    """The ``tahoe`` of a finished install, or None (installed, but not stamped, is unfinished)."""
    tahoe = venv / "bin" / "tahoe"
    return tahoe if tahoe.exists() and (venv / _STAMP).exists() else None


def ensure_tahoe(venv: Path = TAHOE_VENV) -> Path:
    """The ``tahoe`` executable, installing the latest tahoe-lafs into ``venv`` if missing."""
    found = tahoe_binary(venv)
    if found:
        return found
    if venv.exists():
        shutil.rmtree(venv)  # an interrupted install: start again
    print(f"installing tahoe-lafs into {venv} (once)", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "tahoe-lafs"], check=True)
    (venv / _STAMP).write_text(tahoe_version(venv / "bin" / "tahoe") + "\n")
    return venv / "bin" / "tahoe"


def tahoe_version(tahoe: Path) -> str:
    """``1.20.0`` from ``tahoe --version``'s ``tahoe-lafs/1.20.0``."""
    out = subprocess.run([str(tahoe), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().split("/")[-1]


@dataclass(frozen=True, slots=True)
class TahoeGrid:
    tahoe: Path
    client_dir: Path
    web_url: str
    pids: tuple[int, ...]
    """Every node's process: the introducer, the storage nodes and the client."""

    def put(self, path: Path) -> str:
        """``tahoe put FILE``: returns the file's capability."""
        return self._cli("put", str(path)).strip()

    def get(self, cap: str, out: Path) -> None:
        """``tahoe get CAP OUT``."""
        self._cli("get", cap, str(out))

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.tahoe), "-d", str(self.client_dir), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise TahoeError(f"tahoe {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout


def _create(tahoe: Path, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(tahoe), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[bytes], what: str) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise TahoeError(f"{what} failed: {err.decode(errors='replace')[-2000:]}")


def _start(tahoe: Path, node: Path) -> subprocess.Popen[bytes]:
    with (node / "bench-run.log").open("ab") as log:
        # `tahoe run` exits when its stdin closes: a pipe we hold ties the node's life to ours,
        # so a benchmark killed outright leaves no node behind.
        return subprocess.Popen(
            [str(tahoe), "run", str(node)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


def _wait_for(
    what: str, ready: Iterator[bool], procs: list[tuple[subprocess.Popen[bytes], Path]],
    timeout: float,
) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    for ok in ready:
        if ok:
            return
        for proc, node in procs:
            log = node / "bench-run.log"
            if proc.poll() is not None:
                raise TahoeError(f"tahoe node {node.name} exited while {what}:\n{_tail(log)}")
            if log.exists() and "CannotListenError" in log.read_text(errors="replace"):
                # the node stays up without its listener: it would never be seen
                raise TahoeError(f"tahoe node {node.name} could not listen:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise TahoeError(f"timed out after {timeout:.0f} s {what}")
        time.sleep(0.2)


def _furl(introducer: Path) -> Iterator[bool]:
    while True:
        yield (introducer / "private" / "introducer.furl").exists()


def _connected(web_url: str, want: int) -> Iterator[bool]:
    while True:
        try:
            with urllib.request.urlopen(f"{web_url}/?t=json", timeout=2) as r:
                servers = json.load(r)["servers"]
            up = [s for s in servers if str(s["connection_status"]).lower().startswith("connected")]
            yield len(up) >= want
        except (OSError, ValueError, KeyError):
            yield False


@contextmanager
def tahoe_grid(
    root: Path, tahoe: Path, *, storage_nodes: int, needed: int, happy: int, total: int,
    timeout: float = 180.0,
) -> Iterator[TahoeGrid]:  # fmt: skip
    """One introducer, ``storage_nodes`` storage nodes and a client, on loopback.

    The introducer listens on 127.0.1.1 and storage node i on 127.0.1.i+2: apart from the
    127.0.0.x that other tests and services on a shared machine use, so that a port found
    free is still free by the time a slow node start binds it. Only the client's web API is
    on 127.0.0.1, the address its CLI's ``node.url`` always names.
    """
    root.mkdir(parents=True, exist_ok=True)
    with process_group() as group:
        intro = root / "introducer"
        port = free_port(HOST)
        _finish(_create(tahoe, [
            "create-introducer", f"--port=tcp:{port}:interface={HOST}",
            f"--location=tcp:{HOST}:{port}", str(intro),
        ]), "tahoe create-introducer")  # fmt: skip
        intro_proc = group.add(_start(tahoe, intro))
        _wait_for("starting the introducer", _furl(intro), [(intro_proc, intro)], timeout)
        furl = (intro / "private" / "introducer.furl").read_text().strip()

        shares = [f"--shares-needed={needed}", f"--shares-happy={happy}",
                  f"--shares-total={total}"]  # fmt: skip
        nodes = [root / f"storage{i}" for i in range(storage_nodes)]
        creating = []
        for i, node in enumerate(nodes):
            host = f"127.0.1.{i + 2}"
            port = free_port(host)
            creating.append(_create(tahoe, [
                "create-node", f"--nickname=storage{i}", f"--introducer={furl}",
                f"--port=tcp:{port}:interface={host}", f"--location=tcp:{host}:{port}",
                "--webport=none", *shares, str(node),
            ]))  # fmt: skip
        client = root / "client"
        web_port = free_port()  # 127.0.0.1: the CLI's node.url always names that address
        creating.append(_create(tahoe, [
            "create-client", "--nickname=client", f"--introducer={furl}",
            f"--webport=tcp:{web_port}:interface=127.0.0.1", *shares, str(client),
        ]))  # fmt: skip
        for proc in creating:
            _finish(proc, "tahoe create-node/create-client")

        started = [(intro_proc, intro)]
        for node in [*nodes, client]:
            started.append((group.add(_start(tahoe, node)), node))
        web_url = f"http://127.0.0.1:{web_port}"
        _wait_for(
            f"waiting for the client to see {storage_nodes} storage nodes",
            _connected(web_url, storage_nodes), started, timeout,
        )  # fmt: skip
        yield TahoeGrid(tahoe, client, web_url, tuple(proc.pid for proc, _ in started))
