"""The filesystem backend: one file per shard, its tree beside it.

    <root>/shards/<ns>/<ab>/<cd>/<id>        shard bytes
    <root>/shards/<ns>/<ab>/<cd>/<id>.tree   saved Merkle levels
    <root>/incoming/<random>                 writes in progress (removed at start)
    <root>/trash/<ns>/<id>[.tree]            deleted, kept for the grace period
    <root>/quarantine/<ns>/<id>[.tree]       failed a scrub; never served

A write lands in ``incoming/``, is fsynced, and is renamed into place: the tree first, then
the shard, whose presence is what makes it visible. The directory is fsynced after each
rename, so an acknowledged shard survives a crash.

Shard bytes are cold: once durable they are read again only when challenged (a few leaves),
scrubbed or downloaded. So a committed shard, and a scrubbed one, leaves the page cache
(:func:`protocol.page_cache.uncache`): a miner's memory keeps its index and trees, not the
bytes it last wrote, and each write reuses the pages the one before it freed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from protocol.page_cache import uncache
from storage_miner.store import ShardKey, ShardNotFound

READ_CHUNK = 1024 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    src.replace(dst)
    _fsync_dir(dst.parent)


class FsShardWriter:
    def __init__(self, store: FsShardStore, key: ShardKey) -> None:
        self._store = store
        self._key = key
        self._part = store.incoming / secrets.token_hex(16)
        self._file = self._part.open("xb")
        self._done = False

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def commit(self, tree: bytes) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        uncache(self._file.fileno())
        self._file.close()
        tree_part = self._part.with_suffix(".tree")
        with tree_part.open("xb") as out:
            out.write(tree)
            out.flush()
            os.fsync(out.fileno())
        final = self._store.path(self._key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tree_part.replace(final.with_suffix(".tree"))
        self._part.replace(final)
        _fsync_dir(final.parent)
        self._done = True

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        if not self._done:
            self._part.unlink(missing_ok=True)
            self._part.with_suffix(".tree").unlink(missing_ok=True)
        self._done = True


class FsShardStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.shards = root / "shards"
        self.incoming = root / "incoming"
        self.trash_dir = root / "trash"
        self.quarantine_dir = root / "quarantine"
        for folder in (self.shards, self.incoming, self.trash_dir, self.quarantine_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: ShardKey) -> Path:
        return self.shards / key.relative

    def _aside(self, folder: Path, key: ShardKey) -> Path:
        return folder / key.namespace_dir / key.shard_id

    def writer(self, key: ShardKey) -> FsShardWriter:
        return FsShardWriter(self, key)

    def exists(self, key: ShardKey) -> bool:
        return self.path(key).is_file()

    def _open(self, key: ShardKey, suffix: str = "") -> int:
        try:
            return os.open(
                self.path(key).with_suffix(suffix) if suffix else self.path(key), os.O_RDONLY
            )
        except FileNotFoundError:
            raise ShardNotFound(key.shard_id) from None

    def read(self, key: ShardKey, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """``key``'s bytes in chunks, read past the page cache's keeping: this is the scrubber's
        scan of every shard, which would otherwise evict everything else in turn."""
        fd = self._open(key)
        try:
            stop = os.fstat(fd).st_size if end is None else end
            offset = start
            while offset < stop:
                chunk = os.pread(fd, min(READ_CHUNK, stop - offset), offset)
                if not chunk:
                    break
                yield chunk
                offset += len(chunk)
        finally:
            uncache(fd)
            os.close(fd)

    def open_file(self, key: ShardKey) -> BinaryIO:
        return os.fdopen(self._open(key), "rb", buffering=0)

    def read_leaves(self, key: ShardKey, leaf_size: int, indices: Sequence[int]) -> list[bytes]:
        fd = self._open(key)
        try:
            return [os.pread(fd, leaf_size, i * leaf_size) for i in indices]
        finally:
            os.close(fd)

    def read_tree(self, key: ShardKey) -> bytes:
        fd = self._open(key, ".tree")
        try:
            size = os.fstat(fd).st_size
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def _move_pair(self, src: Path, dst: Path) -> None:
        if src.exists():
            _move(src, dst)
        tree = src.with_suffix(".tree")
        if tree.exists():
            _move(tree, dst.with_suffix(".tree"))

    def trash(self, key: ShardKey) -> None:
        self._move_pair(self.path(key), self._aside(self.trash_dir, key))

    def restore(self, key: ShardKey) -> None:
        aside = self._aside(self.trash_dir, key)
        if aside.with_suffix(".tree").exists():
            _move(aside.with_suffix(".tree"), self.path(key).with_suffix(".tree"))
        if aside.exists():
            _move(aside, self.path(key))

    def quarantine(self, key: ShardKey) -> None:
        self._move_pair(self.path(key), self._aside(self.quarantine_dir, key))

    def purge(self, key: ShardKey) -> None:
        for folder in (self.trash_dir, self.quarantine_dir):
            aside = self._aside(folder, key)
            aside.unlink(missing_ok=True)
            aside.with_suffix(".tree").unlink(missing_ok=True)

    def clean_incoming(self) -> int:
        removed = 0
        for part in self.incoming.iterdir():
            part.unlink(missing_ok=True)
            removed += 1
        return removed
