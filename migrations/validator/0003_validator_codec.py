"""codec: the erasure codec of each object (zfec for every object stored before)

Revision ID: 0003_validator
Revises: 0002_validator
Create Date: 2026-11-24 23:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_validator"
down_revision: str | None = "0002_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("codec", sa.String(length=16), nullable=False, server_default="zfec")
        )


def downgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_column("codec")
