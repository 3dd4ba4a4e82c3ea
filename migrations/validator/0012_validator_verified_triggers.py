"""verified triggers: the database keeps ``miners.verified_bytes`` itself, from each
placement row's change (validator/verified.py)

Every writer used to add its own change, computed in Python from placement rows it had
read without a lock: two writers racing on one placement (a delete or a repair against a
failed challenge) each took its bytes off, and rows gone by cascade (a challenged upload
that then failed) took nothing off. A row trigger sees the row as it was and as it is,
under the row's lock, whoever changes it and however (a cascade too).

``placements.size`` (the shard's size, copied) is what the triggers add: when a shard row
goes, its placements go after it by cascade, so a trigger cannot read the size there.

SQLite drops a table's triggers with the table: a later migration that rebuilds
``placements`` (batch mode's copy-and-move) must create them again (``create_triggers``).

Revision ID: 0012_validator
Revises: 0011_validator
Create Date: 2026-12-07 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012_validator"
down_revision: str | None = "0011_validator"
branch_labels: str | None = None
depends_on: str | None = None

# SQLite: three triggers, each with its statements inline.
SQLITE = (
    """CREATE TRIGGER verified_bytes_on_insert AFTER INSERT ON placements
    WHEN NEW.state = 'stored' AND NEW.last_verdict = 'pass'
    BEGIN
        UPDATE miners SET verified_bytes = verified_bytes + NEW.size WHERE id = NEW.miner_id;
    END""",
    # Only when whether it counts (or what, or for whom) changed: a pass on a placement that
    # passed before writes no miner row.
    """CREATE TRIGGER verified_bytes_on_update AFTER UPDATE ON placements
    WHEN (OLD.state = 'stored' AND OLD.last_verdict IS 'pass')
            IS NOT (NEW.state = 'stored' AND NEW.last_verdict IS 'pass')
        OR OLD.miner_id != NEW.miner_id OR OLD.size != NEW.size
    BEGIN
        UPDATE miners SET verified_bytes = verified_bytes - OLD.size
        WHERE id = OLD.miner_id AND OLD.state = 'stored' AND OLD.last_verdict = 'pass';
        UPDATE miners SET verified_bytes = verified_bytes + NEW.size
        WHERE id = NEW.miner_id AND NEW.state = 'stored' AND NEW.last_verdict = 'pass';
    END""",
    """CREATE TRIGGER verified_bytes_on_delete AFTER DELETE ON placements
    WHEN OLD.state = 'stored' AND OLD.last_verdict = 'pass'
    BEGIN
        UPDATE miners SET verified_bytes = verified_bytes - OLD.size WHERE id = OLD.miner_id;
    END""",
)

# PostgreSQL: one function, three triggers with the same conditions as SQLite's.
POSTGRESQL = (
    """CREATE FUNCTION verified_bytes_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' AND OLD.state = 'stored' AND OLD.last_verdict = 'pass' THEN
            UPDATE miners SET verified_bytes = verified_bytes - OLD.size
            WHERE id = OLD.miner_id;
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.state = 'stored' AND NEW.last_verdict = 'pass' THEN
            UPDATE miners SET verified_bytes = verified_bytes + NEW.size
            WHERE id = NEW.miner_id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER verified_bytes_on_insert AFTER INSERT ON placements FOR EACH ROW
    WHEN (NEW.state = 'stored' AND NEW.last_verdict = 'pass')
    EXECUTE FUNCTION verified_bytes_change()""",
    """CREATE TRIGGER verified_bytes_on_update AFTER UPDATE ON placements FOR EACH ROW
    WHEN ((OLD.state = 'stored' AND OLD.last_verdict IS NOT DISTINCT FROM 'pass')
            IS DISTINCT FROM (NEW.state = 'stored' AND NEW.last_verdict IS NOT DISTINCT FROM 'pass')
        OR OLD.miner_id <> NEW.miner_id OR OLD.size <> NEW.size)
    EXECUTE FUNCTION verified_bytes_change()""",
    """CREATE TRIGGER verified_bytes_on_delete AFTER DELETE ON placements FOR EACH ROW
    WHEN (OLD.state = 'stored' AND OLD.last_verdict = 'pass')
    EXECUTE FUNCTION verified_bytes_change()""",
)

TRIGGERS = ("verified_bytes_on_insert", "verified_bytes_on_update", "verified_bytes_on_delete")

# The totals the triggers start from: a recount.
RECOUNT = """UPDATE miners SET verified_bytes = COALESCE((
    SELECT SUM(placements.size) FROM placements
    WHERE placements.miner_id = miners.id
        AND placements.state = 'stored' AND placements.last_verdict = 'pass'), 0)"""


def create_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("size", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE placements SET size = (SELECT shards.size FROM shards"
        " WHERE shards.id = placements.shard_id)"
    )
    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.alter_column("size", existing_type=sa.Integer(), nullable=False)
    create_triggers()
    op.execute(RECOUNT)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON placements" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS verified_bytes_change()")
    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.drop_column("size")
