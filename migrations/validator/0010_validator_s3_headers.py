"""the S3 API: the headers S3 stores with an object and serves back (Content-Encoding,
Content-Disposition, Content-Language, Cache-Control, Expires), and the multipart upload an
object was completed from (a retried CompleteMultipartUpload is answered again)

Revision ID: 0010_validator
Revises: 0009_validator
Create Date: 2026-12-06 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010_validator"
down_revision: str | None = "0009_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    for table in ("s3_objects", "s3_uploads"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("headers_json", sa.Text(), nullable=False, server_default="{}")
            )
    with op.batch_alter_table("s3_objects") as batch:
        batch.add_column(sa.Column("upload_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("s3_objects") as batch:
        batch.drop_column("upload_id")
    for table in ("s3_objects", "s3_uploads"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("headers_json")
