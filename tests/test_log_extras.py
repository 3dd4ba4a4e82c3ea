"""No log call passes a LogRecord attribute as an ``extra`` key.

``logging`` raises KeyError for ``extra={"name": ...}`` and the like, but only when the
record is made, that is only at a level that is enabled: such a call passes every test run
at WARNING and breaks the code path in production at INFO (it did: the synthetic filler).
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "erasure", "storage_miner", "validator", "chain", "subnet", "bench")
RESERVED = set(vars(logging.LogRecord("n", 0, "p", 0, "m", None, None))) | {"message", "asctime"}


def reserved_extras(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                found += [
                    (node.lineno, key.value)
                    for key in keyword.value.keys
                    if isinstance(key, ast.Constant) and key.value in RESERVED
                ]
    return found


def test_the_scan_finds_a_reserved_key() -> None:
    assert reserved_extras('log.info("x", extra={"name": 1, "bytes": 2})') == [(1, "name")]
    assert reserved_extras('log.info("x", extra={"object": 1})') == []


def test_no_log_call_overwrites_a_record_attribute() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {key}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, key in reserved_extras(path.read_text())
    ]
    assert not bad, bad
