"""Databases for every service: engines (SQLite in WAL mode, or PostgreSQL) and migrations.

Each service's schema is owned by alembic: one environment in ``migrations/``, one section
of ``alembic.ini`` per database (``[chain]``, ``[validator]``). :func:`upgrade` brings a
database to the latest revision; services run it at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
ALEMBIC_INI = ROOT / "alembic.ini"
MIGRATIONS = ROOT / "migrations"


def alembic_config(url: str, section: str) -> Config:
    """An alembic config for one section of ``alembic.ini``, pointed at ``url``."""
    cfg = Config(str(ALEMBIC_INI), ini_section=section)
    # Absolute paths, so this works from any working directory.
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_locations", str(MIGRATIONS / section))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, section: str) -> None:
    """Migrate the ``section`` database at ``url`` to its latest revision."""
    command.upgrade(alembic_config(url, section), "head")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, full fsync and foreign keys on every connect."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    database = parsed.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
