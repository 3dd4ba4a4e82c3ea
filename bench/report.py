"""What every benchmark's JSON report shares: the machine, and writing it out."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def emit(report: dict[str, Any], out: Path) -> None:
    """Write the report to ``out`` and print it."""
    text = json.dumps({"machine": machine(), **report}, indent=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
