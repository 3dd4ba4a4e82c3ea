"""standing: suspension and a serving score, so weight follows reads served, not only proofs

Revision ID: 0005_validator
Revises: 0004_validator
Create Date: 2026-12-06 00:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_validator"
down_revision: str | None = "0004_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("miners", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("serving_alpha", sa.Float(), nullable=False, server_default="1.0")
        )
        batch_op.add_column(
            sa.Column("serving_beta", sa.Float(), nullable=False, server_default="0.0")
        )
        batch_op.add_column(sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("suspended_for", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("miners", schema=None) as batch_op:
        batch_op.drop_column("suspended_for")
        batch_op.drop_column("suspended_at")
        batch_op.drop_column("serving_beta")
        batch_op.drop_column("serving_alpha")
