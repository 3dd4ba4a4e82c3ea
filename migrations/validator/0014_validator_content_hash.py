"""content hash: an object's recorded body hash names its algorithm ("blake3:<hex>", what
the CLI now signs, or "sha256:<hex>"); the sha256 hashes kept before are carried over

Revision ID: 0014_validator
Revises: 0013_validator
Create Date: 2026-12-07 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014_validator"
down_revision: str | None = "0013_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_hash", sa.String(length=80), nullable=True))
    op.execute(
        "UPDATE objects SET content_hash = 'sha256:' || content_sha256 "
        "WHERE content_sha256 IS NOT NULL"
    )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_column("content_sha256")


def downgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
    # A BLAKE3 hash has no sha256 to go back to: those objects lose theirs (a re-run of their
    # upload then cannot recognise them, as for objects stored before 0006).
    op.execute(
        "UPDATE objects SET content_sha256 = substr(content_hash, 8) "
        "WHERE content_hash LIKE 'sha256:%'"
    )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_column("content_hash")
