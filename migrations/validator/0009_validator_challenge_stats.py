"""per-miner challenge figures kept with the log: counts by verdict and a latency histogram
per miner per time bucket (10 min, 1 h, 1 day, all time), backfilled from the log; the
log indexed by verdict and by kind (the dashboard's explorer)

Revision ID: 0009_validator
Revises: 0008_validator
Create Date: 2026-12-06 21:30:00.000000
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from validator.challenge_stats import backfill

revision: str = "0009_validator"
down_revision: str | None = "0008_validator"
branch_labels: str | None = None
depends_on: str | None = None

BINS = 53  # as this revision made them; a change of bins is a new revision that rebuilds
COUNTS = ("challenges", "pass", "wrong", "missing", "timeout")


def upgrade() -> None:
    op.create_table(
        "challenge_stats",
        sa.Column("span", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("miner", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTS),
        *(sa.Column(f"bin{i:02d}", sa.BigInteger(), nullable=False) for i in range(BINS)),
        sa.PrimaryKeyConstraint("span", "start", "miner", name=op.f("pk_challenge_stats")),
    )
    # The dashboard's log explorer filters by verdict or kind, newest first.
    op.create_index("ix_challenge_log_verdict_seq", "challenge_log", ["verdict", "seq"])
    op.create_index("ix_challenge_log_kind_seq", "challenge_log", ["kind", "seq"])
    # The figures of the log so far, by the code that keeps them from now on (it streams
    # the log in order and writes its sums every 200k entries: memory stays bounded).
    entries = backfill(op.get_bind())
    if entries:
        logging.getLogger("alembic.runtime.migration").info(
            "challenge_stats: %d log entries tallied", entries
        )


def downgrade() -> None:
    op.drop_index("ix_challenge_log_kind_seq", table_name="challenge_log")
    op.drop_index("ix_challenge_log_verdict_seq", table_name="challenge_log")
    op.drop_table("challenge_stats")
