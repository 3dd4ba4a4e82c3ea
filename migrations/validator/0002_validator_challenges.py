"""challenges: the challenge log, placement challenge state, verified bytes per miner

Revision ID: 0002_validator
Revises: 0001_validator
Create Date: 2026-11-24 22:44:41.719919
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_validator"
down_revision: str | None = "0001_validator"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "challenge_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("validator", sa.String(length=64), nullable=False),
        sa.Column("miner", sa.String(length=64), nullable=False),
        sa.Column("shard_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("indices", sa.Text(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("proof_digest", sa.String(length=64), nullable=False),
        sa.Column("leaf_count", sa.Integer(), nullable=False),
        sa.Column("leaf_hashes", sa.LargeBinary(), nullable=False),
        sa.Column("proof", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=160), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_challenge_log")),
    )
    with op.batch_alter_table("challenge_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_challenge_log_issued_at"), ["issued_at"], unique=False)
        batch_op.create_index("ix_challenge_log_miner_seq", ["miner", "seq"], unique=False)
        batch_op.create_index(batch_op.f("ix_challenge_log_shard_id"), ["shard_id"], unique=False)

    with op.batch_alter_table("miners", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("verified_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("disqualified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deregistered_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_challenged_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("last_verdict", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("containment", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_index(
            "ix_placements_due", ["miner_id", "state", "last_challenged_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("placements", schema=None) as batch_op:
        batch_op.drop_index("ix_placements_due")
        batch_op.drop_column("containment")
        batch_op.drop_column("last_verdict")
        batch_op.drop_column("last_challenged_at")

    with op.batch_alter_table("miners", schema=None) as batch_op:
        batch_op.drop_column("deregistered_at")
        batch_op.drop_column("disqualified_at")
        batch_op.drop_column("verified_bytes")

    with op.batch_alter_table("challenge_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_challenge_log_shard_id"))
        batch_op.drop_index("ix_challenge_log_miner_seq")
        batch_op.drop_index(batch_op.f("ix_challenge_log_issued_at"))

    op.drop_table("challenge_log")
