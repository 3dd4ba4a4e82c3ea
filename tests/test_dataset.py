"""Synthetic datasets: deterministic, edge sizes included, and a verifier that notices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subnet.dataset import SUMS, generate, plan_sizes, verify


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10**9), st.integers(3, 300), st.integers(0, 2**32))
def test_sizes_add_up_and_include_the_edge_files(total: int, files: int, seed: int) -> None:
    sizes = plan_sizes(total, files, seed)
    assert len(sizes) == files
    assert sum(sizes) == total
    assert sizes[:2] == [0, 1]
    assert min(sizes) >= 0
    assert plan_sizes(total, files, seed) == sizes


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 3_000_000, 12, seed=5)
    b = generate(tmp_path / "b", 3_000_000, 12, seed=5)
    c = generate(tmp_path / "c", 3_000_000, 12, seed=6)
    assert a == b
    assert [f.sha256 for f in a] != [f.sha256 for f in c]
    assert (tmp_path / "a" / SUMS).read_text() == (tmp_path / "b" / SUMS).read_text()
    assert len({Path(f.path).parent for f in a}) > 1  # nested folders


def test_verify_reports_missing_changed_and_extra_files(tmp_path: Path) -> None:
    files = generate(tmp_path, 500_000, 8, seed=1)
    assert verify(tmp_path).ok
    (tmp_path / files[3].path).write_bytes(b"changed")
    (tmp_path / files[4].path).unlink()
    (tmp_path / "stray.txt").write_text("?")
    result = verify(tmp_path)
    assert not result.ok
    assert result.mismatched == (files[3].path,)
    assert result.missing == (files[4].path,)
    assert result.unexpected == ("stray.txt",)


def test_impossible_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="more files"):
        plan_sizes(10, 2, seed=0)
    assert plan_sizes(1, 2, seed=0) == [0, 1]
    with pytest.raises(ValueError, match="at least 2"):
        plan_sizes(10, 1, seed=0)


def test_generate_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        generate(tmp_path, 100, 2, seed=0)


def test_cli_generate_and_verify(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "subnet", "dataset", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    made = run("generate", str(tmp_path / "d"), "--size", "1MiB", "--files", "5", "--json")
    assert made.returncode == 0, made.stderr
    assert sum(f["size"] for f in json.loads(made.stdout)["files"]) == 2**20
    checked = run("verify", str(tmp_path / "d"), "--json")
    assert (checked.returncode, json.loads(checked.stdout)["ok"]) == (0, True)
    next(p for p in (tmp_path / "d").rglob("*.bin") if p.stat().st_size > 0).write_bytes(b"x")
    broken = run("verify", str(tmp_path / "d"))
    assert broken.returncode == 1
    assert "differs:" in broken.stdout
    bad = run("generate", str(tmp_path / "e"), "--size", "huge")
    assert bad.returncode == 2
    assert "500GiB" in bad.stderr
