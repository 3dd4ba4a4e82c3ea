"""Structured logs: one JSON object per line (or plain text for a terminal).

Fields passed with ``extra={...}`` become keys of the JSON object, so a test or an operator's
pipeline reads data rather than parsing messages.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One line per record for a person: the message, then its fields as ``key=value``
    (``chain unreachable ... chain=http://127.0.0.1:9944 error=...``), so text loses nothing
    the JSON form has."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the fields
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} {extra}{sep}{tail}"


# Libraries whose INFO (alembic's migration chatter) or WARNING (urllib3's retry of each
# attempt, 52 of 54 lines of an S3 miner whose store was down) only repeat what the service
# itself logs once, with the fix.
_QUIETER = {"alembic": logging.WARNING, "urllib3": logging.ERROR, "aiohttp.access": logging.WARNING}


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """``fmt`` is json, text, or auto: text on a terminal, JSON lines otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, quieter in _QUIETER.items():
        logging.getLogger(name).setLevel(quieter)
