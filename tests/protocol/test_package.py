"""The package's shape: its public names, and the arrows it must not cross."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import protocol

SERVICES = ("erasure", "storage_miner", "validator", "chain", "subnet")


def test_public_names_resolve() -> None:
    assert sorted(protocol.__all__) == sorted(set(protocol.__all__))
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None


def test_protocol_imports_no_service() -> None:
    code = (
        "import sys, protocol, protocol.epistula, protocol.http, protocol.wallet\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {SERVICES!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == ""
