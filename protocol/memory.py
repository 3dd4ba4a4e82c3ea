"""Keep a service's resident memory close to what it actually holds.

glibc raises its mmap threshold each time a large block is freed, after which multi-MiB
buffers (segments, shards) come from heap arenas that are rarely given back to the kernel:
a validator streaming a 512 MiB object then sat at ~480 MiB RSS. Fixing the threshold at
1 MiB keeps every large buffer in its own mapping, returned on free (~280 MiB measured).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
THRESHOLD = 1024 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def trim() -> None:
    """Hand free heap pages back to the kernel (glibc ``malloc_trim``); a no-op elsewhere.

    Called when a large transfer ends: small buffers freed by many concurrent transfers
    otherwise stay resident in malloc's arenas until the process exits.
    """
    libc = _libc()
    malloc_trim = getattr(libc, "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)


def return_large_buffers_to_the_os() -> bool:
    """Fix glibc's mmap threshold; False (and nothing done) on other C libraries."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    if not ok:
        log.info("mallopt refused the mmap threshold; memory may stay high after peaks")
    return ok
