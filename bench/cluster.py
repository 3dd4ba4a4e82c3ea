"""A local subnet for the benchmarks: miners and a validator as real processes on loopback.

Each miner listens on its own address (127.0.0.2, .3, ...) so that the validator, which puts
one shard per host, sees as many hosts as miners. Shared by bench/gateway.py and
bench/peers.py.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from protocol.wallet import create_wallet
from subnet.processes import free_port, start_subnet_command, wait_healthy

MiB = 2**20
PACKAGES = ("erasure", "protocol", "storage_miner", "validator", "chain", "subnet")


def precompile(tree: Path) -> None:
    """Byte-compile ``tree``'s packages, as installing them does, so that a timed CLI run pays
    no compile: a checkout run under ``PYTHONDONTWRITEBYTECODE=1`` (as on the bench VM)
    otherwise compiles every module it imports, each run (~30 ms of a CLI's CPU here)."""
    for package in PACKAGES:
        compileall.compile_dir(tree / package, quiet=1)


@dataclass
class ProcessGroup:
    """Processes stopped together: SIGTERM to all at once, then one shared grace period."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(proc)
        return proc

    def stop(self, grace: float = 10.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def process_group(grace: float = 10.0) -> Iterator[ProcessGroup]:
    """A ``ProcessGroup`` whose processes are stopped on exit, on success or failure."""
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop(grace)


@dataclass(frozen=True, slots=True)
class LocalSubnet:
    url: str
    """The validator's gateway."""
    validator: subprocess.Popen[bytes]
    miners: tuple[subprocess.Popen[bytes], ...]
    wallets: Path
    """Holds the ``user`` wallet (hotkey ``default``) the validator accepts uploads from."""
    root: Path


@contextmanager
def local_subnet(
    root: Path, k: int, m: int, miners: int, *, net: str = "127.0.0",
    validator_args: Sequence[str] = (),
) -> Iterator[LocalSubnet]:  # fmt: skip
    """Start ``miners`` miners and one k-of-m validator under ``root``; stop them all on exit.

    The validator listens on ``{net}.1`` and miner i on ``{net}.{i + 2}``. The miners start
    together and are then waited for, so start-up costs one miner's time, not the sum. The
    scrubber is off so that it does not compete with the measured transfers.
    ``validator_args``: more flags for ``subnet validator run`` (e.g. ``--s3-port``).
    """
    if miners > 250:
        raise ValueError(f"at most 250 miners: one loopback address each, {net}.2 up")
    wallets = root / "wallets"
    validator = create_wallet("validator", "default", wallets).ss58_address
    user = create_wallet("user", "default", wallets).ss58_address
    with process_group() as group:
        started = []
        entries = []
        for i in range(miners):
            hotkey = create_wallet(f"m{i}", "default", wallets).ss58_address
            host, log = f"{net}.{i + 2}", root / f"m{i}.log"
            port = free_port(host)
            proc = group.add(start_subnet_command(
                ["miner", "run", "--wallet-name", f"m{i}", "--wallet-path", str(wallets),
                 "--host", host, "--port", str(port), "--data-dir", str(root / f"m{i}"),
                 "--validators", validator, "--capacity", "1TiB", "--scrub-rate", "0",
                 "--log-level", "warning"], log,
            ))  # fmt: skip
            started.append((f"http://{host}:{port}", proc, log))
            entries.append(f"{hotkey}@{host}:{port}")
        for url, proc, log in started:
            wait_healthy(url, proc, log, timeout=60.0)
        vhost, vlog = f"{net}.1", root / "validator.log"
        vport = free_port(vhost)
        vproc = group.add(start_subnet_command(
            ["validator", "run", "--wallet-name", "validator", "--wallet-path", str(wallets),
             "--host", vhost, "--port", str(vport), "--data-dir", str(root / "v"),
             "--users", f"user={user}",
             "--miners", ",".join(entries), "--k", str(k), "--m", str(m),
             "--log-level", "warning", *validator_args], vlog,
        ))  # fmt: skip
        url = f"http://{vhost}:{vport}"
        wait_healthy(url, vproc, vlog, timeout=60.0)
        yield LocalSubnet(url, vproc, tuple(p for _, p, _ in started), wallets, root)


def random_file(path: Path, size: int) -> Path:
    """Write ``size`` random bytes to ``path`` (1 MiB at a time) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        left = size
        while left:
            n = min(left, MiB)
            out.write(os.urandom(n))
            left -= n
    return path


def rss_mib(pid: int) -> float:
    """The process's resident memory now (VmRSS), MiB."""
    return _status_mib(pid, "VmRSS:")


def peak_rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmHWM:")


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs), to measure one phase's peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
