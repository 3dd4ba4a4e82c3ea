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


def return_large_buffers_to_the_os() -> bool:
    """Fix glibc's mmap threshold; False (and nothing done) on other C libraries."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    if not ok:
        log.info("mallopt refused the mmap threshold; memory may stay high after peaks")
    return ok
