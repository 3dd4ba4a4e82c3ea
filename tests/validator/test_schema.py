"""The validator's migrations build exactly the schema its models describe, and go back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Insert, insert, inspect, select, text, update
from sqlalchemy.orm import Session

from protocol.db import alembic_config, make_engine, upgrade
from validator.models import Base, Miner, Placement, Segment, Shard, StoredObject, User


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
            # The models cannot name triggers (and SQLite drops them with a rebuilt table):
            # the ones that keep verified bytes (migration 0012) are checked by name.
            if connection.dialect.name == "sqlite":
                found = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            else:
                found = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            triggers = set(connection.scalars(text(found)))
    finally:
        engine.dispose()
    assert {"users", "miners", "objects", "segments", "shards", "placements"} <= tables
    assert triggers == {
        "verified_bytes_on_insert",
        "verified_bytes_on_update",
        "verified_bytes_on_delete",
    }


OLD_MINER = text(
    "INSERT INTO miners (id, hotkey, host, port, capacity_bytes, free_bytes, wrong_alpha,"
    " wrong_beta, timeout_alpha, timeout_beta, active, verified_bytes)"
    " VALUES (1, 'm', '127.0.0.1', 1, 0, 0, 1.0, 0.0, 1.0, 0.0, true, 0)"
)


def placement_indexes(url: str) -> dict[str, list[str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            found = inspect(connection).get_indexes("placements")
    finally:
        engine.dispose()
    return {str(ix["name"]): [str(c) for c in ix["column_names"]] for ix in found}


def test_0004_upgrades_and_downgrades_with_rows_kept(db_url: str) -> None:
    config = alembic_config(db_url, "validator")
    command.upgrade(config, "0003_validator")
    assert placement_indexes(db_url)["ix_placements_due"] == [
        "miner_id",
        "state",
        "last_challenged_at",
    ]
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    rows = [  # a row of each table placements depends on, as 0003 had them
        User(id=1, name="u", created_at=now),
        Miner(id=1, hotkey="m", host="127.0.0.1", port=1),  # (added as 0003 had it, below)
        insert(StoredObject).values(  # only 0003's columns: later ones do not exist yet
            id="o" * 32, owner_id=1, name="n", state="committed", k=1, m=1, segment_size=1,
            leaf_size=1, encryption="none", created_at=now,
        ),
        Segment(id=1, object_id="o" * 32, index=0, size=1, padding=0, shard_size=1),
        Shard(id=1, segment_id=1, share=0, shard_id="s", size=1),
        insert(Placement).values(
            id=1, shard_id=1, miner_id=1, state="stored", receipt_json="{}", stored_at=now,
            containment=2,
        ),
    ]  # fmt: skip
    with Session(engine) as session, session.begin():
        for row in rows:
            if isinstance(row, Miner):  # the model has columns 0003 did not
                session.execute(OLD_MINER)
            elif isinstance(row, Insert):
                session.execute(row)
            else:
                session.add(row)
            session.flush()  # in this order: the models name no relationship for some keys
    engine.dispose()

    command.upgrade(config, "0004_validator")
    indexes = placement_indexes(db_url)
    assert indexes["ix_placements_due"] == ["miner_id", "state", "last_challenged_at", "id"]
    assert indexes["ix_placements_contained"] == ["miner_id", "state", "containment"]
    command.downgrade(config, "0003_validator")
    indexes = placement_indexes(db_url)
    assert "ix_placements_contained" not in indexes
    assert indexes["ix_placements_due"] == ["miner_id", "state", "last_challenged_at"]
    command.upgrade(config, "head")
    test_upgrade_head_has_no_drift_from_the_models(db_url)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            row = session.get(Placement, 1)
            assert row is not None
            assert (row.state, row.containment) == ("stored", 2)
    finally:
        engine.dispose()


def test_0005_adds_standing_with_old_miners_kept(db_url: str) -> None:
    config = alembic_config(db_url, "validator")
    command.upgrade(config, "0004_validator")
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(OLD_MINER)
    engine.dispose()
    command.upgrade(config, "0005_validator")
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            miner = session.get(Miner, 1)
            assert miner is not None
            # An existing miner starts with a clean serving record and is not suspended.
            assert (miner.serving_alpha, miner.serving_beta, miner.suspended_at) == (1.0, 0.0, None)
    finally:
        engine.dispose()
    command.downgrade(config, "0004_validator")
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("miners")}
    finally:
        engine.dispose()
    assert "suspended_at" not in columns and "serving_alpha" not in columns
    command.upgrade(config, "head")
    test_upgrade_head_has_no_drift_from_the_models(db_url)


def test_0006_marks_earlier_objects_sealed_by_the_validator_or_nobody(db_url: str) -> None:
    config = alembic_config(db_url, "validator")
    command.upgrade(config, "0004_validator")
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        session.add(User(id=1, name="u", created_at=now))
        session.flush()
        for oid, encryption in (("a" * 32, "aes-256-gcm"), ("b" * 32, "none")):
            session.execute(
                insert(StoredObject).values(
                    id=oid, owner_id=1, name=oid, state="committed", k=1, m=1,
                    segment_size=1, leaf_size=1, encryption=encryption, created_at=now,
                    verifier="f" * 64,
                )
            )  # fmt: skip
    engine.dispose()
    command.upgrade(config, "0006_validator")
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            # Only the columns 0006 has (a whole row would name later ones).
            rows = session.execute(text("SELECT id, sealed_by, content_sha256 FROM objects"))
            found = {oid: (sealed_by, digest) for oid, sealed_by, digest in rows}
            assert found == {"a" * 32: ("validator", None), "b" * 32: ("none", None)}
    finally:
        engine.dispose()
    command.downgrade(config, "0004_validator")
    command.upgrade(config, "head")
    test_upgrade_head_has_no_drift_from_the_models(db_url)


def test_0012_copies_shard_sizes_and_the_database_keeps_verified_bytes(db_url: str) -> None:
    config = alembic_config(db_url, "validator")
    command.upgrade(config, "0011_validator")
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(OLD_MINER)
        connection.execute(text("UPDATE miners SET verified_bytes = 999"))  # drifted before
        connection.execute(insert(User).values(id=1, name="u", created_at=now))
        connection.execute(
            insert(StoredObject).values(
                id="o" * 32, owner_id=1, name="n", state="committed", k=1, m=1,
                segment_size=1, leaf_size=1, encryption="none", created_at=now,
            )
        )  # fmt: skip
        connection.execute(
            insert(Segment).values(
                id=1, object_id="o" * 32, index=0, size=1, padding=0, shard_size=1
            )
        )
        for n, (size, state, verdict) in enumerate(
            [(100, "stored", "pass"), (20, "stored", None), (3, "lost", "missing")], start=1
        ):
            connection.execute(
                insert(Shard).values(id=n, segment_id=1, share=n, shard_id=f"s{n}", size=size)
            )
            connection.execute(
                text(
                    "INSERT INTO placements (id, shard_id, miner_id, state, receipt_json,"
                    " stored_at, last_verdict, containment) VALUES (:n, :n, 1, :state, '{}',"
                    " :now, :verdict, 0)"
                ),
                {"n": n, "state": state, "verdict": verdict, "now": now},
            )
    engine.dispose()

    command.upgrade(config, "0012_validator")
    engine = make_engine(db_url)

    def verified_bytes() -> int:
        with engine.connect() as connection:
            return int(connection.scalar(select(Miner.verified_bytes)) or 0)

    try:
        with engine.connect() as connection:
            sizes = dict(connection.execute(select(Placement.id, Placement.size)).all())
        assert sizes == {1: 100, 2: 20, 3: 3}
        assert verified_bytes() == 100  # recounted: the triggers start from the rows
        with engine.begin() as connection:  # a pass, then a failure, then a delete
            connection.execute(
                update(Placement).where(Placement.id == 2).values(last_verdict="pass")
            )
        assert verified_bytes() == 120
        with engine.begin() as connection:
            connection.execute(update(Placement).where(Placement.id == 1).values(state="lost"))
        assert verified_bytes() == 20
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM objects"))  # placements go by cascade
        assert verified_bytes() == 0
    finally:
        engine.dispose()
    command.downgrade(config, "0011_validator")
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("placements")}
    finally:
        engine.dispose()
    assert "size" not in columns
    command.upgrade(config, "head")
    test_upgrade_head_has_no_drift_from_the_models(db_url)


@contextmanager
def connected(db_url: str) -> Iterator[Connection]:
    """One transaction on the database, its engine disposed after."""
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def test_0014_names_the_algorithm_of_each_kept_hash(db_url: str) -> None:
    """sha256 hashes kept before become "sha256:<hex>"; back down, a sha256 one is kept
    and a BLAKE3 one (there is no sha256 to go back to) is dropped."""
    config = alembic_config(db_url, "validator")
    command.upgrade(config, "0013_validator")
    now = datetime.now(UTC)
    with connected(db_url) as connection:
        connection.execute(insert(User).values(id=1, name="u", created_at=now))
        for oid, digest in {"a" * 32: "ab" * 32, "b" * 32: None}.items():
            connection.execute(
                text(
                    "INSERT INTO objects (id, owner_id, name, state, k, m, segment_size, "
                    "leaf_size, encryption, created_at, content_sha256, size) VALUES (:id, 1, "
                    ":id, 'committed', 1, 1, 1, 1, 'none', :now, :digest, 1)"
                ),
                {"id": oid, "now": now, "digest": digest},
            )
            connection.execute(
                insert(Segment).values(object_id=oid, index=0, size=1, padding=0, shard_size=1)
            )
    command.upgrade(config, "0014_validator")
    with connected(db_url) as connection:
        rows = connection.execute(select(StoredObject.id, StoredObject.content_hash))
        assert dict(rows.all()) == {"a" * 32: "sha256:" + "ab" * 32, "b" * 32: None}
        connection.execute(
            update(StoredObject)
            .where(StoredObject.id == "b" * 32)
            .values(content_hash="blake3:" + "cd" * 32)
        )
    command.downgrade(config, "0013_validator")
    with connected(db_url) as connection:
        rows = connection.execute(text("SELECT id, content_sha256 FROM objects"))
        assert dict(rows.all()) == {"a" * 32: "ab" * 32, "b" * 32: None}
        # The objects table was rebuilt (SQLite) both ways: its segments are all there.
        assert connection.execute(text("SELECT count(*) FROM segments")).scalar() == 2
    command.upgrade(config, "head")
    test_upgrade_head_has_no_drift_from_the_models(db_url)
