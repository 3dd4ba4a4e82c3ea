"""The one alembic environment; ``alembic.ini``'s section names the database it migrates.

``[chain]`` migrates :mod:`chain.models`; ``[validator]`` migrates ``validator.models``,
imported only when that section is used. The URL comes from ``-x url=...`` or the config's
``sqlalchemy.url`` (what :func:`chain.db.upgrade` sets).
"""

from __future__ import annotations

import importlib
import logging.config

from alembic import context
from sqlalchemy import MetaData, pool

from protocol.db import make_engine

config = context.config
section = config.config_ini_section

if config.config_file_name is not None and not logging.getLogger().handlers:
    # Only from the alembic CLI: a program that already set up logging keeps its own.
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

MODELS = {"chain": "chain.models", "validator": "validator.models"}


def target_metadata() -> MetaData:
    if section not in MODELS:
        raise RuntimeError(f"alembic.ini has no database called {section!r}: use {sorted(MODELS)}")
    module = importlib.import_module(MODELS[section])  # lazily: validator.models may not exist
    metadata: MetaData = module.Base.metadata
    return metadata


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("give the database: alembic -x url=... or sqlalchemy.url")
    return url


def options(url: str) -> dict[str, object]:
    return {
        "target_metadata": target_metadata(),
        "version_table": config.get_main_option("version_table") or "alembic_version",
        "render_as_batch": url.startswith("sqlite"),
        "compare_type": True,
    }


def run_offline() -> None:
    url = database_url()
    context.configure(url=url, literal_binds=True, **options(url))  # type: ignore[arg-type]
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    url = database_url()
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite's batch migrations rebuild a table: copy it, drop the old one, rename the
            # copy. With foreign keys on (make_engine turns them on), that drop cascades to
            # every child row: rebuilding `objects` would delete every segment, shard and
            # placement. So keys are off while migrating (the pragma is ignored inside a
            # transaction), and checked before the commit, as SQLite's docs prescribe.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(connection=connection, **options(url))  # type: ignore[arg-type]
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
