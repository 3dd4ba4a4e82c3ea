"""What every benchmark's JSON report shares: the machine, the command, and writing it out."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def memory_gib() -> int:
    """Total RAM in GiB, rounded (Linux; 0 where /proc/meminfo is missing)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20)
    except OSError:
        pass
    return 0


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {memory_gib()} GiB, "
        f"Python {platform.python_version()}"
    )


def command(module: str) -> str:
    """How this run was started, as ``python -m MODULE ARGS`` (reproducible from the root)."""
    return " ".join(["python -m", module, *sys.argv[1:]])


def emit(report: dict[str, Any], out: Path) -> None:
    """Write the report to ``out`` and print it."""
    text = json.dumps({"machine": machine(), **report}, indent=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
