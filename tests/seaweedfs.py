"""A real SeaweedFS server (``weed server -s3``) on loopback, for S3 backend tests."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from subnet.processes import free_port, seaweedfs_command


@contextmanager
def seaweedfs(data_dir: Path, timeout: float = 60.0, extra: Sequence[str] = ()) -> Iterator[str]:
    """Start master, volume, filer and S3 gateway (``extra``: more ``weed server`` flags);
    yield the S3 endpoint ``host:port``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    s3_port = free_port()
    args = seaweedfs_command(data_dir, s3_port, free_port(), free_port(), free_port())
    args += extra
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
            # A graceful stop takes ~15 s (its gRPC servers drain); the data is written.
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
