"""The validator's migrations build exactly the schema its models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from protocol.db import make_engine, upgrade
from validator.models import Base


def test_upgrade_head_has_no_drift_from_the_models(db_url: str) -> None:
    upgrade(db_url, "validator")
    upgrade(db_url, "validator")  # a second run is a no-op
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"compare_type": True, "version_table": "alembic_version_validator"},
            )
            assert compare_metadata(context, Base.metadata) == []
            tables = set(context.dialect.get_table_names(connection))
    finally:
        engine.dispose()
    assert {"users", "miners", "objects", "segments", "shards", "placements"} <= tables
