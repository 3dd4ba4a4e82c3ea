"""S3 part checksums: each multipart part's additional checksum ("crc32:<base64>"), from
which CompleteMultipartUpload computes the object's composite checksum ("-N"), as S3 does

Revision ID: 0013_validator
Revises: 0012_validator
Create Date: 2026-12-07 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013_validator"
down_revision: str | None = "0012_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("s3_parts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checksum", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("s3_parts", schema=None) as batch_op:
        batch_op.drop_column("checksum")
