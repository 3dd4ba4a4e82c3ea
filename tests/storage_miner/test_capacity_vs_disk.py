"""A capacity the disk cannot hold is said at start, and /v1/info reports both figures."""

from __future__ import annotations

import shutil
from pathlib import Path

from storage_miner.service import capacity_warning, disk_free
from storage_miner.settings import MinerSettings


def test_a_capacity_beyond_the_disk_is_warned_about(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    huge = MinerSettings(data_dir=tmp_path, capacity=free + 2**40)
    warning = capacity_warning(huge, used=0)
    assert warning is not None
    assert "lower --capacity or free the disk" in warning
    assert capacity_warning(MinerSettings(data_dir=tmp_path, capacity=2**20), used=0) is None
    assert disk_free(huge) is not None
    assert disk_free(MinerSettings(data_dir=tmp_path, backend="s3")) is None
