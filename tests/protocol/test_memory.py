"""protocol/memory.py: services re-execute once so that glibc's malloc asks for huge pages."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from protocol.memory import HUGE_PAGES_TUNABLE, _thp_mode, huge_pages_environment
from protocol.wallet import create_wallet
from subnet.processes import free_port, running, start_subnet_command, wait_healthy

GLIBC = {"thp_mode": "madvise", "libc": "glibc"}


def test_the_tunable_is_added_once_and_kept_beside_others() -> None:
    env = huge_pages_environment({"PATH": "/bin"}, **GLIBC)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": HUGE_PAGES_TUNABLE}
    assert huge_pages_environment(env, **GLIBC) is None  # the re-executed process stays
    other = huge_pages_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, **GLIBC)
    assert other is not None
    assert other["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{HUGE_PAGES_TUNABLE}"


@pytest.mark.parametrize(
    ("environ", "thp_mode", "libc"),
    [
        ({}, "never", "glibc"),  # huge pages off in the kernel
        ({}, "", "glibc"),  # no transparent huge pages at all
        ({}, "always", ""),  # musl or another C library: the tunable means nothing
        ({"SUBNET_HUGE_PAGES": "0"}, "madvise", "glibc"),  # the operator opted out
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", "glibc"),  # chosen already
    ],
)
def test_no_reexecution_when_pointless_or_refused(
    environ: dict[str, str], thp_mode: str, libc: str
) -> None:
    assert huge_pages_environment(environ, thp_mode=thp_mode, libc=libc) is None


@pytest.mark.skipif(
    sys.platform != "linux"
    or platform.libc_ver()[0] != "glibc"
    or _thp_mode() not in {"always", "madvise"},
    reason="needs Linux with glibc and transparent huge pages (always or madvise)",
)
def test_a_miner_process_runs_with_huge_pages_under_its_own_pid(tmp_path: Path) -> None:
    """The process the operator started is the one serving (same PID, healthy), and its
    environment now asks malloc for huge pages."""
    create_wallet("m", "default", tmp_path / "wallets")
    port = free_port()
    log = tmp_path / "miner.log"
    wallets, data = str(tmp_path / "wallets"), str(tmp_path / "data")
    args = ["miner", "run", "--wallet-name", "m", "--wallet-path", wallets,
            "--port", str(port), "--data-dir", data, "--capacity", "1GiB",
            "--validators", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"]  # fmt: skip
    with running(start_subnet_command(args, log)) as proc:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert f"GLIBC_TUNABLES={HUGE_PAGES_TUNABLE}".encode() in environ
        assert proc.poll() is None
