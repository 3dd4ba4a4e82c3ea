"""Run every benchmark under bench/ (what ``make bench`` does); each writes bench/results/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failures = 0
    for script in sorted(HERE.glob("*.py")):
        if script.name in {"__init__.py", "run_all.py"}:
            continue
        module = f"bench.{script.stem}"
        print(f"== {module}", file=sys.stderr)
        failures += subprocess.call([sys.executable, "-m", module], cwd=HERE.parent) != 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
