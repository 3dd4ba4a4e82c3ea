"""client sealing: who sealed each object, the sha256 of the body it was uploaded as, and an
index to find an object by its capability's verifier

Revision ID: 0006_validator
Revises: 0005_validator
Create Date: 2026-12-06 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_validator"
down_revision: str | None = "0005_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_by", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_objects_verifier", ["verifier"], unique=False)
    # Every object stored before was sealed by the validator, or not at all.
    op.execute(
        "UPDATE objects SET sealed_by = CASE WHEN encryption = 'none' THEN 'none' "
        "ELSE 'validator' END"
    )


def downgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_index("ix_objects_verifier")
        batch_op.drop_column("content_sha256")
        batch_op.drop_column("sealed_by")
