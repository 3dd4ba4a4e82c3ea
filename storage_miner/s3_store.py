"""The S3 backend: shards as objects in any S3-compatible store (MinIO, SeaweedFS, Ceph RGW).

    shards/<ns>/<ab>/<cd>/<id>(.tree)   live shards and their trees
    trash/<ns>/<id>(.tree)              deleted, kept for the grace period
    quarantine/<ns>/<id>(.tree)         failed a scrub; never served

A write is staged in a local ``incoming/`` file while its hash is checked, then PUT: the tree
first, then the shard, whose presence is what makes it visible. An S3 PUT is atomic, so a
reader never sees part of a shard. S3 has no rename: trash and quarantine are copy+delete.
Uses the minio SDK (faster than boto3 for small objects; DESIGN §11).
"""

from __future__ import annotations

import contextlib
import io
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import S3Error

from storage_miner.store import ShardKey, ShardNotFound, StoreError, StoreUnavailable

READ_CHUNK = 1024 * 1024
BUCKET_SETTLE_TRIES = 6  # ~1.5 s in all: see S3ShardStore.settled
_MISSING = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


@dataclass(frozen=True, slots=True)
class S3Location:
    endpoint: str  # host:port
    bucket: str
    access_key: str
    secret_key: str
    secure: bool = False
    region: str | None = None


class S3ShardWriter:
    def __init__(self, store: S3ShardStore, key: ShardKey) -> None:
        self._store = store
        self._key = key
        self._part = store.incoming / secrets.token_hex(16)
        self._file = self._part.open("xb")
        self._done = False

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def commit(self, tree: bytes) -> None:
        self._file.close()
        name = self._store.object_name(self._key)
        self._store.put_bytes(name + ".tree", tree)
        store = self._store
        store.settled(name, lambda: store.client.fput_object(store.bucket, name, str(self._part)))
        self._part.unlink(missing_ok=True)
        self._done = True

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._part.unlink(missing_ok=True)
        self._done = True


class S3ShardStore:
    def __init__(self, location: S3Location, staging: Path, *, reach_now: bool = True) -> None:
        """With ``reach_now`` false (a miner starting) the store is not contacted here, where
        the client's own retries would hold up the start: the health watcher does it."""
        self.client = Minio(
            location.endpoint,
            access_key=location.access_key,
            secret_key=location.secret_key,
            secure=location.secure,
            region=location.region,
        )
        self.endpoint = location.endpoint
        self.bucket = location.bucket
        self.incoming = staging / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        # Why the store is not known to be up; storage_miner/health.py probes until it is.
        self.unavailable = f"store not reached yet: S3 at {self.endpoint}"
        if reach_now:
            self.probe()
            self.unavailable = ""

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        """A connection failure (after the client's own retries) as :class:`StoreUnavailable`."""
        try:
            yield
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise StoreUnavailable(
                f"store unavailable: S3 at {self.endpoint} unreachable ({reason})"
            ) from None

    def probe(self) -> None:
        """Reach the store, creating the bucket if missing; raises StoreUnavailable."""
        with self._reachable():
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)

    @staticmethod
    def object_name(key: ShardKey) -> str:
        return f"shards/{key.relative}"

    @staticmethod
    def _aside(folder: str, key: ShardKey) -> str:
        return f"{folder}/{key.namespace_dir}/{key.shard_id}"

    def put_bytes(self, name: str, data: bytes) -> None:
        self.settled(
            name, lambda: self.client.put_object(self.bucket, name, io.BytesIO(data), len(data))
        )

    @staticmethod
    def settled(name: str, write: Callable[[], object]) -> None:
        """``write``, tried again for a moment while the store says the bucket does not
        exist: one just made may not take writes yet (SeaweedFS's S3 server learns of new
        buckets asynchronously: CI saw a first write refused right after the probe made it).
        Blocking, like every store call: it runs in a worker thread, never on the loop."""
        for attempt in range(BUCKET_SETTLE_TRIES):
            try:
                write()
            except S3Error as exc:
                if exc.code != "NoSuchBucket" or attempt == BUCKET_SETTLE_TRIES - 1:
                    raise StoreError(f"S3 refused {name}: {exc.code}") from exc
                time.sleep(0.05 * 2**attempt)
            else:
                return

    def writer(self, key: ShardKey) -> S3ShardWriter:
        return S3ShardWriter(self, key)

    def exists(self, key: ShardKey) -> bool:
        try:
            self.client.stat_object(self.bucket, self.object_name(key))
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise
        return True

    def _get(self, name: str, key: ShardKey, offset: int = 0, length: int = 0) -> bytes:
        try:
            with self._reachable():
                response = self.client.get_object(self.bucket, name, offset=offset, length=length)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ShardNotFound(key.shard_id) from None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def read(self, key: ShardKey, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        name = self.object_name(key)
        if end is None:
            try:
                end = self.client.stat_object(self.bucket, name).size or 0
            except S3Error as exc:
                if exc.code in _MISSING:
                    raise ShardNotFound(key.shard_id) from None
                raise
        offset = start
        while offset < end:
            chunk = self._get(name, key, offset, min(READ_CHUNK, end - offset))
            if not chunk:
                break
            yield chunk
            offset += len(chunk)

    def open_file(self, key: ShardKey) -> None:
        return None  # an object, not a file: read() streams it

    def read_leaves(self, key: ShardKey, leaf_size: int, indices: Sequence[int]) -> list[bytes]:
        name = self.object_name(key)
        return [self._get(name, key, i * leaf_size, leaf_size) for i in indices]

    def read_tree(self, key: ShardKey) -> bytes:
        return self._get(self.object_name(key) + ".tree", key)

    def _copy_remove(self, src: str, dst: str) -> None:
        try:
            self.client.copy_object(self.bucket, dst, CopySource(self.bucket, src))
        except S3Error as exc:
            if exc.code in _MISSING:
                return
            raise
        self.client.remove_object(self.bucket, src)

    def _move_pair(self, src: str, dst: str) -> None:
        # Shard before tree: a shard object without its tree is never visible as live.
        self._copy_remove(src, dst)
        self._copy_remove(src + ".tree", dst + ".tree")

    def trash(self, key: ShardKey) -> None:
        self._move_pair(self.object_name(key), self._aside("trash", key))

    def restore(self, key: ShardKey) -> None:
        aside = self._aside("trash", key)
        self._copy_remove(aside + ".tree", self.object_name(key) + ".tree")
        self._copy_remove(aside, self.object_name(key))

    def quarantine(self, key: ShardKey) -> None:
        self._move_pair(self.object_name(key), self._aside("quarantine", key))

    def purge(self, key: ShardKey) -> None:
        for folder in ("trash", "quarantine"):
            aside = self._aside(folder, key)
            self.client.remove_object(self.bucket, aside)
            self.client.remove_object(self.bucket, aside + ".tree")

    def clean_incoming(self) -> int:
        removed = 0
        for part in self.incoming.iterdir():
            part.unlink(missing_ok=True)
            removed += 1
        return removed
