"""The fuzz suite's services, started once for the package, and its totals: requests sent,
5xx answers and hangs, per service, printed at the end of the run and written to
``fuzz.json`` in pytest's base temporary directory."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fuzz.services import Net, start, stop

TOTALS: dict[str, Counter[str]] = {}


@pytest.fixture(scope="package")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    services = start(tmp_path_factory.mktemp("fuzz"))
    try:
        yield services
    finally:
        stop(services)
        report = tmp_path_factory.getbasetemp() / "fuzz.json"
        report.write_text(json.dumps({k: dict(v) for k, v in TOTALS.items()}, indent=2))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TOTALS:
        return
    terminalreporter.write_sep("-", "fuzz suite totals")
    for service, counts in TOTALS.items():
        terminalreporter.write_line(f"  {service}: {json.dumps(dict(counts))}")
