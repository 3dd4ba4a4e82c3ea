"""the S3 API: access keys (secrets encrypted), buckets per user, objects as lists of parts,
multipart uploads in progress

Revision ID: 0008_validator
Revises: 0006_validator
Create Date: 2026-12-08 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008_validator"
down_revision: str | None = "0006_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "s3_keys",
        sa.Column("access_key", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_s3_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("access_key", name=op.f("pk_s3_keys")),
    )
    op.create_index(op.f("ix_s3_keys_user_id"), "s3_keys", ["user_id"], unique=False)
    op.create_table(
        "s3_buckets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_s3_buckets_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_s3_buckets")),
        sa.UniqueConstraint("owner_id", "name", name=op.f("uq_s3_buckets_owner_id_name")),
    )  # fmt: skip
    op.create_table(
        "s3_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(length=128), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"], ["s3_buckets.id"], name=op.f("fk_s3_objects_bucket_id_s3_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_s3_objects")),
        sa.UniqueConstraint("bucket_id", "key", name=op.f("uq_s3_objects_bucket_id_key")),
    )  # fmt: skip
    op.create_table(
        "s3_uploads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"], ["s3_buckets.id"], name=op.f("fk_s3_uploads_bucket_id_s3_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_s3_uploads")),
    )  # fmt: skip
    op.create_index(op.f("ix_s3_uploads_bucket_id"), "s3_uploads", ["bucket_id"], unique=False)
    op.create_table(
        "s3_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("s3_object_id", sa.Integer(), nullable=True),
        sa.Column("upload_id", sa.String(length=32), nullable=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("stored_id", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["s3_object_id"], ["s3_objects.id"], name=op.f("fk_s3_parts_s3_object_id_s3_objects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["upload_id"], ["s3_uploads.id"], name=op.f("fk_s3_parts_upload_id_s3_uploads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stored_id"], ["objects.id"], name=op.f("fk_s3_parts_stored_id_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_s3_parts")),
        sa.UniqueConstraint("upload_id", "number", name=op.f("uq_s3_parts_upload_id_number")),
    )  # fmt: skip
    op.create_index(op.f("ix_s3_parts_s3_object_id"), "s3_parts", ["s3_object_id"], unique=False)
    op.create_index(op.f("ix_s3_parts_stored_id"), "s3_parts", ["stored_id"], unique=False)


def downgrade() -> None:
    op.drop_table("s3_parts")
    op.drop_table("s3_uploads")
    op.drop_table("s3_objects")
    op.drop_table("s3_buckets")
    op.drop_table("s3_keys")
