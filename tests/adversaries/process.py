"""Start fake miners as real OS processes on loopback, as ``subnet.processes`` starts miners.

    with running_miners(["honest", "drop:0.5"], tmp_path, [validator.ss58_address]) as miners:
        honest, dropping = miners
        await client.put_shard(dropping.address, shard_id, [data], len(data), leaf_size)

Each miner gets its own wallet directory, data directory and log under ``workdir/<name>``,
a free port, and ``--validators`` set to the allowlist. All are started before any is waited
for, so their start-up overlaps.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from protocol.wallet import create_wallet
from subnet.processes import free_port, wait_healthy
from validator.miner_client import MinerAddress

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class MinerProcess:
    behaviour: str
    proc: subprocess.Popen[bytes]
    hotkey: str
    host: str
    port: int
    log: Path
    data_dir: Path

    @property
    def url(self) -> str:
        return self.address.url

    @property
    def address(self) -> MinerAddress:
        return MinerAddress(self.hotkey, self.host, self.port)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        wait_healthy(self.url, self.proc, self.log, timeout)


def _name_for(behaviour: str, workdir: Path) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", behaviour).strip("-") or "miner"
    name, n = base, 1
    while (workdir / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def start_miner(
    behaviour: str,
    workdir: Path,
    validators: Sequence[str],
    *,
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> MinerProcess:
    """``python -m tests.adversaries BEHAVIOUR ...`` in the background; does not wait.

    ``args`` are more ``subnet miner run`` flags (e.g. ``["--capacity", "1GiB"]``). Stop it
    with ``subnet.processes.stop(miner.proc)`` or :func:`stop_all`, or use
    :func:`running_miners`.
    """
    name = name or _name_for(behaviour, workdir)
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=False)
    wallets = folder / "wallets"
    hotkey = create_wallet(name, "default", wallets).ss58_address
    port = port if port is not None else free_port(host)
    data_dir = folder / "data"
    log = folder / "miner.log"
    argv = [
        sys.executable, "-m", "tests.adversaries", behaviour,
        "--wallet-name", name, "--wallet-path", str(wallets),
        "--host", host, "--port", str(port), "--data-dir", str(data_dir),
        "--validators", ",".join(validators), "--log-level", "warning", *args,
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
        )
    return MinerProcess(behaviour, proc, hotkey, host, port, log, data_dir)


def stop_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM every process at once, then wait for each (SIGKILL after ``timeout``)."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_miners(
    behaviours: Sequence[str],
    workdir: Path,
    validators: Sequence[str],
    *,
    hosts: Sequence[str] | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[list[MinerProcess]]:
    """Start one miner per behaviour (on ``hosts[i]`` if given), wait until all are healthy,
    and stop them all on exit. Miners are in the order of ``behaviours``."""
    if hosts is not None and len(hosts) != len(behaviours):
        raise ValueError("give one host per behaviour")
    miners: list[MinerProcess] = []
    try:
        for i, behaviour in enumerate(behaviours):
            host = hosts[i] if hosts is not None else "127.0.0.1"
            miners.append(
                start_miner(behaviour, workdir, validators, host=host, args=args, env=env)
            )
        for miner in miners:
            miner.wait_healthy(timeout)
        yield miners
    finally:
        stop_all([miner.proc for miner in miners])


@contextmanager
def running_miner(
    behaviour: str,
    workdir: Path,
    validators: Sequence[str],
    *,
    host: str = "127.0.0.1",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[MinerProcess]:
    """One miner, as :func:`running_miners` starts them."""
    with running_miners(
        [behaviour], workdir, validators, hosts=[host], args=args, env=env, timeout=timeout
    ) as (miner,):
        yield miner
