"""The chain's database: the ``[chain]`` section of ``alembic.ini`` (``migrations/chain``).

Engines and migrations are shared with the other services (:mod:`protocol.db`);
:func:`upgrade` brings a chain database to the latest revision and is what a start runs.
"""

from __future__ import annotations

from alembic.config import Config

from protocol import db
from protocol.db import make_engine

SECTION = "chain"
VERSION_TABLE = "alembic_version_chain"

__all__ = ["SECTION", "VERSION_TABLE", "alembic_config", "make_engine", "upgrade"]


def alembic_config(url: str) -> Config:
    return db.alembic_config(url, SECTION)


def upgrade(url: str) -> None:
    """Migrate the chain database at ``url`` to the latest revision."""
    db.upgrade(url, SECTION)
