"""object mode: the permission bits of the file an object was uploaded from, which a
download gives the file it writes (none for objects stored before, or through S3)

Revision ID: 0011_validator
Revises: 0010_validator
Create Date: 2026-12-06 21:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011_validator"
down_revision: str | None = "0010_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mode", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_column("mode")
