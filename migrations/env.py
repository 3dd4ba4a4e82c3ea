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
        context.configure(connection=connection, **options(url))  # type: ignore[arg-type]
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
