"""Bulk bytes that do not pile up in the page cache.

A miner's shards and a downloaded object are written once, in bulk. Left to itself the
kernel keeps every page of them cached, evicting whatever the machine was using, and takes
a fresh page for each new one: on the benchmark VM a page the guest has not touched lately
costs about ten times a memory copy, so the eight miners' CPU per 256 MiB upload halved
once each shard left the cache as it became durable (``docs/benchmarks.md``). Pages freed
here are the ones the next write takes.

Linux only in effect: elsewhere (no ``posix_fadvise``) these are no-ops, and the data is
exactly as durable either way; only what stays cached differs.
"""

from __future__ import annotations

import os
from typing import IO

WINDOW = 16 * 1024 * 1024  # write-back is started, and the window before dropped, this often


def uncache(fd: int, offset: int = 0, length: int = 0) -> None:
    """Drop ``fd``'s clean pages in ``offset..offset+length`` (0: to the end) from the page
    cache, and start writing back the dirty ones, which stay: call it after ``fsync`` to
    drop everything."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


class WriteBehind:
    """Writes to ``out`` whose pages leave the cache behind them.

    Each :data:`WINDOW` written starts its own write-back, and drops the window before it,
    written back by then (one whose write-back is still running stays cached; nothing is
    lost either way). A large download thus neither leaves gigabytes dirty for its final
    ``fsync`` to wait on nor evicts what the machine had cached. Durability is unchanged:
    the caller still fsyncs at the end."""

    def __init__(self, out: IO[bytes], window: int = WINDOW) -> None:
        self.out = out
        self.window = window
        self.written = 0
        self._started = 0  # write-back started below this offset
        self._dropped = 0  # dropped below this offset

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.write(data)
        self.written += len(data)
        if self.written - self._started >= self.window:
            self.out.flush()
            fd = self.out.fileno()
            if self._started > self._dropped:
                uncache(fd, self._dropped, self._started - self._dropped)
            uncache(fd, self._started, self.written - self._started)
            self._dropped, self._started = self._started, self.written
