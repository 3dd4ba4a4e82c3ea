"""WriteBehind: a bulk write's pages leave the cache behind it, and every byte lands."""

from __future__ import annotations

import os
from pathlib import Path

from protocol.page_cache import WriteBehind
from tests.page_cache_probe import cached_bytes, needs_probe, require_visible_cache

MiB = 1024 * 1024


@needs_probe
def test_each_window_drops_the_one_before_once_it_is_written_back(tmp_path: Path) -> None:
    require_visible_cache(tmp_path)
    path = tmp_path / "out"
    first, second, tail = os.urandom(MiB), os.urandom(MiB), os.urandom(MiB // 2)
    with path.open("wb") as file:
        out = WriteBehind(file, window=MiB)
        out.write(first)  # a window: its write-back starts
        os.fsync(file.fileno())  # ...and is over, as it would be a window later
        out.write(second)  # the next window drops the first
        assert cached_bytes(path, 0, MiB) == 0
        out.write(tail)
        file.flush()
        os.fsync(file.fileno())
        assert out.written == 2 * MiB + MiB // 2
    assert path.read_bytes() == first + second + tail


def test_writes_of_any_size_land_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "out"
    pieces = [os.urandom(n) for n in (1, 70_000, 3 * 65536, 0, 200_001, 5)]
    with path.open("wb") as file:
        out = WriteBehind(file, window=65536)
        for piece in pieces:
            out.write(memoryview(piece))
    assert path.read_bytes() == b"".join(pieces)
