"""Log setup: text keeps the fields, and libraries' chatter stays out of a service's log."""

from __future__ import annotations

import logging

from protocol.logs import TextFormatter, configure_logging


def test_text_lines_keep_the_fields() -> None:
    record = logging.LogRecord("chain", logging.WARNING, "", 0, "chain unreachable", (), None)
    record.chain = "http://127.0.0.1:9944"
    record.error = "429 rate limited"
    line = TextFormatter().format(record)
    assert "chain unreachable chain=http://127.0.0.1:9944 error=429 rate limited" in line


def test_alembic_info_and_urllib3_retries_are_not_logged() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", "json")
        assert not logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)
        assert not logging.getLogger("urllib3.connectionpool").isEnabledFor(logging.WARNING)
        assert logging.getLogger("storage_miner.runner").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:], root.level = handlers, level
