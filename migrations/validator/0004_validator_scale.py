"""scale: indexes that keep a challenge round's selection per miner flat as placements grow

Revision ID: 0004_validator
Revises: 0003_validator
Create Date: 2026-11-25 00:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision: str = "0004_validator"
down_revision: str | None = "0003_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.drop_index("ix_placements_due")
        batch_op.create_index(
            "ix_placements_due", ["miner_id", "state", "last_challenged_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_placements_contained", ["miner_id", "state", "containment"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.drop_index("ix_placements_contained")
        batch_op.drop_index("ix_placements_due")
        batch_op.create_index(
            "ix_placements_due", ["miner_id", "state", "last_challenged_at"], unique=False
        )
