"""Whether a file's pages are in the page cache, read with ``preadv(..., RWF_NOWAIT)``: the
kernel answers from the cache or refuses with EAGAIN rather than go to the disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

needs_probe = pytest.mark.skipif(
    not hasattr(os, "RWF_NOWAIT") or not hasattr(os, "posix_fadvise"),
    reason="needs Linux's preadv(RWF_NOWAIT) and posix_fadvise",
)


def cached_bytes(path: Path, offset: int = 0, length: int | None = None) -> int:
    """How many bytes of ``path`` from ``offset`` the page cache holds in a row (0: not the
    first page)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size - offset if length is None else length
        try:
            return os.preadv(fd, [bytearray(size)], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            return 0
    finally:
        os.close(fd)


def require_visible_cache(folder: Path) -> None:
    """Skip unless this filesystem shows a freshly written, fsynced file as cached: else a
    test that pages were dropped could pass because nothing is ever cached here."""
    control = folder / "page-cache-control"
    size = 1024 * 1024
    with control.open("wb") as out:
        out.write(os.urandom(size))
        out.flush()
        os.fsync(out.fileno())
    seen = cached_bytes(control)
    control.unlink()
    if seen != size:
        pytest.skip("this filesystem does not report cached pages to RWF_NOWAIT")
