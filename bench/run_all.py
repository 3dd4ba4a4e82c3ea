"""Run every benchmark under bench/ (what ``make bench`` does), then render the results.

Each benchmark writes bench/results/<name>.json; ``bench.render`` then refreshes the generated
tables in docs/benchmarks.md. Modules that are not benchmarks are listed in ``HELPERS``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPERS = frozenset({"__init__", "run_all", "report", "render", "cluster", "tahoe", "seaweedfs_s3"})


def benchmarks() -> list[str]:
    """The benchmark modules, ``bench.<name>``, in name order."""
    return [f"bench.{p.stem}" for p in sorted(HERE.glob("*.py")) if p.stem not in HELPERS]


def main() -> int:
    failures = 0
    for module in benchmarks():
        print(f"== {module}", file=sys.stderr)
        failures += subprocess.call([sys.executable, "-m", module], cwd=HERE.parent) != 0
    failures += subprocess.call([sys.executable, "-m", "bench.render"], cwd=HERE.parent) != 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
