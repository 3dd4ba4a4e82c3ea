"""Real databases for tests: a SQLite file, or a fresh PostgreSQL database per test.

PostgreSQL is the one at 127.0.0.1:5432 (trust auth, user postgres). If it cannot be reached
the test is skipped, except under ``CI=true``, where that is a failure: CI must run both.

    @pytest.fixture(params=DATABASES)
    def db_url(request, tmp_path):
        with database_url(request.param, tmp_path) as url:
            yield url
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
import pytest

DATABASES = ("sqlite", "postgresql")
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


@cache
def postgres_error() -> str | None:
    """Why PostgreSQL cannot be used, or None if it can."""
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}"
    return None


def require_postgres() -> None:
    error = postgres_error()
    if error is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{error} (CI=true: PostgreSQL tests may not be skipped)")
    pytest.skip(error)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database, dropped afterwards; yields its SQLAlchemy URL."""
    require_postgres()
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.format(name=name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database of ``kind`` (one of ``DATABASES``)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite'}"
    elif kind == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown database kind {kind!r}; use one of {DATABASES}")
